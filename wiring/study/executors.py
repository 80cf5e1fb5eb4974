"""Where a study's cells run: this process, worker processes, or submitit (local processes, Slurm jobs).

Contract: :func:`make_executor` returns one of :data:`EXECUTORS`; every executor is a context
manager with ``capacity`` (cells under way at most), ``submit(name, cfg_values, log_path,
say)`` (a handle), ``wait(handles)`` (blocks until one or more finish: ``[(handle, result)]``,
each result :func:`~wiring.study.cell.train_cell`'s) and ``stop(handles, signum)`` (the cells
under way stop with their checkpoints of the moment: their results). The cells write only
their run folders and logs; the results file, the report and the ``.error`` files are the
study process's, so they are the same whichever executor ran the cells.

* ``jobs``: ``--jobs 1`` in this process, more in spawned worker processes (SIGINT there is
  left to the study, which forwards a stop as SIGTERM).
* ``local``: submitit's local executor, one process per cell (``--jobs`` at once, default 1).
* ``slurm``: one Slurm job per cell through submitit (``sbatch``; ``--partition``,
  ``--cpus-per-cell``, ``--gpus-per-cell``, ``--time``), ``OUT/submitit/<job id>_*`` its
  output. A job takes its cell's state when it starts, so a job that Slurm pre-empts,
  times out (submitit requeues it: :meth:`CellJob.checkpoint`) or kills is continued from
  the cell's checkpoint (``--resume``) when it runs again; a job that ended without a result
  is resubmitted up to ``retries`` times.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from wiring.study.results import cell_state, one_line
from wiring.study.spec import StudyError


def train_cell(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`wiring.study.cell.train_cell`, whose trainer (and torch) load with the first cell,
    not with ``python -m wiring.study --help``."""
    from wiring.study.cell import train_cell as train
    return train(*args, **kwargs)

EXECUTORS = ("jobs", "local", "slurm")
SUBMITIT_MISSING = "needs the submitit package: pip install submitit (or pip install 'wiring[slurm]')"


def make_executor(kind: str, out: Path, *, jobs: int | None = None, partition: str | None = None,
                  cpus_per_cell: int = 1, gpus_per_cell: int = 0, time_min: int = 60, retries: int = 2):
    """The executor ``kind`` (one of :data:`EXECUTORS`) for study folder ``out``."""
    if kind == "jobs":
        return InProcess() if (jobs or 1) <= 1 else WorkerProcesses(jobs or 1)
    if kind in ("local", "slurm"):
        return Submitit(kind, Path(out), jobs=jobs, partition=partition, cpus_per_cell=cpus_per_cell,
                        gpus_per_cell=gpus_per_cell, time_min=time_min, retries=retries)
    raise StudyError(f"--executor: unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")


def _failure(err: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": one_line(err), "seconds": 0.0}


class InProcess:
    """``--jobs 1``: each cell in this process, one after the other (``submit`` trains it)."""

    capacity = 1

    def __init__(self) -> None:
        self._done: dict[int, dict[str, Any]] = {}
        self._next = 0

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, name: str, cfg_values: dict[str, Any], log_path: str, say: Callable[[str], None]) -> int:
        self._next += 1
        self._done[self._next] = train_cell(cfg_values, log_path)
        return self._next

    def wait(self, handles: list) -> list[tuple[Any, dict[str, Any]]]:
        return [(h, self._done.pop(h)) for h in handles if h in self._done]

    def stop(self, handles: list, signum: int) -> list[tuple[Any, dict[str, Any]]]:
        return self.wait(handles)


def _worker_init(threads: int) -> None:
    import torch

    from wiring.train.allocator import tune_malloc
    tune_malloc()
    torch.set_num_threads(max(1, threads))


