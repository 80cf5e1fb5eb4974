"""``python -m wiring.train --submit slurm|local [--partition P --gpus N --cpus N --time MIN] ARGS``:
one training run as a Slurm job (or submitit's local process) instead of in this process.

Contract: ARGS are ``wiring.train``'s own and are checked here first (a mistake is one line
and exit 2, nothing submitted); the job runs ``python -m wiring.train ARGS``; the command
prints the job id and the run folder and returns without waiting (``squeue`` shows the
job, the run folder fills as usual). A job that Slurm times out or pre-empts is requeued by
submitit (:meth:`TrainJob.checkpoint`) and continues with ``--out RUN_DIR --resume`` from
the run's checkpoint. Job output: ``<run folder's parent>/submitit/<job id>_*``. Needs the
optional ``submitit`` package (``pip install 'wiring[slurm]'``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from wiring.cli import ArgumentParser, run_cli
from wiring.errors import UserError
from wiring.io import CHECKPOINT_FILE

PROG = "python -m wiring.train --submit"


class SubmitError(UserError):
    """``--submit`` cannot go ahead (no submitit, no sbatch, a bad option)."""


class TrainJob:
    """``python -m wiring.train ARGV`` as a submitit job; requeued, it resumes its run folder."""

    def __init__(self, argv: list[str], run_dir: str) -> None:
        self.argv, self.run_dir = argv, run_dir

    def __call__(self) -> int:
        from wiring.train.pipeline import main
        argv = self.argv
        if (Path(self.run_dir) / CHECKPOINT_FILE).is_file() and "--resume" not in argv:
            argv = ["--out", self.run_dir, "--resume"]          # a requeued job: continue the run
        code = main(argv)
        if code:
            raise RuntimeError(f"python -m wiring.train exited {code} (see the job's output)")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit
        return submitit.helpers.DelayedSubmission(self)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, add_help=False)
    parser.add_argument("--submit", choices=("slurm", "local"), required=True)
    parser.add_argument("--partition", metavar="P")
    parser.add_argument("--gpus", type=int, default=0, metavar="N")
    parser.add_argument("--cpus", type=int, default=1, metavar="N")
    parser.add_argument("--time", type=int, default=60, metavar="MIN")
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, rest = _parser().parse_known_args(argv)
    from wiring.train.config import parse_config
    from wiring.train.pipeline import run_dir_of
    cfg = parse_config(rest)                          # a mistake in the run's own flags: one line, exit 2
    run_dir = run_dir_of(cfg)
    try:
        import submitit
    except ImportError:
        raise SubmitError(f"--submit {ours.submit} needs the submitit package: pip install submitit "
                          f"(or pip install 'wiring[slurm]')") from None
    executor = submitit.AutoExecutor(folder=run_dir.parent / "submitit" / "%j", cluster=ours.submit)
    params: dict[str, Any] = {"timeout_min": ours.time, "cpus_per_task": ours.cpus, "nodes": 1,
                              "tasks_per_node": 1, "name": f"wiring-{run_dir.name}"}
    if ours.gpus:
        params["gpus_per_node"] = ours.gpus
    if ours.partition and ours.submit == "slurm":
        params["slurm_partition"] = ours.partition
    executor.update_parameters(**params)
    try:
        job = executor.submit(TrainJob(rest, str(run_dir)))
    except Exception as err:  # noqa: BLE001 - sbatch refused: one line
        raise SubmitError(f"--submit {ours.submit}: {str(err).strip().splitlines()[-1] if str(err) else err!r}") from None
    print(f"submitted {run_dir} as {'Slurm' if ours.submit == 'slurm' else 'local'} job {job.job_id} "
          f"(output in {run_dir.parent / 'submitit'}; squeue shows it)")
    if ours.submit == "local":
        job.result()                                  # a local job is a child of this process: wait for it
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, PROG, argv)
