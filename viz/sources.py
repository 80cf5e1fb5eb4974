"""What the viz tools read: a run folder or a GraphML file, never the trainer's objects.

Contract: :func:`load_source` reads a run directory (through :func:`wiring.io.load_run`: its
final and initial wirings, metrics, history) or a GraphML file into a :class:`Source`; a
run with several learned graphs needs ``--wiring NAME``; every problem is a
:class:`viz.cli.UsageError` naming the path. :func:`epoch_of` / :func:`metrics_at` place a
training step in its epoch (the epoch that step lies in, not the last finished one);
:func:`wiring_info` and :func:`stats_line` are the numbers the titles show.

>>> metrics = [{"epoch": 1, "step": 10}, {"epoch": 2, "step": 20}]
>>> epoch_of(metrics, 10), epoch_of(metrics, 15), epoch_of(metrics, 20)
(1, 2, 2)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from viz.cli import UsageError, _message
from wiring.graph import GraphError, Wiring
from wiring.io import (
    RunData,
    WiringFileError,
    load_run,
    read_wiring_file,
    unchosen_wiring,
)


@dataclass
class Source:
    """A wiring to draw, and the run it comes from (None for a GraphML file)."""

    path: Path
    wiring: Wiring
    run: RunData | None = None

    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics if self.run is not None else []


def load_run_dir(path: str | os.PathLike, wiring: str | None = None, need_wiring: bool = True) -> RunData:
    """:func:`wiring.io.load_run`, its errors turned into :class:`UsageError`; with
    ``need_wiring``, a run of several wirings and no ``wiring`` chosen is one too."""
    try:
        run = load_run(path, wiring)
    except (WiringFileError, GraphError, OSError) as err:
        raise UsageError(_message(err)) from None
    message = unchosen_wiring(run) if need_wiring else None
    if message:
        raise UsageError(message)
    return run


def source_path(path: str | os.PathLike, wiring: str | None = None) -> Path:
    """``path`` as a source the viz tools read: it exists (a run directory or a GraphML file),
    and ``--wiring`` names a wiring only of a run directory; else a :class:`UsageError`."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist (expected a run directory or a .graphml file)")
    if wiring is not None and not path.is_dir():
        raise UsageError(f"--wiring applies to run directories, not to the file {path}")
    return path


def load_source(path: str | os.PathLike, wiring: str | None = None) -> Source:
    """A run directory's final wiring (``wiring`` names one of several), or the wiring of
    a GraphML file."""
    path = source_path(path, wiring)
    if path.is_dir():
        run = load_run_dir(path, wiring)
        wiring = final_wiring(run)
        if wiring is None:
            raise UsageError(f"run directory {path} has neither wiring.graphml nor a history.pt "
                             f"with snapshots")
        return Source(path, wiring, run)
    try:
        return Source(path, read_wiring_file(path))      # a cyclic file without levels: a dynamic wiring
    except (WiringFileError, GraphError, OSError) as err:
        raise UsageError(_message(err)) from None


def final_wiring(run: RunData) -> Wiring | None:
    """``wiring.graphml``, else the last history snapshot, else None."""
    if run.final is not None:
        return run.final
    if run.history is not None and len(run.history):
        return run.history.frame(-1)
    return None


def initial_wiring(run: RunData) -> Wiring | None:
    """``initial.graphml``, else the first history snapshot, else None."""
    if run.initial is not None:
        return run.initial
    if run.history is not None and len(run.history):
        return run.history.frame(0)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metrics_at(metrics: Sequence[Mapping], step: int | None) -> Mapping | None:
    """The last epoch record whose ``step`` is <= ``step`` (None if there is none
    or ``step`` is unknown)."""
    if step is None:
        return None
    best = None
    for record in metrics:
        s = _number(record.get("step"))
        if s is not None and s <= step:
            best = record
    return best


def epoch_of(metrics: Sequence[Mapping], step: int | None) -> int | None:
    """The epoch that training step ``step`` belongs to: each ``metrics.jsonl``
    record gives the ``step`` count at the END of its ``epoch``, so step ``s`` lies in
    the first epoch whose record has ``step >= s`` (step 50 of a run of 12 steps per
    epoch is in epoch 5, which ends at step 60). 0 for step 0 (before training);
    past the last record, counted on at that record's steps per epoch; None when
    unknown.

    >>> records = [{"epoch": e, "step": 12 * e} for e in (1, 2, 3, 4)]
    >>> [epoch_of(records, s) for s in (0, 1, 12, 13, 48, 50, 60)]
    [0, 1, 1, 2, 4, 5, 5]
    """
    if step is None:
        return None
    if step <= 0:
        return 0
    known = []
    for record in metrics:
        s, e = _number(record.get("step")), record.get("epoch")
        if s is not None and isinstance(e, int) and not isinstance(e, bool) and e > 0:
            known.append((s, e))
    if not known:
        return None
    known.sort()
    for s, e in known:
        if s >= step:
            return e
    last_step, last_epoch = known[-1]
    per_epoch = last_step / last_epoch
    if per_epoch <= 0:
        return None
    return last_epoch + int(math.ceil((step - last_step) / per_epoch - 1e-9))


def wiring_info(wiring: Wiring, metrics: Sequence[Mapping] = ()) -> dict:
    """``k`` (real edges), ``candidates`` and ``density`` (None when unknown),
    ``step``, ``test_acc`` (from the attributes, else from the last metrics
    record at or before that step), ``acc_epoch`` (the epoch that accuracy was
    measured after) and ``epoch`` (the epoch the step belongs to,
    :func:`epoch_of`)."""
    attrs = wiring.attrs or {}
    if wiring.real is not None:
        k = int(wiring.real.sum())
        candidates: Any = wiring.num_edges
    else:
        k = wiring.num_edges
        candidates = attrs.get("candidates")
    candidates = int(candidates) if _number(candidates) and candidates > 0 else None
    density = k / candidates if candidates else _number(attrs.get("density"))
    step = attrs.get("step")
    step = int(step) if _number(step) is not None else None
    record = metrics_at(metrics, step)
    acc = _number(attrs.get("test_acc"))
    if acc is None and record is not None:
        acc = _number(record.get("test_acc"))
    acc_epoch = record.get("epoch") if record is not None else None
    epoch = epoch_of(metrics, step)
    if epoch is None and isinstance(attrs.get("epoch"), int):
        epoch = attrs["epoch"]
    return {"k": k, "candidates": candidates, "density": density, "step": step,
            "test_acc": acc, "epoch": epoch, "acc_epoch": acc_epoch}


def stats_line(info: Mapping, *, churn: Mapping | None = None) -> str:
    """One line: ``k = 12,000 edges · density 3.68% of 325,760 candidates ·
    step 36 · test acc 82.5%`` (unknown values shown as n/a; step and accuracy
    left out when the wiring has no step)."""
    parts = [f"k = {info['k']:,} edges"]
    if info.get("density") is not None:
        density = f"density {100 * info['density']:.3g}%"
        if info.get("candidates"):
            density += f" of {info['candidates']:,} candidates"
        parts.append(density)
    else:
        parts.append("density n/a")
    if info.get("step") is not None:
        parts.append(f"step {info['step']:,}")
        acc = info.get("test_acc")
        parts.append("test acc n/a" if acc is None else f"test acc {100 * acc:.1f}%")
    elif info.get("test_acc") is not None:
        parts.append(f"test acc {100 * info['test_acc']:.1f}%")
    if churn is not None:
        parts.append(f"churn +{churn['added']:,} / −{churn['removed']:,}")
    return "  ·  ".join(parts)
