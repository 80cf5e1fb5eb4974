"""The run directory: what a training run leaves on disk, written as it goes.

:class:`RunRecorder` is a :class:`~wiring.trainer.Trainer` hook. In ``run_dir`` it writes

* ``config.yaml``: the resolved configuration;
* ``metrics.jsonl``: one JSON object per epoch (loss, accuracies, lr, seconds,
  ``swapped`` edges, ``edges`` (k), ``density``, ``depth``, ``dead`` nodes);
* ``checkpoint.pt`` (every epoch) and ``best.pt`` (best test accuracy): model,
  optimizer, scheduler, RNG, step, the config as a dict, the library version,
  ``data_info`` (channels, classes, image size: enough to rebuild the model) and
  the model's initial state (for lottery rewinds); tensors and plain types only;
* ``initial.graphml`` and, at the end, ``wiring.graphml``: the real wiring;
* ``history.pt``: a :class:`~wiring.io.WiringHistory` of the real edges every
  ``snapshot_every`` steps (plus step 0 and the last step);
* ``sparse.pt`` for models made sparse with :func:`wiring.sparsify.sparsify`: only
  the real weights and their indices (:func:`wiring.sparsify.load_sparse` reads it).

A model with several wirings gets one GraphML and history per wiring, suffixed
with the wiring's module name (``wiring-stages-0-graph.graphml``...).
All writes are atomic: a kill leaves the previous version of every file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from . import __version__
from .checkpoint import save_checkpoint
from .io import WiringHistory, atomic_write, load_metrics, to_networkx, write_graphml
from .layer import WiredGraph
from .sparsify import export_sparse, sparse_layers
from .topology import summary
from .trainer import edge_budget


def wiring_file_stem(name: str, stem: str, count: int) -> str:
    """``stem`` for a model's only wiring, ``stem-<module name>`` otherwise."""
    return stem if count == 1 or not name else f"{stem}-{name.replace('.', '-')}"


def wiring_stats(layer: WiredGraph) -> dict[str, Any]:
    """Depth (None when cyclic), dead nodes and cycle statistics of the real wiring."""
    info = summary(to_networkx(layer.wiring()))
    stats = {"depth": info.get("depth"), "dead": info.get("dead")}
    if not info.get("acyclic", True):
        stats.update(cyclic_components=info.get("cyclic_components"),
                     largest_cycle_component=info.get("largest_component"))
    return stats


class RunRecorder:
    def __init__(self, run_dir: str | Path, config: dict[str, Any], *, snapshot_every: int,
                 initial_model: dict[str, torch.Tensor] | None = None, resumed: bool = False,
                 extra_state: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.snapshot_every = snapshot_every
        self.initial_model = initial_model
        self.resumed = resumed
        self.extra_state = extra_state or {}
        self.histories: dict[str, WiringHistory] = {}
        self.best_acc = -1.0

    def path(self, name: str, stem: str, suffix: str, count: int) -> Path:
        return self.run_dir / f"{wiring_file_stem(name, stem, count)}{suffix}"

    def start(self, trainer) -> None:
        """Write the config and the initial wiring; load or start the histories. A resumed
        run first drops what a kill left behind: temporary files of interrupted writes and
        metrics lines of epochs after the checkpoint."""
        self.best_acc = trainer.best_acc
        for leftover in self.run_dir.glob(".*.tmp*"):
            leftover.unlink(missing_ok=True)
        metrics = self.run_dir / "metrics.jsonl"
        if self.resumed and metrics.is_file():
            kept = [r for r in load_metrics(metrics) if r.get("epoch", 0) <= trainer.epoch]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write(metrics, lambda f: f.write(text), binary=False)
        text = yaml.safe_dump(self.config, sort_keys=False)
        atomic_write(self.run_dir / "config.yaml", lambda f: f.write(text), binary=False)
        count = len(trainer.wirings)
        for name, layer in trainer.wirings.items():
            hist_path = self.path(name, "history", ".pt", count)
            if self.resumed and hist_path.is_file():
                history = WiringHistory.load(hist_path)
                keep = [i for i, s in enumerate(history.steps) if s <= trainer.step]
                history = _truncated(history, len(keep))
            else:
                history = WiringHistory.from_graph(layer.graph, layer.wiring().attrs)
                write_graphml(layer.wiring(step=0), self.path(name, "initial", ".graphml", count))
            self.histories[name] = history
            if not len(history) or history.steps[-1] != trainer.step:
                self._snapshot(layer, history, trainer.step)

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
        record = {**metrics, **extra}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        count = len(trainer.wirings)
        for name in trainer.wirings:
            self.histories[name].save(self.path(name, "history", ".pt", count))
        state = self.checkpoint_state(trainer)
        save_checkpoint(state, self.run_dir / "checkpoint.pt")
        if metrics["test_acc"] > self.best_acc:
            self.best_acc = metrics["test_acc"]
            save_checkpoint(state, self.run_dir / "best.pt")
        return extra

    def on_fit_end(self, trainer) -> None:
        if sparse_layers(trainer.model):
            export_sparse(trainer.model, self.run_dir / "sparse.pt")
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
        state = trainer.state_dict()
        state.update(config=self.config, version=__version__, **self.extra_state)
        if self.initial_model is not None:
            state["initial_model"] = self.initial_model
        return state


def _truncated(history: WiringHistory, count: int) -> WiringHistory:
    """The first ``count`` snapshots of ``history`` (a resumed run drops later ones)."""
    out = WiringHistory(history.candidates, history.level, history.role, history.attrs)
    for i in range(count):
        frame = history.frame(i)
        out.append(history.steps[i], history.real_index(i), frame.weight)
    return out
