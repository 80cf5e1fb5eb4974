"""The command line the viz tools share: one error type, output checks, figure options, atomic figure writes.

Contract: every viz command parses with :class:`wiring.cli.ArgumentParser`, reports a user
mistake as :class:`UsageError` (one line ``prog: error: ...``, exit 2, through
:func:`wiring.cli.run_cli`), checks the output name (:func:`output_path`: the suffix names
the format, the folder must exist) and the picture size (:func:`check_pixels`) before any
work, and writes the figure atomically (:func:`write_figure`: nothing half-written).

>>> positive_int("3")
3
>>> output_path("w.png", ("png", "svg"))[1]
'png'
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from wiring.cli import die
from wiring.errors import UserError
from wiring.io import (
    WIRING_OPTION_HELP,
)


class UsageError(UserError):
    """A user mistake; the CLI prints the message on one line and exits 2."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def output_path(path: str | os.PathLike, allowed: Sequence[str]) -> tuple[Path, str]:
    """``(path, format)`` for an output file whose extension is one of
    ``allowed`` (without dots, lower case); else :class:`UsageError`. The
    folder must exist."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in allowed:
        exts = ", ".join(f".{e}" for e in allowed)
        shown = f"'.{fmt}'" if fmt else "no extension"
        raise UsageError(f"output {path} has {shown}; use one of {exts}")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output folder {folder} does not exist")
    if path.is_dir():
        raise UsageError(f"output {path} is a directory")
    return path, fmt


def add_figure_options(parser: argparse.ArgumentParser, size: tuple[float, float], dpi: int) -> None:
    """``--size W H`` (inches) and ``--dpi N`` with the given defaults."""
    parser.add_argument("--size", nargs=2, type=positive_float, metavar=("W", "H"), default=size,
                        help=f"figure size in inches (default {size[0]:g} {size[1]:g})")
    parser.add_argument("--dpi", type=positive_int, default=dpi, help=f"dots per inch (default {dpi})")


def check_pixels(size: Sequence[float], dpi: int, limit: int) -> None:
    """A :class:`UsageError` when ``size`` at ``dpi`` is over ``limit`` pixels a side."""
    if size[0] * dpi > limit or size[1] * dpi > limit:
        raise UsageError(f"--size {size[0]:g} {size[1]:g} at --dpi {dpi} is over {limit} pixels a side")


def write_figure(prog: str, out: Path, write) -> int:
    """Call ``write()`` with matplotlib's Agg backend; an OS error exits 2 naming ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    try:
        write()
    except OSError as err:
        die(prog, f"cannot write {out}: {err.strerror or err}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def add_wiring_option(parser) -> None:
    """``--wiring NAME``: which wiring of a run with several to read."""
    parser.add_argument("--wiring", metavar="NAME", default=None, help=WIRING_OPTION_HELP)


def _message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename or ''}: {err.strerror}".lstrip(": ")
    return str(err)
