"""The run directory: what a training run leaves on disk, written as it goes.

:class:`RunRecorder` is a :class:`~wiring.train.trainer.Trainer` hook. In ``run_dir`` it writes

* ``config.yaml``: the resolved configuration;
* ``metrics.jsonl``: one JSON object per epoch (loss, accuracies, lr, seconds,
  ``swapped`` edges, ``edges`` (k), ``density``, ``depth``, ``dead`` nodes);
* ``checkpoint.pt`` (every epoch, and where a run is stopped: SIGINT, SIGTERM) and
  ``best.pt`` (best test accuracy), as :func:`wiring.train.checkpoint.training_checkpoint`
  builds them (that module's table is their schema): the trainer's state, the config,
  ``data_info``, k, ``run_id`` (also in every metrics line and history) and the model's
  initial state; tensors and plain types only;
* ``initial.graphml`` and, at the end, ``wiring.graphml``: the real wiring;
* ``history.pt``: a :class:`~wiring.io.WiringHistory` of the real edges every
  ``snapshot_every`` steps (plus step 0 and the last step);
* ``sparse.pt`` for models made sparse with :func:`wiring.sparsify.sparsify`: only
  the real weights and their indices (:func:`wiring.sparsify.load_sparse` reads it).

A model with several wirings gets one GraphML and history per wiring, suffixed
with the wiring's module name (``wiring-stages-0-graph.graphml``...). The names are
:mod:`wiring.io`'s (:func:`wiring.io.run_files`).
All writes are atomic: a kill leaves the previous version of every file.

A resumed run first checks that the folder's history and metrics belong to the
checkpoint (same ``run_id``, same graph), then drops what the uninterrupted run
would not hold: metrics of later epochs and history frames after the checkpoint's
step or off the ``snapshot_every`` grid (a run's final frame).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from wiring.files import append_line
from wiring.io import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    SPARSE_FILE,
    WiringHistory,
    atomic_write,
    load_metrics,
    run_files,
    temp_files,
    to_networkx,
    wiring_file,
    wiring_key,
    write_graphml,
)
from wiring.layer import WiredGraph
from wiring.sparsify import export_sparse, sparse_layers
from wiring.topology import summary
from wiring.train.checkpoint import CheckpointError, save_checkpoint, training_checkpoint
from wiring.train.monitor import edge_budget


def wiring_file_stem(name: str, stem: str, count: int) -> str:
    """``stem`` for a model's only wiring, ``stem-<module name>`` otherwise."""
    return wiring_file(stem, "", wiring_key(name, count))


def wiring_stats(layer: WiredGraph) -> dict[str, Any]:
    """Depth (None when cyclic), dead nodes and cycle statistics of the real wiring."""
    info = summary(to_networkx(layer.wiring()))
    stats = {"depth": info.get("depth"), "dead": info.get("dead")}
    if not info.get("acyclic", True):
        stats.update(cyclic_components=info.get("cyclic_components"),
                     largest_cycle_component=info.get("largest_component"))
    return stats


