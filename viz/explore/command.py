"""``python -m viz.explore RUN_DIR|FILE.graphml [-o wiring.html] [--title TEXT]``: write the explorer page.

Contract: user mistakes (missing or malformed input, output folder missing) exit with
status 2 and one line on stderr; the output appears only once complete.
"""
from __future__ import annotations

import sys
from typing import Sequence

from viz.cli import UsageError, add_wiring_option, output_path
from viz.explore.page import HTML_FORMATS, write_explorer
from wiring.cli import ArgumentParser, die, run_cli

PROG = "python -m viz.explore"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m viz.explore: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG,
                            description="Write an interactive, self-contained HTML explorer of a run's wiring "
                                        "snapshots (or of one GraphML wiring).")
    parser.add_argument("source", metavar="RUN_DIR|FILE.graphml", help="run directory or GraphML file")
    parser.add_argument("-o", "--output", default="wiring.html", help="output .html file (default wiring.html)")
    parser.add_argument("--title", default=None, help="page title (default: the run directory or file name)")
    add_wiring_option(parser)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        out, _ = output_path(args.output, HTML_FORMATS)
        out, size, count = write_explorer(args.source, out, title=args.title, wiring=args.wiring)
    except UsageError as err:
        die(prog, str(err))
    except OSError as err:
        die(prog, f"cannot write {args.output}: {err.strerror or err}")
    print(f"wrote {out} ({size / 1e6:.2f} MB, {count} frame{'s' if count != 1 else ''})", file=sys.stderr)
    return 0
