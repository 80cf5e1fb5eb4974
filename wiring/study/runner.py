"""Running a study: every cell one call of :func:`wiring.train.pipeline.run`, resumable.

Contract: :func:`cell_state` says what a cell's run folder holds (done, resumable, new);
:func:`cell_config` is the cell's training config (the study's base plus the cell's setting,
mode, edges and seed; ``--from`` its source cell); :func:`run_study` runs the cells in the
study's order on an executor (:mod:`wiring.study.executors`: this process, worker processes,
submitit's local processes or Slurm jobs), skips every cell already recorded in the results
file, continues a checkpointed one with ``--resume``, and reports a failed cell
(``OUT/logs/<cell>.error``) and goes on. Only this process writes the results file and the
``.error`` files (atomically); the cells write their run folders.

SIGINT / SIGTERM: a cell under way stops with its checkpoint of the moment (as
``wiring.train`` does: :class:`~wiring.train.trainer.StopRequest`), and :func:`run_study`
raises :class:`StudyStopped` (the command prints one line, exits 128 + the signal); the
same command continues exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from wiring.files import atomic_write
from wiring.study.cell import StudyStopped, train_cell  # noqa: F401 - train_cell: the cell, re-exported
from wiring.study.executors import make_executor
from wiring.study.results import (
    append_result,
    cell_state,
    log_paths,
    read_results,
    record_from_run,
    recorded,
)
from wiring.study.spec import Cell, Study, cell_config
from wiring.train.trainer import Interrupted, signal_name


def write_error(path: Path, text: str) -> None:
    """A cell's ``.error`` file (one line), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text + "\n"), binary=False)


def run_study(study: Study, out: Path, *, jobs: int = 1, say: Callable[[str], None] = print,
              results: Path | None = None, executor: Any = None) -> dict[str, str]:
    """Run every unfinished cell of ``study`` into ``out``; returns ``{cell name: error}``
    for the cells that failed (or could not start because their source failed).

    ``executor`` (:mod:`wiring.study.executors`) runs the cells; None: ``jobs`` cells at
    once (1: in this process, more: worker processes). With ``results`` (a results file),
    a cell recorded there with its current settings is not trained again, and every cell
    that finishes is appended to it. A SIGINT / SIGTERM raises :class:`StudyStopped` once
    the cells under way have stopped with their checkpoints."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = study.cells()
    total = len(cells)
    index = {c.name: i + 1 for i, c in enumerate(cells)}
    finished: set[str] = set()
    failed: dict[str, str] = {}
    pending: list[Cell] = []
    records = read_results(results) if results else {}
    for cell in cells:
        if results and recorded(study, cell, records):
            finished.add(cell.name)
            log_paths(out, cell)[1].unlink(missing_ok=True)
            say(f"[{index[cell.name]}/{total}] {cell.name}: finished, skipped (recorded in {results})")
        elif cell_state(out / cell.name) == "done":
            finished.add(cell.name)
            log_paths(out, cell)[1].unlink(missing_ok=True)
            if results:
                append_result(results, record_from_run(study, cell, out / cell.name))
            say(f"[{index[cell.name]}/{total}] {cell.name}: finished, skipped")
        else:
            pending.append(cell)

    def start(cell: Cell) -> tuple[dict[str, Any], str]:
        state = cell_state(out / cell.name)
        cfg = cell_config(study, cell, out, state)
        what = {"new": "training", "resume": "resuming", "restart": "restarting (no checkpoint)"}[state]
        src = f" from {cell.source}" if cell.source else ""
        say(f"[{index[cell.name]}/{total}] {cell.name}: {what}{src}")
        return cfg.to_dict(), str(log_paths(out, cell)[0])

    def finish(cell: Cell, result: dict[str, Any]) -> None:
        error_path = log_paths(out, cell)[1]
        if result["ok"]:
            finished.add(cell.name)
            error_path.unlink(missing_ok=True)
            if results:
                append_result(results, record_from_run(study, cell, out / cell.name))
            say(f"    {cell.name} done: test accuracy {result['test_acc']:.4f} in {result['seconds']:.1f}s")
        else:
            failed[cell.name] = result["error"]
            write_error(error_path, result["error"])
            say(f"    {cell.name} FAILED: {result['error']} (log: {log_paths(out, cell)[0]})")

    def blocked(cell: Cell) -> bool:
        if cell.source and cell.source in failed:
            failed[cell.name] = f"not run: its source {cell.source} failed"
            write_error(log_paths(out, cell)[1], failed[cell.name])
            say(f"[{index[cell.name]}/{total}] {cell.name}: skipped, its source {cell.source} failed")
            return True
        return False

    pool = executor if executor is not None else make_executor("jobs", out, jobs=jobs)
    running: dict[Any, Cell] = {}
    stopped: list[tuple[Cell, dict[str, Any]]] = []
    with pool:
        try:
            while pending or running:
                for cell in list(pending):
                    if len(running) >= pool.capacity:
                        break
                    if blocked(cell):
                        pending.remove(cell)
                    elif cell.source is None or cell.source in finished:
                        pending.remove(cell)
                        cfg_values, log_path = start(cell)
                        running[pool.submit(cell.name, cfg_values, log_path, say)] = cell
                if not running:
                    break
                for handle, result in pool.wait(list(running)):
                    cell = running.pop(handle)
                    if result.get("stopped"):
                        stopped.append((cell, result))
                    else:
                        finish(cell, result)
                if stopped:
                    raise Interrupted(stopped[0][1]["stopped"])
        except KeyboardInterrupt as err:      # Interrupted (a signal here, or a cell stopped by one)
            signum = int(getattr(err, "signum", 2))
            for handle, result in pool.stop(list(running), signum):
                cell = running.pop(handle)
                if result.get("stopped"):
                    stopped.append((cell, result))
                else:
                    finish(cell, result)
            names = ", ".join(c.name for c, _ in stopped)
            where = (f"{names} stopped with {'its checkpoint' if len(stopped) == 1 else 'their checkpoints'} "
                     f"of the moment" if stopped else "no cell was under way")
            raise StudyStopped(signum, f"stopped by {signal_name(signum)}: {where}; {len(finished)} of {total} "
                                       f"cells finished; run the same command to continue") from None
    return failed
