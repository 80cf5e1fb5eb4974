"""The explorer's frames: the snapshots of a run (or one GraphML wiring) with the picture's data.

Contract: :func:`load_frames` reads a run directory (its ``history.pt`` snapshots, else its
final wiring) or a GraphML file (one frame) into :class:`Frames`: one fixed layout
(:mod:`viz.layout`), every frame's real edge set and weights, the run's metrics per epoch
and a subtitle; a missing or malformed source is a :class:`viz.render.UsageError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from viz.cli import UsageError
from viz.sources import load_run_dir, source_path
from wiring.graph import GraphError, Wiring
from wiring.io import RunData, WiringFileError, read_graphml
from wiring.modes import mode_label
from wiring.lazy import lazy_module

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

ADDED = "#00c853"       # viz.animate.ADDED
REMOVED = "#ff8f00"     # viz.animate.REMOVED


@dataclass
class Frames:
    """The snapshots to show, over one edge table.

    ``src``, ``dst``, ``cand`` ``[U]``: the edges real in at least one frame
    (source, target, candidate id), sorted by candidate id; ``real[i]``: sorted
    edge-table ids of frame ``i``, ``weight[i]`` their weights (float64);
    ``steps[i]``: the frame's step (None when unknown); ``num_candidates``: 0 when unknown.
    """

    level: np.ndarray
    role: np.ndarray
    attrs: dict
    src: np.ndarray
    dst: np.ndarray
    cand: np.ndarray
    real: list[np.ndarray]
    weight: list[np.ndarray]
    steps: list[int | None]
    num_candidates: int
    metrics: list[dict] = field(default_factory=list)
    title: str = ""
    subtitle: str = ""

    def __len__(self) -> int:
        return len(self.real)


def _clean_weights(weight) -> np.ndarray:
    w = torch.as_tensor(weight).detach().double().cpu().numpy().reshape(-1)
    return np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)


def frames_of_run(run: RunData) -> "Frames":
    """Frames of a run directory: every ``history.pt`` snapshot, else the final
    wiring (``wiring.graphml``) as one frame; :class:`UsageError` when it has neither."""
    history = run.history
    if history is not None and len(history):
        indices = [history.real_index(i).numpy() for i in range(len(history))]
        used = np.unique(np.concatenate(indices)) if indices else np.zeros(0, dtype=np.int64)
        cand = history.candidates[:, torch.as_tensor(used, dtype=torch.long)].numpy()
        real = [np.searchsorted(used, index) for index in indices]
        weight = [_clean_weights(history.frame(i).weight) for i in range(len(history))]
        frames = Frames(history.level.numpy().copy(), history.role.numpy().copy(), dict(history.attrs),
                        cand[0].astype(np.int64), cand[1].astype(np.int64), used.astype(np.int64), real, weight,
                        [int(s) for s in history.steps], history.num_candidates)
    elif run.final is not None:
        frames = frames_of_wiring(run.final)
    else:
        raise UsageError(f"run directory {run.path} has neither a history.pt with snapshots nor a "
                         f"wiring.graphml")
    frames.metrics = _metrics(run.metrics) or frames.metrics
    frames.title = (run.path.resolve().name or str(run.path)) + (f" · {run.wiring_name}" if run.wiring_name else "")
    frames.subtitle = _subtitle(frames.attrs, run.config)
    return frames


def frames_of_wiring(wiring: Wiring) -> "Frames":
    """One frame: the real edges of ``wiring`` (all its edges when it has no
    ``real`` mask); candidate ids are the edges' positions in the wiring."""
    attrs = dict(wiring.attrs or {})
    n_edges = wiring.num_edges
    ids = np.arange(n_edges, dtype=np.int64)
    if wiring.real is not None:
        ids = ids[wiring.real.bool().cpu().numpy()]
    ei = wiring.edge_index.long().cpu().numpy().reshape(2, -1)[:, ids]
    weight = _clean_weights(wiring.weight)[ids]
    candidates = attrs.get("candidates")  # unknown (0) unless the file says
    if wiring.real is not None:
        candidates = n_edges
    elif not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < ids.size:
        candidates = 0
    step = attrs.get("step")
    step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) \
        and math.isfinite(step) else None
    frames = Frames(wiring.level.long().cpu().numpy().copy(), wiring.role.long().cpu().numpy().copy(), attrs,
                    ei[0].astype(np.int64), ei[1].astype(np.int64), ids, [np.arange(ids.size)], [weight], [step],
                    int(candidates))
    acc = _number(attrs.get("test_acc"))
    if step is not None and acc is not None:  # what the trainer wrote into the wiring: its step's accuracy
        epoch = attrs.get("epoch")
        frames.metrics = [{"step": step, "epoch": epoch if isinstance(epoch, int) and not isinstance(epoch, bool)
                           else None, "test_acc": acc}]
    return frames


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _metrics(records: Sequence[Mapping]) -> list[dict]:
    """``{step, epoch, test_acc}`` of each epoch record that has a numeric step."""
    out = []
    for record in records:
        step = _number(record.get("step"))
        if step is None:
            continue
        epoch = record.get("epoch")
        out.append({"step": int(step), "epoch": epoch if isinstance(epoch, int) and not isinstance(epoch, bool)
                    else None, "test_acc": _number(record.get("test_acc"))})
    return out


def _subtitle(attrs: Mapping, config: Mapping | None = None) -> str:
    config = config or {}
    parts = []
    for key in ("model", "setting"):
        if isinstance(config.get(key), str):
            parts.append(config[key])
    for key in ("preset", "mode"):
        value = attrs.get(key, config.get("graph") if key == "preset" else config.get(key))
        if isinstance(value, str):
            parts.append(mode_label(value) if key == "mode" else value)
    if isinstance(config.get("data"), str):
        parts.append(config["data"])
    return " · ".join(dict.fromkeys(parts))


def load_frames(path: str | Path, wiring: str | None = None) -> "Frames":
    """Frames of a run directory or a GraphML file; :class:`UsageError` for a
    missing or malformed input. A GraphML file whose cycle rules out a layered
    reading is read as a dynamic wiring."""
    path = source_path(path, wiring)
    if path.is_dir():
        return frames_of_run(load_run_dir(path, wiring))
    try:
        try:
            wiring = read_graphml(path)
        except WiringFileError as err:
            if "cycle" not in str(err):
                raise
            wiring = read_graphml(path, static=False)
    except (WiringFileError, GraphError) as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror or err}") from None
    frames = frames_of_wiring(wiring)
    frames.title = path.name
    frames.subtitle = _subtitle(frames.attrs)
    return frames


