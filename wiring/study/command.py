"""``python -m wiring.study STUDY.yaml``: run a study (resumable) and write its report.

Contract: ``--dry-run`` lists the cells in order (and which are recorded already);
``--report-only`` rebuilds the report from the results file and run folders; a bad study
file is one line ``python -m wiring.study: error: ...`` and exit status 2. Before the first
cell trains (and for ``--dry-run``) the grid's size and every cell are checked
(:mod:`wiring.study.checks`); a study holds a lock on its ``--out`` (a second one there exits
2 naming the first's pid); SIGINT / SIGTERM stop the cells under way with their
checkpoints, print one line and exit 130 / 143. The report is ``OUT/results.md`` unless
``--report`` names another (the committed reports in docs/ are written only so).
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from wiring.cli import ArgumentParser, run_cli
from wiring.files import atomic_write
from wiring.io import RunFolderBusy, RunLock
from wiring.study.checks import MAX_CELLS, check_cells, check_size
from wiring.study.executors import EXECUTORS, make_executor
from wiring.study.results import (
    cell_state,
    collect,
    read_results,
    recorded,
    results_path,
    torn_record,
    write_csv,
)
from wiring.study.spec import Study, StudyError, load_study, parse_override
from wiring.train.allocator import tune_malloc

REPORT_NAME = "results.md"     # the report's name in the study folder, unless --report names another


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m wiring.study",
                            description="Run a grid of DNW training runs and report the results.")
    parser.add_argument("config", metavar="CONFIG.yaml", help="the study: name, base, grid, optional paper table")
    parser.add_argument("--out", metavar="DIR", help="study folder (default runs/study-<name>)")
    parser.add_argument("--report", metavar="FILE.md",
                        help=f"Markdown report; plots are written next to it (default OUT/{REPORT_NAME})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="check every cell and list them in the order they would run")
    mode.add_argument("--report-only", action="store_true",
                      help="rebuild results.csv and the report from the run folders, train nothing")
    parser.add_argument("--results", metavar="FILE.jsonl",
                        help="results file: one line per finished cell, never trained again "
                             "(default: the report's name with .jsonl)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a training setting of the study's base (repeatable), e.g. --set epochs=1")
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the data set's files (base data-dir)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run and report only the cells whose names match (shell pattern, repeatable, "
                             "e.g. 'static-dnw-*'); the cells they start from are included")
    parser.add_argument("--max-cells", type=int, default=MAX_CELLS, metavar="N",
                        help=f"refuse a grid of more than N cells (default {MAX_CELLS:,})")
    parser.add_argument("--executor", choices=EXECUTORS, default="jobs",
                        help="where cells run: jobs (this machine, --jobs at once), local (submitit's local "
                             "processes), slurm (one Slurm job per cell through submitit)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="cells under way at once (jobs: default 1, in this process; more: worker processes; "
                             "local: default 1; slurm: default no limit, Slurm queues them)")
    slurm = parser.add_argument_group("slurm (--executor slurm; --cpus-per-cell, --gpus-per-cell and --time also local)")
    slurm.add_argument("--partition", metavar="P", help="Slurm partition (default: the cluster's default)")
    slurm.add_argument("--cpus-per-cell", type=int, default=1, metavar="N", help="cpus of each cell's job (default 1)")
    slurm.add_argument("--gpus-per-cell", type=int, default=0, metavar="N", help="GPUs of each cell's job (default 0)")
    slurm.add_argument("--time", type=int, default=60, metavar="MIN",
                       help="time limit of each cell's job in minutes (default 60); a cell cut off by it is "
                            "requeued and continues from its checkpoint")
    return parser


def canonical_command(config: str, out: Path, report: Path, extra: Sequence[str] = ()) -> str:
    parts = ["python", "-m", "wiring.study", config, "--out", str(out)]
    if Path(report) != Path(out) / REPORT_NAME:
        parts += ["--report", str(report)]
    return shlex.join([*parts, *extra])


def dry_run(study: Study, out: Path, results: Path | None = None) -> list[str]:
    cells = study.cells()
    records = read_results(results) if results else {}
    lines = [f"study {study.name}: {len(cells)} cells into {out} "
             f"({len(study.grid['setting'])} settings x {len(study.grid['mode'])} modes x "
             f"{len(study.grid['edges'])} edges x {len(study.grid['seed'])} seeds"
             + ("; complete once per setting and seed" if "complete" in study.grid["mode"] else "")
             + (f"; --only: {len(cells)} of {study.count()}" if study.only else "") + ")"]
    width = max(len(c.name) for c in cells)
    for i, cell in enumerate(cells, 1):
        state = "recorded" if recorded(study, cell, records) else cell_state(Path(out) / cell.name)
        src = f"  --from {Path(out) / cell.source}" if cell.source else ""
        lines.append(f"{i:>4}. {cell.name:<{width}}  [{state}]{src}")
    if study.source_mode() == "dnw":
        lines.append("note: complete is not in the grid, so fine_tune / lottery start from the dnw cells")
    return lines


PROG = "python -m wiring.study"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: its exit status (2 and one line ``python -m wiring.study: error: ...`` for a
    user mistake, 1 when cells failed, 128 + N when stopped by signal N: 130 SIGINT, 143 SIGTERM)."""
    return run_cli(_main, PROG, argv)


