"""``python -m wiring.study STUDY.yaml``: run a study (resumable) and write its report.

Contract: ``--dry-run`` lists the cells in order (and which are recorded already);
``--report-only`` rebuilds the report from the results file and run folders; a bad study
file is one line ``python -m wiring.study: error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from wiring.cli import ArgumentParser, run_cli
from wiring.study.report import write_report
from wiring.study.results import cell_state, collect, read_results, recorded, results_path, write_csv
from wiring.study.runner import run_study
from wiring.study.spec import Study, StudyError, load_study
from wiring.train.allocator import tune_malloc
from wiring.train.data import check_dataset

DEFAULT_REPORT = Path("docs/results.md")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m wiring.study",
                                     description="Run a grid of DNW training runs and report the results.")
    parser.add_argument("config", metavar="CONFIG.yaml", help="the study: name, base, grid, optional paper table")
    parser.add_argument("--out", metavar="DIR", help="study folder (default runs/study-<name>)")
    parser.add_argument("--report", metavar="FILE.md", default=str(DEFAULT_REPORT),
                        help=f"Markdown report; plots are written next to it (default {DEFAULT_REPORT})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the cells in the order they would run")
    mode.add_argument("--report-only", action="store_true",
                      help="rebuild results.csv and the report from the run folders, train nothing")
    parser.add_argument("--results", metavar="FILE.jsonl",
                        help="results file: one line per finished cell, never trained again "
                             "(default: the report's name with .jsonl)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="cells trained at once (1: in this process; more: worker processes)")
    return parser


def canonical_command(config: str, out: Path, report: Path) -> str:
    parts = ["python", "-m", "wiring.study", config, "--out", str(out)]
    if Path(report) != DEFAULT_REPORT:
        parts += ["--report", str(report)]
    return shlex.join(parts)


def dry_run(study: Study, out: Path, results: Path | None = None) -> list[str]:
    cells = study.cells()
    records = read_results(results) if results else {}
    lines = [f"study {study.name}: {len(cells)} cells into {out} "
             f"({len(study.grid['setting'])} settings x {len(study.grid['mode'])} modes x "
             f"{len(study.grid['edges'])} edges x {len(study.grid['seed'])} seeds"
             + ("; complete once per setting and seed" if "complete" in study.grid["mode"] else "") + ")"]
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
    user mistake, 1 when cells failed, 130 when interrupted)."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()
    if args.jobs < 1:
        raise StudyError(f"--jobs: must be at least 1, got {args.jobs}")
    study = load_study(args.config)
    out = Path(args.out) if args.out else Path("runs") / f"study-{study.name}"
    report = Path(args.report)
    results = Path(args.results) if args.results else results_path(report)
    command = canonical_command(args.config, out, report)
    if args.results and results != results_path(report):
        command += f" --results {shlex.quote(str(results))}"
    read_results(results)
    if args.dry_run:
        print("\n".join(dry_run(study, out, results)))
        return 0
    failed: dict[str, str] = {}
    if not args.report_only:
        check_dataset(study.base_config().data, study.base_config().data_dir)
        out.mkdir(parents=True, exist_ok=True)
        if study.path and study.path.is_file():
            (out / "study.yaml").write_text(study.path.read_text())
        print(f"study {study.name}: {len(study.cells())} cells into {out} (training output in {out / 'logs'})",
              flush=True)
        try:
            failed = run_study(study, out, jobs=args.jobs, say=lambda line: print(line, flush=True),
                               results=results)
        except KeyboardInterrupt:
            print("\ninterrupted: finished cells and checkpoints are kept; run the same command to resume",
                  file=sys.stderr)
            return 130
    elif not out.is_dir() and not results.is_file():
        raise StudyError(f"--report-only: no study folder {out} and no results file {results}")
    rows = collect(study, out, results)
    write_csv(rows, out / "results.csv")
    write_report(study, rows, out, report, command)
    print(f"results: {out / 'results.csv'} and {results}\nreport:  {report}")
    if failed:
        print(f"{len(failed)} of {len(rows)} cells failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()),
              file=sys.stderr)
        return 1
    return 0
