"""What every command-line tool of the project shares: one-line user errors.

A user mistake prints ``prog: error: message`` on one line of stderr and exits with
status 2: no usage block, no traceback. Tools build their parser with
:class:`ArgumentParser` and report their own checks with :func:`die`.
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def die(prog: str, message: str) -> NoReturn:
    """Print ``prog: error: message`` on one line of stderr and exit 2."""
    line = " ".join(str(message).split())
    print(f"{prog}: error: {line}", file=sys.stderr)
    raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        die(self.prog, message)