def _worker_cell(cfg_values: dict[str, Any], log_path: str) -> dict[str, Any]:
    """A worker's cell: SIGINT (a Ctrl-C reaches the whole process group) is the study's;
    it forwards a stop as SIGTERM, which stops the cell with its checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return train_cell(cfg_values, log_path, ignore_sigint=True)


class WorkerProcesses:
    """``--jobs N`` (N > 1): N spawned worker processes, each with cpu_count / N threads."""

    def __init__(self, jobs: int) -> None:
        self.capacity = jobs
        self.pool = None

    def __enter__(self) -> "WorkerProcesses":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // self.capacity)
        self.pool = ProcessPoolExecutor(max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init, initargs=(threads,))
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, name: str, cfg_values: dict[str, Any], log_path: str, say: Callable[[str], None]):
        return self.pool.submit(_worker_cell, cfg_values, log_path)

    @staticmethod
    def _result(future) -> dict[str, Any]:
        try:
            return future.result()
        except Exception as err:  # noqa: BLE001 - a crashed worker fails its cell only
            return _failure(err)

    def wait(self, handles: list) -> list[tuple[Any, dict[str, Any]]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return [(f, self._result(f)) for f in done]

    def stop(self, handles: list, signum: int) -> list[tuple[Any, dict[str, Any]]]:
        from concurrent.futures import wait
        for process in list(getattr(self.pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except OSError:
                pass
        wait(handles)
        return [(f, self._result(f)) for f in handles]


class CellJob:
    """A cell as a submitit job: :func:`~wiring.study.cell.train_cell` with the cell's state
    taken when the job starts. ``checkpoint`` (submitit calls it when Slurm signals a time-out
    or a pre-emption) requeues the same cell, which then resumes from its checkpoint."""

    def __init__(self, cfg_values: dict[str, Any], log_path: str, threads: int) -> None:
        self.cfg_values, self.log_path, self.threads = cfg_values, log_path, threads

    def __call__(self) -> dict[str, Any]:
        from wiring.train.allocator import tune_malloc
        tune_malloc()
        return train_cell(self.cfg_values, self.log_path, state_now=True, threads=self.threads)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit
        return submitit.helpers.DelayedSubmission(self)


class _Job:
    """A submitted cell: its submitit job and how often it was submitted."""

    def __init__(self, name: str, cell_job: CellJob, job: Any) -> None:
        self.name, self.cell_job, self.job, self.tries = name, cell_job, job, 1


class Submitit:
    """``--executor local`` / ``slurm``: one submitit job per cell (see the module docstring)."""

    POLL_S = 1.0

    def __init__(self, kind: str, out: Path, *, jobs: int | None, partition: str | None, cpus_per_cell: int,
                 gpus_per_cell: int, time_min: int, retries: int) -> None:
        try:
            import submitit
        except ImportError:
            raise StudyError(f"--executor {kind} {SUBMITIT_MISSING}") from None
        if kind == "slurm" and subprocess.run(["which", "sbatch"], capture_output=True).returncode != 0:
            raise StudyError("--executor slurm: no sbatch here (Slurm's commands are not installed or not "
                             "on PATH); --executor local runs the same cells in local processes")
        self.kind, self.retries, self.threads = kind, retries, cpus_per_cell
        self.capacity = jobs if jobs else (1 if kind == "local" else 10**9)
        self.folder = out / "submitit"
        self.executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=kind)
        params: dict[str, Any] = {"timeout_min": time_min, "cpus_per_task": cpus_per_cell, "tasks_per_node": 1,
                                  "nodes": 1}
        if gpus_per_cell:
            params["gpus_per_node"] = gpus_per_cell
        if kind == "slurm" and partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)
        self._stopping = False
        self._say: Callable[[str], None] = print

    def __enter__(self) -> "Submitit":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _submit(self, name: str, cell_job: CellJob):
        self.executor.update_parameters(name=f"wiring-{name}")
        job = self.executor.submit(cell_job)
        what = "Slurm job" if self.kind == "slurm" else "local job"
        self._say(f"    {name}: submitted as {what} {job.job_id}")
        return job

    def submit(self, name: str, cfg_values: dict[str, Any], log_path: str, say: Callable[[str], None]) -> _Job:
        self._say = say
        cell_job = CellJob(cfg_values, log_path, self.threads)
        return _Job(name, cell_job, self._submit(name, cell_job))

    def _gone(self, handle: _Job) -> bool:
        """The job has ended: a result, or (Slurm) no longer in the queue."""
        job = handle.job
        if job.paths.result_pickle.exists():
            return True
        if self.kind != "slurm":
            return job.done()
        # not submitit's job.done(): it asks sacct, which a Slurm without accounting refuses
        queued = subprocess.run(["squeue", "-h", "-j", str(job.job_id), "-o", "%i"], capture_output=True, text=True)
        if queued.returncode == 0 and not queued.stdout.strip():
            time.sleep(2 * self.POLL_S)   # the result file may land just after the job leaves the queue
            return True
        return False

    def _outcome(self, handle: _Job) -> dict[str, Any] | None:
        """The finished job's result, or None when it was resubmitted (ended without a result)."""
        job = handle.job
        try:
            result = job.result()
        except Exception as err:  # noqa: BLE001 - UncompletedJobError: killed, pre-empted, timed out
            result = {"ok": False, "error": f"its {self.kind} job {job.job_id} ended without a result "
                                            f"({one_line(err)})", "seconds": 0.0, "lost": True}
        if not self._stopping and (result.get("lost") or result.get("stopped")) and handle.tries <= self.retries:
            state = cell_state(Path(handle.cell_job.cfg_values["out"]))
            handle.tries += 1
            self._say(f"    {handle.name}: job {job.job_id} ended before the cell finished; resubmitted "
                      f"({'continues from its checkpoint' if state == 'resume' else 'starts again'})")
            handle.job = self._submit(handle.name, handle.cell_job)
            return None
        result.pop("lost", None)
        return result

    def wait(self, handles: list) -> list[tuple[Any, dict[str, Any]]]:
        while True:
            out = []
            for handle in handles:
                if self._gone(handle):
                    result = self._outcome(handle)
                    if result is not None:
                        out.append((handle, result))
            if out:
                return out
            time.sleep(self.POLL_S)

    def stop(self, handles: list, signum: int) -> list[tuple[Any, dict[str, Any]]]:
        self._stopping = True
        for handle in handles:
            try:
                handle.job.cancel(check=False)       # scancel: SIGTERM, then SIGKILL after KillWait
            except Exception:  # noqa: BLE001 - a job that already ended
                pass
        out, left, deadline = [], list(handles), time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for handle in list(left):
                if self._gone(handle):
                    left.remove(handle)
                    out.append((handle, self._outcome(handle) or {"ok": False, "error": "stopped"}))
            time.sleep(self.POLL_S)
        return out + [(h, {"ok": False, "error": f"its job {h.job.job_id} did not end in 120 s"}) for h in left]
