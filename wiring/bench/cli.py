"""The benchmarks' command lines, without PyTorch: ``python -m wiring.bench --help`` (and
``wiring.bench_inference``'s) answers from here before anything heavy loads.

Contract: :func:`training_parser` and :func:`inference_parser` are the parsers of
:mod:`wiring.bench.training` and :mod:`wiring.bench.inference`; the defaults they show
(:data:`PAPER_NODES`, the grids, :data:`BENCH_MODES`) are defined here and imported by the
benchmark modules. ``--threads`` defaults to None: torch's own count, read when a benchmark runs.

>>> training_parser().parse_args(["--nodes", "2000"]).nodes, inference_parser().parse_args([]).densities
(2000, [0.01, 0.05, 0.2])
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from models import DEFAULT_EDGES
from wiring import backends
from wiring.cli import ArgumentParser, run_cli
from wiring.modes import MODES, UPDATE_EVERY

TRAINING_PROG = "python -m wiring.bench"
TRAINING_DOC = "``python -m wiring.bench``: training throughput of the engine against the authors' formulation."
INFERENCE_PROG = "python -m wiring.bench_inference"
INFERENCE_DOC = "``python -m wiring.bench_inference``: inference speed of the static tiny classifier, three ways."

PAPER_NODES = 900          # the tiny classifier of DNW Table 1: levels 32 + 4 x 192, 100 outputs
#: --backend all: the node counts and densities of the grid
BACKEND_NODES = (PAPER_NODES, 4000)
BACKEND_DENSITIES = (0.01, 0.05, 0.20)
#: --table: the scaling grid
TABLE_NODES = (800, 2000, 4000, 8000)
TABLE_EDGES = (1000, 10000, 50000, 200000)
#: the inference benchmark's densities
DENSITIES = (0.01, 0.05, 0.20)
#: the modes the benchmark can time: every mode that needs no trained source run
BENCH_MODES = tuple(name for name, cls in MODES.items() if not cls.needs_source)


def training_parser() -> ArgumentParser:
    """``python -m wiring.bench``'s flags (:mod:`wiring.bench.training`)."""
    parser = ArgumentParser(prog=TRAINING_PROG, description=TRAINING_DOC,
                            epilog="python -m wiring.bench --inference [--help]: inference of the compact "
                                   "model vs the engine and the reference (wiring.bench.inference)")
    parser.add_argument("--model", choices=("tiny", "mobilenetv1_dnw"), default="tiny",
                        help="the network to time: tiny (the paper's static classifier) or mobilenetv1_dnw "
                             "(MobileNetV1 with learned wiring at --width, 10 classes; wiring.bench.mobilenet)")
    parser.add_argument("--width", type=float, default=0.225,
                        help="--model mobilenetv1_dnw: the width multiplier that sets each stage's edges (default 0.225)")
    parser.add_argument("--nodes", type=int, default=PAPER_NODES,
                        help="scale the tiny classifier to this many nodes (default 900, the paper's)")
    parser.add_argument("--edges", type=int, default=DEFAULT_EDGES, help=f"k, the real edges (default {DEFAULT_EDGES})")
    parser.add_argument("--batch-size", type=int, default=128, help="images per training step (default 128)")
    parser.add_argument("--image-size", type=int, default=32, help="input side in pixels (default 32)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps of each contestant (median; default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own: $OMP_NUM_THREADS, else one per core)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the wiring, weights and batch (default 0)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--table", metavar="FILE.md", type=Path,
                        help="run the scaling grid (--table-nodes x --table-edges) and write its Markdown table "
                             "into FILE.md (between its markers, or appended)")
    parser.add_argument("--table-nodes", type=int, nargs="+", default=list(TABLE_NODES), metavar="N",
                        help=f"--table: the node counts of the grid (default {' '.join(map(str, TABLE_NODES))})")
    parser.add_argument("--table-edges", type=int, nargs="+", default=list(TABLE_EDGES), metavar="K",
                        help=f"--table: the real-edge budgets of the grid (default {' '.join(map(str, TABLE_EDGES))})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--backend", choices=("all", *backends.CHOICES), default=None,
                        help="the engine's real-edge product backend (default: $WIRING_BACKEND, else auto); all: "
                             "every installed backend side by side at --backend-nodes x --densities (with --table "
                             "FILE.md, its Markdown table goes into FILE.md)")
    parser.add_argument("--backend-nodes", type=int, nargs="+", default=list(BACKEND_NODES), metavar="N",
                        help=f"--backend all: the node counts (default {' '.join(map(str, BACKEND_NODES))})")
    parser.add_argument("--densities", type=float, nargs="+", default=list(BACKEND_DENSITIES), metavar="D",
                        help="--backend all: densities k / candidates (default 0.01 0.05 0.2)")
    parser.add_argument("--mode", nargs="+", choices=BENCH_MODES, metavar="MODE",
                        help="race the engine in these wiring modes instead (e.g. dnw fixed rigl set): ms per "
                             f"training step and the ratios to dnw and fixed; choose from {', '.join(BENCH_MODES)}")
    parser.add_argument("--update-every", type=int, default=UPDATE_EVERY,
                        help=f"--mode rigl / set: steps between two rewirings, the length of a timed cycle "
                             f"(default {UPDATE_EVERY})")
    return parser


def inference_parser() -> ArgumentParser:
    """``python -m wiring.bench_inference``'s flags (:mod:`wiring.bench.inference`)."""
    parser = ArgumentParser(prog=INFERENCE_PROG, description=INFERENCE_DOC)
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES),
                        help="real-edge densities k / candidates (default 0.01 0.05 0.2)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward (default 64)")
    parser.add_argument("--image-size", type=int, default=32, help="input side in pixels (default 32)")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards of each model (median)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own: $OMP_NUM_THREADS, else one per core)")
    parser.add_argument("--model", choices=("tiny", "micro"), default="tiny",
                        help="the static classifier to time (default tiny)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random wirings and weights (default 0)")
    parser.add_argument("--run", type=Path, action="append", default=[], metavar="RUN_DIR",
                        help="also a trained static tiny classifier run directory (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON line per row")
    return parser


def help_main(argv: Sequence[str] | None = None) -> int:
    """``--help`` of ``python -m wiring.bench`` (``--inference ...``: of the inference benchmark),
    answered by the parser alone; a mistake before the ``--help`` is the usual one line, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = inference_parser() if argv[:1] == ["--inference"] else training_parser()
    rest = argv[1:] if argv[:1] == ["--inference"] else argv
    return run_cli(lambda args: parser.parse_args(args) and 0, parser.prog, rest)
