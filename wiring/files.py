"""Files: the one crash-safe writer of the project, and the reads every command shares.

Contract:

* :func:`atomic_path` yields a temporary path next to the target (same folder,
  same extension, so writers that infer the format from the name still work);
  when the block succeeds it fsyncs the file, renames it over the target with
  ``os.replace`` and fsyncs the folder. A kill at any moment leaves the old file
  or the new one, never half of one; on any error the temporary file is removed
  and the target is untouched.
* :func:`atomic_write` calls ``write(file)`` on that temporary file, opened for
  (binary or UTF-8 text) writing.
* :func:`append_line` adds one line to a log (``metrics.jsonl``) all or nothing: a
  failed write is cut back off, so a full disk leaves no half line.
* :func:`torn_tail` finds a last line that an older writer or a kill left cut short (one
  the caller's ``whole`` test refuses, with or without its newline), and
  ``append_line(..., drop_torn=whole)`` cuts it off before appending, so a record cut
  short once never turns into a bad line in the middle of the log.
* The new file is created like any other (``open``), so its mode is ``0o666``
  minus the user's umask: no ``0600`` of ``mkstemp``.
* A failed write (a full disk, a file-size limit, a read-only or pseudo file
  system) is an :class:`OSError` naming the target, never the temporary file,
  even when the writer turns it into its own error (``torch.save`` reports a
  failed ``write`` as a ``RuntimeError`` from ``inline_container.cc``):
  :func:`wiring.cli.run_cli` prints it as one line.

:func:`load_refusal` says in one line why ``torch.load(weights_only=True)`` refused a
file, and never passes on torch's advice to retry with ``weights_only=False`` (that
runs whatever code the file holds).

:func:`read_text` is the reading side for the files a user edits (settings YAML): their
UTF-8 text, or a :class:`NotText` error naming the first byte that is not UTF-8.

Temporary files are named ``.<stem>.<pid>.<hex>.tmp<suffix>``, so a reader of a
folder can skip them (``.*.tmp*``) and a resumed run can remove what a kill left.

This module imports only :mod:`wiring.errors`; any floor may use it.
"""
from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from wiring.errors import UserError

__all__ = ["atomic_path", "atomic_write", "append_line", "torn_tail", "read_text", "NotText", "load_refusal", "TEMP_GLOB"]

PathLike = str | os.PathLike

#: the names of :func:`atomic_path`'s temporary files
TEMP_GLOB = ".*.tmp*"


def _fsync(path: PathLike, *, folder: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:      # some file systems cannot open a folder for syncing: best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def _naming(err: OSError, tmp: Path, path: Path) -> OSError:
    """``err`` with the target's name instead of the temporary file's (or none)."""
    if err.errno is None or err.filename not in (None, str(tmp), tmp):
        return err
    named = OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))
    named.writing = True          # wiring.cli says "cannot write PATH: reason"
    return named


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, fsync it and
    rename it over ``path``; on any error remove it (see the module docstring).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('done', ['a.txt'])
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            named = _naming(err, tmp, path)
            if named is not err:
                raise named from None
        raise
    _fsync(path.parent, folder=True)


class _Guarded:
    """A file whose failed writes are remembered, so that a writer that wraps the
    :class:`OSError` in an error of its own cannot hide it."""

    def __init__(self, file) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self):
        try:
            return self._file.flush()
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def atomic_write(path: PathLike, write: Callable[[Any], None], *, binary: bool) -> None:
    """Call ``write(file)`` on a new file that replaces ``path`` atomically (:func:`atomic_path`).

    >>> import json, tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.json"
    >>> atomic_write(target, lambda f: json.dump({"k": 12}, f), binary=False)
    >>> target.read_text()
    '{"k": 12}'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"encoding": "utf-8"})) as f:
            guarded = _Guarded(f)
            try:
                write(guarded)
                f.flush()
            except Exception as err:
                if not isinstance(err, OSError) and guarded.error is not None:
                    raise guarded.error from None    # e.g. torch.save's RuntimeError for a full disk
                raise


def torn_tail(path: PathLike, whole: Callable[[bytes], bool]) -> tuple[int, int] | None:
    """``(line number, byte offset)`` of the last non-empty line of ``path`` when ``whole``
    refuses it (a record cut short, with or without its newline), else None (also for a
    missing or empty file). Only the end of the file is read.

    >>> import json, tempfile
    >>> log = Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = log.write_bytes(b'{"a": 1}\\n{"a": 2')
    >>> def parses(line):
    ...     try:
    ...         return isinstance(json.loads(line), dict)
    ...     except ValueError:
    ...         return False
    >>> torn_tail(log, parses)
    (2, 9)
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    body = data.rstrip(b"\r\n\t ")
    if not body:
        return None
    start = body.rfind(b"\n") + 1
    if whole(body[start:].strip()):
        return None
    return body.count(b"\n") + 1, start


def append_line(path: PathLike, line: str, *, drop_torn: Callable[[bytes], bool] | None = None) -> bool:
    """Append ``line`` and a newline to ``path`` (created if missing) and fsync it; when the
    write fails (a full disk) the file is cut back to its old length and the error raised.
    With ``drop_torn`` (a test of a whole line, :func:`torn_tail`) a torn last line is cut
    off first; returns whether one was.

    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> _ = append_line(log, '{"epoch": 1}'), append_line(log, '{"epoch": 2}')
    >>> log.read_text().splitlines()
    ['{"epoch": 1}', '{"epoch": 2}']
    """
    data = (line + "\n").encode("utf-8")
    torn = torn_tail(path, drop_torn) if drop_torn is not None else None
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            if torn is not None:
                os.ftruncate(fd, torn[1])
                size = torn[1]
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data      # a last line without its newline stays a line of its own
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as err:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            if err.filename is None:
                raise OSError(err.errno, err.strerror, os.fspath(path)) from None
            raise
    finally:
        os.close(fd)
    return torn is not None


class NotText(UserError, ValueError):
    """A file that should hold UTF-8 text does not (a binary file, another encoding)."""


def read_text(path: PathLike) -> str:
    """The UTF-8 text of ``path`` (OSError when it cannot be read); :class:`NotText`
    naming the first offending byte when it is not UTF-8.

    >>> import tempfile
    >>> bad = Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = bad.write_bytes("lr: 0.1  # caf\xe9".encode("latin-1"))
    >>> read_text(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wiring.files.NotText: .../c.yaml is not UTF-8 text (byte 0xe9 at offset 14)
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NotText(f"{path} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start})") from None


def load_refusal(err: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in one line, without torch's
    hint to load the file with ``weights_only=False``: a file that holds anything but
    tensors and plain types is refused, never unpickled another way.

    >>> load_refusal(RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory"))
    'PytorchStreamReader failed reading zip archive: failed finding central directory'
    >>> load_refusal(Exception("Weights only load failed. Re-running `torch.load` with `weights_only` set to "
    ...                        "`False` will likely succeed\\n\\nTrying to load unsupported GLOBAL posix.system whose ..."))
    'it holds a Python object (posix.system), not only tensors and plain types: refused, as loading it could run code'
    """
    text = str(err)
    if "weights only load failed" in text.lower() or "weights_only" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"[Uu]nsupported class ([\w.]+)", text)
        what = f"a Python object ({found.group(1)})" if found else "data that is not a weights-only pickle"
        return f"it holds {what}, not only tensors and plain types: refused, as loading it could run code"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first or type(err).__name__
