"""One cell of a study, run where an executor puts it (:mod:`wiring.study.executors`).

Contract: :func:`train_cell` runs one cell's training config with its output in its log and
returns a plain dict (picklable: worker processes, submitit jobs): done with its test
accuracy, failed with one line, or stopped by SIGINT / SIGTERM with its checkpoint of the
moment. :class:`StudyStopped` is how a study says it was stopped.
"""
from __future__ import annotations

import random
import signal
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from wiring.study.results import cell_state, one_line
from wiring.train.config import config_from_dict
from wiring.train.pipeline import run, stop_message
from wiring.train.trainer import Interrupted, Stopped, StopRequest


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
