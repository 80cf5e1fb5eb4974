"""What the tests of commands share: the environment of a command run as a real process, and
a command's ``main`` called the way a process would end.

``process_env(**extra)``: this environment with one thread per process (the machine may have
two cores shared by several test processes) and the project on ``PYTHONPATH``, plus ``extra``.
``run_main(entry, argv)``: ``entry(argv)`` with every argument as text; a ``SystemExit``
(argparse's, or a command's) becomes its exit status.
``kill9(proc)``: SIGKILL a process started with ``start_new_session=True`` and its session
(DataLoader workers, if any), wait for it, close its stderr pipe.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]


def process_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **extra}


def run_main(entry: Callable[[list[str]], int], argv: Sequence[object]) -> int:
    try:
        return entry([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def kill9(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    if proc.stderr is not None:
        proc.stderr.close()