def study_lock(out: Path) -> RunLock:
    """The study's lock on ``out`` (:class:`wiring.io.RunLock`: the kernel drops it when the
    process ends); a second study there is a StudyError naming the holder's pid."""
    try:
        return RunLock(out).acquire()
    except RunFolderBusy as err:
        found = re.search(r"by process (\S+)", str(err))
        pid = found.group(1) if found else "(unknown pid)"
        raise StudyError(f"study folder {out} is in use by process {pid} (another python -m wiring.study holds "
                         f"{Path(out) / '.lock'}): wait for it to end, or use another --out") from None


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the trainer, the report's plots and torch load here, once --help has had its chance
    from wiring.study.report import write_report
    from wiring.study.runner import StudyStopped, run_study
    from wiring.train.trainer import StopRequest, signal_name
    tune_malloc()
    for name in ("jobs", "max_cells", "cpus_per_cell", "time"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise StudyError(f"--{name.replace('_', '-')}: must be at least 1, got {value}")
    if args.gpus_per_cell < 0:
        raise StudyError(f"--gpus-per-cell: must be 0 or more, got {args.gpus_per_cell}")
    if args.executor == "jobs" and (args.partition or args.gpus_per_cell):
        raise StudyError("--partition and --gpus-per-cell are for --executor slurm (or local)")
    overrides: dict[str, Any] = dict(parse_override(text) for text in args.overrides)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    study = load_study(args.config, overrides)
    study.only = tuple(args.only)
    check_size(study, args.max_cells)
    if study.only and not study.cells():
        raise StudyError(f"--only {' '.join(args.only)}: matches none of the {study.count()} cells "
                         f"(--dry-run without --only lists them)")
    out = Path(args.out) if args.out else Path("runs") / f"study-{study.name}"
    report = Path(args.report) if args.report else out / REPORT_NAME
    results = Path(args.results) if args.results else results_path(report)
    extra: list[str] = []
    if results != results_path(report):
        extra += ["--results", str(results)]
    for text in args.overrides:
        extra += ["--set", text]
    if args.data_dir:
        extra += ["--data-dir", args.data_dir]
    for pattern in args.only:
        extra += ["--only", pattern]
    command = canonical_command(args.config, out, report, extra)
    torn = torn_record(results)
    if torn:
        print(f"note: results file {results}, line {torn}: a record cut short (an interrupted write) is "
              f"ignored; the next record appended replaces it", file=sys.stderr)
    read_results(results)
    if not args.report_only:
        check_cells(study)
    if args.dry_run:
        print("\n".join(dry_run(study, out, results)))
        return 0
    if args.report_only and not out.is_dir() and not results.is_file():
        raise StudyError(f"--report-only: no study folder {out} and no results file {results}")
    failed: dict[str, str] = {}
    stop = StopRequest()
    lock = study_lock(out)
    try:
        if not args.report_only:
            with stop.installed():        # SIGINT / SIGTERM between cells: at once; in a cell: its checkpoint
                try:
                    executor = make_executor(args.executor, out, jobs=args.jobs, partition=args.partition,
                                             cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell,
                                             time_min=args.time)
                    if study.path and study.path.is_file():
                        atomic_write(out / "study.yaml", lambda f: f.write(study.path.read_bytes()), binary=True)
                    print(f"study {study.name}: {len(study.cells())} cells into {out} "
                          f"(training output in {out / 'logs'}; executor {args.executor})", flush=True)
                    failed = run_study(study, out, say=lambda line: print(line, flush=True), results=results,
                                       executor=executor)
                except StudyStopped as err:
                    print(err.message, file=sys.stderr)
                    return 128 + err.signum
                except KeyboardInterrupt as err:
                    signum = int(getattr(err, "signum", 2))
                    print(f"stopped by {signal_name(signum)} before a cell started: finished cells are kept; "
                          f"run the same command to continue", file=sys.stderr)
                    return 128 + signum
        rows = collect(study, out, results)
        write_csv(rows, out / "results.csv")
        write_report(study, rows, out, report, command)
    finally:
        lock.release()
    print(f"results: {out / 'results.csv'} and {results}\nreport:  {report}")
    if failed:
        print(f"{len(failed)} of {len(rows)} cells failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()),
              file=sys.stderr)
        return 1
    return 0