class RunRecorder:
    """The :class:`~wiring.train.trainer.Trainer` hook that writes a run folder as training goes.

    Args:
        run_dir: the run folder (made by the caller; locked by it).
        config: the resolved configuration as plain types (``config.yaml``, inside every checkpoint).
        snapshot_every: a history frame of the real edges every this many steps.
        initial_model: the model's state before training (saved for lottery rewinds).
        resumed: the run continues from ``run_dir``'s checkpoint (its files are checked, not restarted).
        extra_state: plain-typed entries added to every checkpoint (``data_info``...).
        run_id: the run's identity, written in every metrics line, history and checkpoint;
            ``None`` for a run saved before run ids.

    Raises (from :meth:`start`, on a resumed run): :class:`~wiring.train.checkpoint.CheckpointError` when the
    folder's metrics or history belong to another run than the checkpoint.
    """

    def __init__(self, run_dir: str | Path, config: dict[str, Any], *, snapshot_every: int,
                 initial_model: dict[str, torch.Tensor] | None = None, resumed: bool = False,
                 data_info: dict[str, Any], edges: int, run_id: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.snapshot_every = snapshot_every
        self.initial_model = initial_model
        self.resumed = resumed
        self.data_info, self.edges = data_info, edges     # for the checkpoints (wiring.train.checkpoint)
        self.run_id = run_id            # None: a run saved before run ids (nothing to check)
        self.histories: dict[str, WiringHistory] = {}
        self.best_acc = -1.0
        self.saved_step: int | None = None   # the step of the last checkpoint.pt written or resumed

    def path(self, name: str, stem: str, suffix: str, count: int) -> Path:
        return self.run_dir / f"{wiring_file_stem(name, stem, count)}{suffix}"

    def start(self, trainer) -> None:
        """Write the config and the initial wiring; load or start the histories. A resumed
        run first checks that the folder's metrics and histories belong to its checkpoint,
        then drops what a kill left behind: temporary files of interrupted writes, metrics
        lines of epochs after the checkpoint and history frames the uninterrupted run
        would not have."""
        self.best_acc = trainer.best_acc
        count = len(trainer.wirings)
        metrics = self.run_dir / METRICS_FILE
        records = load_metrics(metrics) if self.resumed and metrics.is_file() else []
        loaded = {}
        if self.resumed:
            self.saved_step = trainer.step
            self._check_metrics(records, metrics)
            for name, layer in trainer.wirings.items():
                hist_path = self.path(name, "history", ".pt", count)
                if hist_path.is_file():
                    loaded[name] = WiringHistory.load(hist_path)
                    self._check_history(loaded[name], layer, hist_path)
        keys = [wiring_key(name, count) for name in trainer.wirings]
        for leftover in temp_files(self.run_dir, run_files(keys)):
            leftover.unlink(missing_ok=True)
        if self.resumed and metrics.is_file():
            kept = [r for r in records if r.get("epoch", 0) <= trainer.epoch]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write(metrics, lambda f: f.write(text), binary=False)
        text = yaml.safe_dump(self.config, sort_keys=False)
        atomic_write(self.run_dir / CONFIG_FILE, lambda f: f.write(text), binary=False)
        for name, layer in trainer.wirings.items():
            if name in loaded:
                history = loaded[name]
                keep = [i for i, s in enumerate(history.steps)
                        if s <= trainer.step and (s == 0 or s % self.snapshot_every == 0)]
                history = _truncated(history, keep, layer.graph.edge_index.cpu())
            else:
                attrs = {**layer.wiring().attrs, **({"run_id": self.run_id} if self.run_id else {})}
                history = WiringHistory.from_graph(layer.graph, attrs)
                if not self.resumed:
                    write_graphml(layer.wiring(step=0), self.path(name, "initial", ".graphml", count))
            self.histories[name] = history
            if not len(history):              # step 0 of a new run (or a resumed one that lost its history)
                self._snapshot(layer, history, trainer.step)

    def _check_metrics(self, records: list[dict], path: Path) -> None:
        """Every metrics line of a resumed run must be this run's (its ``run_id``)."""
        if self.run_id is None:
            return
        for number, record in enumerate(records, 1):
            if record.get("run_id") != self.run_id:
                raise CheckpointError(
                    f"--resume: {path} line {number} is not this run's (run_id {record.get('run_id')!r}, the "
                    f"checkpoint's is {self.run_id!r}): two runs wrote this folder; move the file away to "
                    f"resume, or start over with --overwrite")

    def _check_history(self, history: WiringHistory, layer: WiredGraph, path: Path) -> None:
        """A resumed run's history must be this run's, over the same graph."""
        theirs = history.attrs.get("run_id")
        if self.run_id is not None and theirs != self.run_id:
            raise CheckpointError(f"--resume: {path} is not this run's history (run_id {theirs!r}, the checkpoint's "
                                  f"is {self.run_id!r}): move it away to resume, or start over with --overwrite")
        graph = layer.graph
        known = history.candidates[0] >= 0
        same = (history.num_candidates == graph.num_candidates
                and torch.equal(history.level.cpu(), graph.level.cpu())
                and torch.equal(history.role.cpu(), graph.role.cpu())
                and torch.equal(history.candidates[:, known], graph.edge_index.cpu()[:, known]))
        if not same:
            raise CheckpointError(f"--resume: {path} records another graph than the checkpoint's model "
                                  f"({history.num_candidates} candidates vs {graph.num_candidates}, or other "
                                  f"edges): move it away to resume, or start over with --overwrite")

    @staticmethod
    def _snapshot(layer: WiredGraph, history: WiringHistory, step: int) -> None:
        mask = layer.real_mask()
        index = mask.nonzero().flatten()
        history.append(step, index.cpu(), layer.weight.detach()[index].cpu())

    # ------------------------------------------------------------------ hooks
    def on_step(self, trainer) -> None:
        if trainer.step % self.snapshot_every == 0:
            for name, layer in trainer.wirings.items():
                self._snapshot(layer, self.histories[name], trainer.step)

    def on_epoch_end(self, trainer, metrics: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        layers = list(trainer.wirings.values())
        k, candidates = edge_budget(trainer.model)
        if candidates:
            extra.update(edges=k, candidates=candidates, density=round(k / candidates, 6))
        if layers:
            stats = [wiring_stats(layer) for layer in layers]
            if len(stats) == 1:
                extra.update(stats[0])
            else:
                extra["depth"] = [s["depth"] for s in stats]
                extra["dead"] = sum(s["dead"] or 0 for s in stats)
        record = {**metrics, **extra, **({"run_id": self.run_id} if self.run_id else {})}
        append_line(self.run_dir / METRICS_FILE, json.dumps(record))     # a full disk leaves no half line
        count = len(trainer.wirings)
        for name in trainer.wirings:
            self.histories[name].save(self.path(name, "history", ".pt", count))
        state = self.checkpoint_state(trainer)
        if metrics["test_acc"] > self.best_acc:      # before checkpoint.pt: a kill between the two
            self.best_acc = metrics["test_acc"]      # resumes this epoch, which writes best.pt again
            save_checkpoint(state, self.run_dir / BEST_FILE)
        save_checkpoint(state, self.run_dir / CHECKPOINT_FILE)
        self.saved_step = trainer.step
        return extra

    def on_stop(self, trainer) -> None:
        """Training stops (SIGINT / SIGTERM) between two steps: save the histories and a
        checkpoint of this moment, which ``--resume`` continues exactly. Between epochs
        the epoch's checkpoint already is this moment."""
        if self.saved_step == trainer.step and trainer.position is None:
            return
        count = len(trainer.wirings)
        for name in trainer.wirings:
            self.histories[name].save(self.path(name, "history", ".pt", count))
        save_checkpoint(self.checkpoint_state(trainer), self.run_dir / CHECKPOINT_FILE)
        self.saved_step = trainer.step

    def on_fit_end(self, trainer) -> None:
        if sparse_layers(trainer.model):
            export_sparse(trainer.model, self.run_dir / SPARSE_FILE)
        count = len(trainer.wirings)
        last = trainer.history[-1] if trainer.history else {}
        for name, layer in trainer.wirings.items():
            history = self.histories[name]
            if history.steps[-1] != trainer.step:
                self._snapshot(layer, history, trainer.step)
            history.save(self.path(name, "history", ".pt", count))
            attrs = {"step": trainer.step}
            if "test_acc" in last:
                attrs["test_acc"] = float(last["test_acc"])
            write_graphml(layer.wiring(**attrs), self.path(name, "wiring", ".graphml", count))

    def checkpoint_state(self, trainer) -> dict[str, Any]:
        """The checkpoint of this moment: :func:`wiring.train.checkpoint.training_checkpoint`."""
        return training_checkpoint(trainer.state_dict(), config=self.config, data_info=self.data_info,
                                   edges=self.edges, run_id=self.run_id, initial_model=self.initial_model)


def _truncated(history: WiringHistory, keep, candidates: torch.Tensor) -> WiringHistory:
    """The snapshots ``keep`` (indices) of ``history`` (a resumed run drops the others), over
    the model's full ``candidates``: a loaded history knows only the candidates real in one
    of its frames (the others read as -1), and the frames recorded after the resume may
    make any candidate real."""
    out = WiringHistory(candidates, history.level, history.role, history.attrs)
    for i in keep:
        frame = history.frame(i)
        out.append(history.steps[i], history.real_index(i), frame.weight)
    return out
