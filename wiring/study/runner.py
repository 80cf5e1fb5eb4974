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

import random
import signal
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Callable

from wiring.files import atomic_write
from wiring.study.results import (
    append_result,
    cell_state,
    log_paths,
    one_line,
    read_results,
    record_from_run,
    recorded,
)
from wiring.study.spec import Cell, Study, cell_config
from wiring.train.config import config_from_dict
from wiring.train.pipeline import run, stop_message
from wiring.train.trainer import Interrupted, Stopped, StopRequest, signal_name


class StudyStopped(KeyboardInterrupt):
    """A SIGINT / SIGTERM stopped the study; ``signum`` the signal, ``message`` one line."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum, self.message = signum, message


def train_cell(cfg_values: dict[str, Any], log_path: str, *, state_now: bool = False,
               threads: int | None = None, ignore_sigint: bool = False) -> dict[str, Any]:
    """Run one cell (``wiring.train.run``) with its output in ``log_path``; returns
    ``{"ok": True, "test_acc": ...}``, ``{"ok": False, "error": one line}`` or, stopped by
    SIGINT / SIGTERM with its checkpoint of the moment, ``{"ok": False, "stopped": signum,
    "error": one line}``. Every cell seeds torch / numpy / random itself and leaves the
    global torch flags as it found them, so cells are independent of their order and of
    each other. ``state_now``: take ``resume`` / ``overwrite`` from what the run folder
    holds now (a job that starts later than it was submitted, or again after a pre-emption);
    ``threads``: torch's thread count for the cell; ``ignore_sigint``: only SIGTERM stops the
    cell (a worker process, whose Ctrl-C is the study's)."""
    import numpy as np
    import torch

    if state_now:
        state = cell_state(Path(cfg_values["out"]))
        cfg_values = {**cfg_values, "resume": state == "resume", "overwrite": state == "restart"}
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    cfg = config_from_dict(cfg_values)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stop = StopRequest()
    with open(log_path, "a") as log, redirect_stdout(log), redirect_stderr(log), stop.installed():
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {cfg.out} "
              f"({'resume' if cfg.resume else 'overwrite' if cfg.overwrite else 'new'})", flush=True)
        try:
            cfg.validate()
            result = run(cfg, stop=stop)
        except (Stopped, Interrupted) as err:
            message = stop_message(err, Path(cfg.out))
            print(message, flush=True)
            return {"ok": False, "stopped": int(err.signum), "error": message,
                    "seconds": time.perf_counter() - start}
        except Exception as err:  # noqa: BLE001 - a failed cell is reported, the study goes on
            traceback.print_exc(file=log)
            return {"ok": False, "error": one_line(err), "seconds": time.perf_counter() - start}
        finally:
            torch.use_deterministic_algorithms(deterministic)
    return {"ok": True, "test_acc": float(result.get("test_acc", float("nan"))),
            "seconds": time.perf_counter() - start}


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
    from wiring.study.executors import make_executor

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
    try:
        with pool:
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
    except KeyboardInterrupt as err:          # Interrupted (a signal here, or a cell stopped by one)
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
