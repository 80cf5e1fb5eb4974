"""What every command-line tool of the project shares: one-line user errors.

A user mistake prints ``prog: error: message`` on one line of stderr and exits with
status 2: no usage block, no traceback. Every command (``python -m wiring.train``,
``wiring.study``, ``wiring.export``, ... and the ``viz`` tools) builds its parser
with :class:`ArgumentParser` and runs its body through :func:`run_cli`, which
prints, in that one format:

* a :class:`~wiring.errors.UserError` (every project error a user can cause
  subclasses it): its message;
* an :class:`OSError` (a full disk, a file-size limit, a read-only or pseudo file
  system, a missing permission, on a path the user gave): the path and the
  system's reason, e.g. ``runs/x/checkpoint.pt: No space left on device``;
* a :class:`KeyboardInterrupt` that the command does not handle itself:
  ``prog: interrupted``, exit status 130 (``wiring.train`` and ``wiring.study``
  handle theirs: they say what was kept).

Anything else is a bug and keeps its traceback. :func:`die` is the same line for a
check that is not an exception.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Callable, NoReturn, Sequence

from wiring.errors import UserError

__all__ = ["ArgumentParser", "HelpFormatter", "asks_for_help", "die", "error_line", "help_with_default", "os_error_message",
           "run_cli", "UserError"]

#: errors of a full disk or a file-size limit: what was being written is not kept
FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def error_line(prog: str, message: object) -> str:
    """``prog: error: message`` with the message's whitespace (newlines too) folded to
    single spaces.

    >>> error_line("python -m wiring.train", "--lr: must be a finite number,\\n got nan")
    'python -m wiring.train: error: --lr: must be a finite number, got nan'
    """
    return f"{prog}: error: {' '.join(str(message).split())}"


def die(prog: str, message: str) -> NoReturn:
    """Print ``prog: error: message`` on one line of stderr and exit 2."""
    print(error_line(prog, message), file=sys.stderr)
    raise SystemExit(2)


def os_error_message(err: OSError) -> str:
    """One line for an :class:`OSError`: the file and the system's reason, plus what
    a full disk means for the file (it was not written; the old one is kept).

    >>> import errno
    >>> os_error_message(OSError(errno.EROFS, "Read-only file system", "/sys/kernel/run"))
    '/sys/kernel/run: Read-only file system'
    """
    reason = err.strerror or str(err) or type(err).__name__
    name = err.filename if err.filename is not None else None
    text = f"{os.fsdecode(name)}: {reason}" if name is not None else reason
    if name is not None and getattr(err, "writing", False):      # raised by wiring.files' writer
        text = f"cannot write {text}"
    if err.filename2 is not None:
        text = f"{text} ({os.fsdecode(err.filename2)})"
    if err.errno in FULL:
        text += " (the disk is full or a file-size limit was reached: that file was not written, " \
                "any previous version is kept)"
    return text


def run_cli(main: Callable[[Sequence[str] | None], int | None], prog: str,
            argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status, with user errors turned into one line and status 2
    (see the module docstring). A command's ``main`` is ``run_cli(body, PROG, argv)``, so
    calling it from Python behaves as the process does.

    >>> run_cli(lambda argv: None, "prog"), run_cli(lambda argv: 3, "prog")
    (0, 3)
    """
    try:
        code = main(argv)
    except UserError as err:
        if str(err):                          # other ranks of a distributed run stay silent
            print(error_line(prog, err), file=sys.stderr)
        return 2
    except BrokenPipeError:                   # e.g. piped into head: not an error
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except OSError as err:
        print(error_line(prog, os_error_message(err)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


def asks_for_help(argv: Sequence[str]) -> bool:
    """Whether ``argv`` holds ``-h`` or ``--help`` before any ``--``: a command then builds its
    parser alone and lets it answer, without importing PyTorch or the engine (fast ``--help``).

    >>> asks_for_help(["RUN", "--help"]), asks_for_help(["-o", "x.png"]), asks_for_help(["--", "-h"])
    (True, False, False)
    """
    for arg in argv:
        if arg == "--":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def help_with_default(text: str | None, default: object) -> str | None:
    """``text`` with `` (default: VALUE)`` appended, for ``--help``: unless the text already
    names its default, there is no text, or the default says nothing (``None``, a switch's
    ``False``). A list shows as its values, space-separated, as it is typed.

    >>> help_with_default("training epochs", 30)
    'training epochs (default: 30)'
    >>> help_with_default("multistep: epochs where lr is multiplied by gamma", [80, 120])
    'multistep: epochs where lr is multiplied by gamma (default: 80 120)'
    >>> help_with_default("resize images (default: native)", None), help_with_default("a switch", False)
    ('resize images (default: native)', 'a switch')
    """
    if not text or text == argparse.SUPPRESS or "default" in text or default is None or default is False \
            or default == argparse.SUPPRESS or default == []:
        return text
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
    return f"{text} (default: {shown.replace('%', '%%')})"


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with each flag's default shown (:func:`help_with_default`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.option_strings and action.nargs != 0:
            return help_with_default(action.help, action.default)
        return action.help


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2, and each flag's
    default in ``--help`` (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        die(self.prog, message)
