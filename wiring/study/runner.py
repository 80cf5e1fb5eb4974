"""Running a study: every cell one call of :func:`wiring.train.pipeline.run`, resumable.

Contract: :func:`cell_state` says what a cell's run folder holds (done, resumable, new);
:func:`cell_config` is the cell's training config (the study's base plus the cell's setting,
mode, edges and seed; ``--from`` its source cell); :func:`run_study` runs the cells in the
study's order (in this process with ``jobs=1``, in worker processes otherwise), skips every
cell already recorded in the results file, continues a checkpointed one with ``--resume``,
and reports a failed cell (``OUT/logs/<cell>.error``) and goes on.
"""
from __future__ import annotations

import os
import random
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Callable

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
from wiring.train.allocator import tune_malloc
from wiring.train.config import config_from_dict
from wiring.train.pipeline import run


def train_cell(cfg_values: dict[str, Any], log_path: str) -> dict[str, Any]:
    """Run one cell (``wiring.train.run``) with its output in ``log_path``; returns
    ``{"ok": True, "test_acc": ...}`` or ``{"ok": False, "error": one line}``. Every
    cell seeds torch / numpy / random itself and leaves the global torch flags as it
    found them, so cells are independent of their order and of each other."""
    import numpy as np
    import torch

    cfg = config_from_dict(cfg_values)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "a") as log, redirect_stdout(log), redirect_stderr(log):
        print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {cfg.out} "
              f"({'resume' if cfg.resume else 'overwrite' if cfg.overwrite else 'new'})", flush=True)
        try:
            cfg.validate()
            result = run(cfg)
        except Exception as err:  # noqa: BLE001 - a failed cell is reported, the study goes on
            traceback.print_exc(file=log)
            return {"ok": False, "error": one_line(err), "seconds": time.perf_counter() - start}
        finally:
            torch.use_deterministic_algorithms(deterministic)
    return {"ok": True, "test_acc": float(result.get("test_acc", float("nan"))),
            "seconds": time.perf_counter() - start}


def _worker_init(threads: int) -> None:
    import torch
    tune_malloc()
    torch.set_num_threads(max(1, threads))


def run_study(study: Study, out: Path, *, jobs: int = 1, say: Callable[[str], None] = print,
              results: Path | None = None) -> dict[str, str]:
    """Run every unfinished cell of ``study`` into ``out``; returns ``{cell name: error}``
    for the cells that failed (or could not start because their source failed).

    With ``results`` (a results file), a cell recorded there with its current settings is
    not trained again, and every cell that finishes is appended to it."""
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
            say(f"    done: test accuracy {result['test_acc']:.4f} in {result['seconds']:.1f}s")
        else:
            failed[cell.name] = result["error"]
            error_path.write_text(result["error"] + "\n")
            say(f"    FAILED: {result['error']} (log: {log_paths(out, cell)[0]})")

    def blocked(cell: Cell) -> bool:
        if cell.source and cell.source in failed:
            failed[cell.name] = f"not run: its source {cell.source} failed"
            log_paths(out, cell)[1].parent.mkdir(parents=True, exist_ok=True)
            log_paths(out, cell)[1].write_text(failed[cell.name] + "\n")
            say(f"[{index[cell.name]}/{total}] {cell.name}: skipped, its source {cell.source} failed")
            return True
        return False

    if jobs <= 1:
        for cell in pending:
            if not blocked(cell):
                finish(cell, train_cell(*start(cell)))
        return failed

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    running: dict[Any, Cell] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        while pending or running:
            for cell in list(pending):
                if len(running) >= jobs:
                    break
                if blocked(cell):
                    pending.remove(cell)
                elif cell.source is None or cell.source in finished:
                    pending.remove(cell)
                    running[pool.submit(train_cell, *start(cell))] = cell
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - a crashed worker fails its cell only
                    result = {"ok": False, "error": one_line(err), "seconds": 0.0}
                say(f"[{index[cell.name]}/{total}] {cell.name}:")
                finish(cell, result)
    return failed
