"""A run folder's files: their names (spelled here once), the folder's lock, and reading a run back.

Contract: ``CONFIG_FILE``, ``METRICS_FILE``, ``CHECKPOINT_FILE``, ``BEST_FILE``, ``SPARSE_FILE``,
``LOCK_FILE``, ``TB_EVENTS`` and :func:`wiring_file` / :func:`run_files` are the only spellings of the files
``wiring.train`` writes into a run folder (a model with several learned graphs has one
wiring file set per graph, :func:`wiring_key`); :class:`RunLock` is the exclusive lock
(``flock``) the training process holds for the run's life (the kernel releases it when the
process dies); :func:`run_folder_name` is the one rule for a default run folder's name (every
setting that differs from the defaults) and :func:`find_run_folder` the folder ``--resume`` finds
by it; :func:`load_metrics` and :func:`load_run` read a run folder back
(:class:`RunData`) for the commands and the viz, never the trainer's objects.

>>> run_files()
['config.yaml', 'metrics.jsonl', 'checkpoint.pt', 'best.pt', 'sparse.pt', 'wiring.graphml', 'history.pt', 'initial.graphml', 'tb/events.out.tfevents.*']
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from wiring.files import NotText, read_text
from wiring.graph import Wiring
from wiring.io.convert import PathLike, WiringFileError, existing_file, natural_key
from wiring.io.graphml import read_graphml
from wiring.io.history import WiringHistory

# the name atomic_path gives its temporary file: .<stem>.<pid>.<8 hex>.tmp<suffix>
_TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.(?P<pid>[0-9]+)\.(?P<hex>[0-9a-f]{8})\.tmp(?P<suffix>.*)")


# ----------------------------------------------------------------------------- metrics and runs

def load_metrics(path: PathLike) -> list[dict]:
    """The records of a JSON-lines file, one dict per non-empty line. A last line
    that does not parse (a write cut short) is skipped; any other bad line is a
    :class:`WiringFileError` naming its line number.
    """
    path = existing_file(path, "metrics file")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise WiringFileError(f"metrics file {path} line {number} is not JSON: {err}") from None
        if not isinstance(record, dict):
            raise WiringFileError(f"metrics file {path} line {number} is not a JSON object")
        records.append(record)
    return records


# ----------------------------------------------------------------------------- the run folder's files
# The one place that spells the names of the files ``wiring.train`` writes into a run folder;
# the recorder, train (--overwrite, --resume), study, export, compact and profile use these.

CONFIG_FILE = "config.yaml"          # the resolved settings
METRICS_FILE = "metrics.jsonl"       # one JSON object per epoch
CHECKPOINT_FILE = "checkpoint.pt"    # the latest state (every epoch, and where a run was stopped)
BEST_FILE = "best.pt"                # the state of the best test accuracy
SPARSE_FILE = "sparse.pt"            # real weights of models made sparse (wiring.sparsify)
TB_DIR = "tb"                        # TensorBoard event files (wiring.train --tensorboard)
TB_EVENTS = f"{TB_DIR}/events.out.tfevents.*"   # the files a run writes there (the folder may hold yours)
LOCK_FILE = ".lock"                  # held (fcntl.flock) by the process training in the folder
# a model's only wiring writes wiring.graphml, history.pt and initial.graphml; a model with
# several (MobileNetV1-DNW: one per stage) writes wiring-NAME.graphml, history-NAME.pt and
# initial-NAME.graphml, NAME the wiring module's name with dots as dashes (wiring_key)
WIRING_FILES = (("wiring", ".graphml"), ("history", ".pt"), ("initial", ".graphml"))
#: the files :func:`load_run` reads (any one of them makes a folder a run folder)
RUN_FILES = (CONFIG_FILE, METRICS_FILE, "history.pt", "wiring.graphml", "initial.graphml")


def wiring_key(module_name: str, count: int) -> str:
    """The NAME of a wiring's files: ``""`` for a model's only wiring, else its module name
    with dots as dashes (``stages.0.graph`` -> ``stages-0-graph``)."""
    return "" if count == 1 or not module_name else module_name.replace(".", "-")


def wiring_file(stem: str, ext: str, key: str = "") -> str:
    """``history.pt`` for a model's only wiring (``key`` ""), ``history-NAME.pt`` for wiring NAME."""
    return f"{stem}-{key}{ext}" if key else f"{stem}{ext}"


def run_files(wiring_keys=("",)) -> list[str]:
    """Every file ``wiring.train`` may write into a run folder for a model whose wirings
    have the NAMEs ``wiring_keys`` (:func:`wiring_key`; ``("",)`` a model's only wiring,
    ``()`` a model without one): what ``--overwrite`` removes, and nothing else. Names are
    relative to the folder; the last, :data:`TB_EVENTS`, is a pattern (:func:`run_paths`):
    the TensorBoard event files inside ``tb/``, not the folder (a file of yours there stays).

    >>> run_files()
    ['config.yaml', 'metrics.jsonl', 'checkpoint.pt', 'best.pt', 'sparse.pt', 'wiring.graphml', 'history.pt', 'initial.graphml', 'tb/events.out.tfevents.*']
    """
    names = [CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BEST_FILE, SPARSE_FILE]
    names += [wiring_file(stem, ext, key) for key in wiring_keys for stem, ext in WIRING_FILES]
    return names + [TB_EVENTS]


def run_paths(folder: PathLike, wiring_keys=("",)) -> list[Path]:
    """The files of :func:`run_files` that ``folder`` holds (the event files matched), plus the
    temporary files of writes a kill cut short (:func:`temp_files`): what ``--overwrite``
    removes. A directory (or a link to one) under a file's name is never among them."""
    folder = Path(folder)
    names = run_files(wiring_keys)
    found = [p for name in names for p in (sorted(folder.glob(name)) if "*" in name else [folder / name])]
    return [p for p in found + temp_files(folder, names) if p.is_symlink() or p.is_file()]


def temp_files(folder: PathLike, names) -> list[Path]:
    """The temporary files :func:`wiring.files.atomic_path` left in ``folder`` (a write cut short by a
    kill) for the files ``names``; other hidden files are not touched."""
    folder = Path(folder)
    wanted = {(Path(n).stem, Path(n).suffix) for n in names}
    out = []
    for p in folder.glob(".*.tmp*") if folder.is_dir() else []:
        match = _TEMP_NAME.fullmatch(p.name)
        if match and (match["stem"], match["suffix"]) in wanted and p.is_file():
            out.append(p)
    return out


# ----------------------------------------------------------------------------- default run-folder names
# The one rule for the folder ``wiring.train`` makes without ``--out``: the fixed part names the
# run's kind, then every other setting that differs from its default, readable while short.

RUNS_ROOT = "runs"                   # where default run folders go (relative to the working directory)
#: the settings of the fixed part, in order: <data>-<model>[-<setting>]-<graph>-<mode>-<edges>-s<seed>
NAME_FIXED = ("data", "model", "setting", "graph", "mode", "edges", "seed")
#: short spellings of settings in the readable part (others: the name without underscores)
NAME_SHORT = {"epochs": "e", "train_subset": "sub", "test_subset": "test", "batch_size": "b",
              "ode_steps": "ode", "snapshot_every": "snap", "weight_decay": "wd", "momentum": "mom",
              "candidate_grad_every": "cge", "update_every": "upd", "drop_fraction": "drop",
              "drop_schedule": "dsched", "drop_until": "dropuntil", "image_size": "img", "width": "w",
              "milestones": "ms", "self_loops": "selfloops", "td_rho": "tdrho"}
#: settings whose value is the token itself (``--solver rk4`` gives ``-rk4``)
NAME_BARE = ("solver", "schedule", "init")
NAME_MAX = 40                        # longest readable part; past it a hash stands for the settings
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9.+_]+")


def _token(key: str, value) -> str | None:
    """The readable token of one non-default setting, or None where the value does not read
    as a file name (a path, free text): a hash then stands for it."""
    if isinstance(value, bool):
        return ("" if value else "no") + NAME_SHORT.get(key, key.replace("_", ""))
    if value is None:
        text = "none"
    elif isinstance(value, (list, tuple)):
        text = "_".join(str(v) for v in value)
    else:
        text = f"{value:g}" if isinstance(value, float) else str(value)
    token = text if key in NAME_BARE else NAME_SHORT.get(key, key.replace("_", "")) + text
    return token if _SAFE_TOKEN.fullmatch(token) else None


def settings_hash(settings: Mapping) -> str:
    """A short, stable hash of plain settings (8 hex digits of SHA-1 of their sorted JSON).

    >>> settings_hash({"lr": 0.05, "solver": "rk4"}) == settings_hash({"solver": "rk4", "lr": 0.05})
    True
    """
    text = json.dumps(dict(settings), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def run_folder_name(settings: Mapping, defaults: Mapping, skip: Iterable[str] = (), last: str = "epochs") -> str:
    """The name of the default run folder of ``settings`` (plain values by setting name;
    ``defaults`` the same keys' defaults): the fixed part
    ``<data>-<model>[-<setting>]-<graph>-<mode>-<edges>-s<seed>`` (``<model>-<setting>`` for a
    setting other than ``static``, ``all`` for ``edges`` None: every candidate real), then one
    token per other setting that differs from its default, in the settings' order (``-rk4``,
    ``-sub5000``, ``-b512``, ``-lr0.05``), and last ``last``'s (``-e1``). Settings in ``skip``
    (those that may change on ``--resume``) never count. When the tokens would pass
    :data:`NAME_MAX` characters, or one is not a plain word (a path), they are replaced by
    ``h`` and a hash of those settings (:func:`settings_hash`). ``last`` stays readable after
    the hash, so :func:`find_run_folder` finds a run whose ``last`` changed on ``--resume``.

    >>> d = {"data": "digits", "model": "tiny", "setting": "static", "graph": "random_k", "mode": "dnw",
    ...      "edges": 12000, "seed": 0, "solver": "dopri5", "epochs": 30, "train_subset": None, "out": None}
    >>> run_folder_name(d, d)
    'digits-tiny-random_k-dnw-12000-s0'
    >>> run_folder_name({**d, "setting": "continuous", "solver": "rk4", "epochs": 1, "out": "x"}, d, skip=["out"])
    'digits-tiny-continuous-random_k-dnw-12000-s0-rk4-e1'
    >>> run_folder_name({**d, "train_subset": 5000, "solver": "/a/b"}, d)
    'digits-tiny-random_k-dnw-12000-s0-hfaae7bdc'
    """
    model = settings["model"] if settings.get("setting", "static") == "static" else \
        f"{settings['model']}-{settings['setting']}"
    edges = "all" if settings.get("edges") is None else settings["edges"]
    name = f"{settings['data']}-{model}-{settings['graph']}-{settings['mode']}-{edges}-s{settings['seed']}"
    ignored = set(skip) | set(NAME_FIXED) | {last}
    differing = {k: v for k, v in settings.items() if k not in ignored and k in defaults and v != defaults[k]}
    tokens = [_token(k, v) for k, v in differing.items()]
    readable = "-".join(t for t in tokens if t is not None)
    if None in tokens or len(readable) > NAME_MAX:
        readable = "h" + settings_hash(differing)
    tail = [readable] if readable else []
    if last in settings and last in defaults and settings[last] != defaults[last] and last not in skip:
        tail.append(_token(last, settings[last]) or "h" + settings_hash({last: settings[last]}))
    return "-".join([name, *tail])


def find_run_folder(root: PathLike, settings: Mapping, defaults: Mapping, skip: Iterable[str] = (),
                    last: str = "epochs") -> Path:
    """The run folder ``--resume`` continues when no ``--out`` names one: ``root /``
    :func:`run_folder_name` if it holds a run, else the one run folder whose name differs from
    it only in ``last``'s token (a run started with another ``--epochs``, resumed with a new
    horizon); the first when there is none (the caller says that nothing is there to continue).
    Several such runs are a :class:`WiringFileError` naming them."""
    root = Path(root)
    exact = root / run_folder_name(settings, defaults, skip, last)
    if _holds_run(exact):
        return exact
    stem = run_folder_name({**settings, last: defaults.get(last)}, defaults, skip, last)
    pattern = re.compile(re.escape(stem) + rf"(-{re.escape(NAME_SHORT.get(last, last))}[0-9]+)?")
    found = sorted(p for p in root.iterdir() if pattern.fullmatch(p.name) and _holds_run(p)) if root.is_dir() else []
    if len(found) > 1:
        raise WiringFileError(f"--resume: several runs match these settings ({', '.join(map(str, found))}): "
                              f"pass --out RUN_DIR to say which")
    return found[0] if found else exact


def _holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in (CONFIG_FILE, CHECKPOINT_FILE))


class RunFolderBusy(WiringFileError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive lock on a run folder for the life of one training: ``fcntl.flock`` on
    ``LOCK_FILE`` in the folder, which holds the owner's pid. The kernel drops it when the
    process ends however it ends (``kill -9`` included), so a killed run never blocks its
    own ``--resume``; the owner removes the file when it lets go. :meth:`acquire` is a
    no-op while held and raises :class:`RunFolderBusy` naming the holder's pid.
    Where ``fcntl`` does not exist (Windows) the lock does nothing."""

    def __init__(self, run_dir: PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:          # pragma: no cover - not POSIX
            return self
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._holder(fd)
                os.close(fd)
                raise RunFolderBusy(f"run directory {self.run_dir} is in use by process {holder} "
                                    f"(it holds {self.path}): wait for it to end, or use another --out") from None
            try:                     # the file we locked may have been removed by its last owner
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        import time
        for _ in range(20):          # the holder writes its pid just after taking the lock
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if text.isdigit():
                return text
            time.sleep(0.05)
        return "(unknown pid)"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.unlink(self.path)  # while still holding it: a waiting process retries on the new file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_wirings(run_dir: PathLike) -> list[str]:
    """The wirings a run folder holds: ``""`` for a model's only wiring (``wiring.graphml``,
    ``history.pt``, ``initial.graphml``), else each NAME of ``wiring-NAME.graphml``,
    ``history-NAME.pt`` or ``initial-NAME.graphml``, in natural order (stage 2 before 10).
    """
    run_dir = Path(run_dir)
    names = set()
    for stem, ext in WIRING_FILES:
        if (run_dir / f"{stem}{ext}").is_file():
            names.add("")
        names.update(p.name[len(stem) + 1:-len(ext)] for p in run_dir.glob(f"{stem}-*{ext}") if p.is_file())
    return sorted(names, key=natural_key)


@dataclass
class RunData:
    """What a run folder holds; a file that is absent gives ``{}``, ``[]`` or None."""

    path: Path
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    history: WiringHistory | None = None
    final: Wiring | None = None
    initial: Wiring | None = None
    #: every wiring the folder holds (:func:`run_wirings`) and the one read (None: none chosen)
    wirings: list[str] = field(default_factory=list)
    wiring_name: str | None = None

    def wiring_file(self, stem: str, ext: str) -> str:
        """The chosen wiring's file name: ``history.pt`` for a model's only wiring,
        ``history-NAME.pt`` for wiring NAME (``stem`` "history", ``ext`` ".pt")."""
        return wiring_file(stem, ext, self.wiring_name or "")


#: the help of the ``--wiring NAME`` option of the tools that read a run's wiring
WIRING_OPTION_HELP = ("for a run of a model with several learned graphs (MobileNetV1-DNW: one per stage), "
                      "the one to use: stages-0-graph, stages-1-graph, ... (the NAME of wiring-NAME.graphml)")


def unchosen_wiring(run: RunData) -> str | None:
    """A one-line message when ``run`` holds several wirings and none was chosen, else None."""
    if run.wiring_name is None and len(run.wirings) > 1:
        return (f"run directory {run.path} holds {len(run.wirings)} wirings ({', '.join(run.wirings)}): "
                f"choose one with --wiring NAME")
    return None


def load_run(run_dir: PathLike, wiring: str | None = None) -> RunData:
    """Read a run folder: ``config.yaml`` (``yaml.safe_load``), ``metrics.jsonl``,
    ``history.pt``, ``wiring.graphml`` (final) and ``initial.graphml``.

    For a model with several wirings, ``wiring`` names the one whose files to read
    (``history-NAME.pt``...; :func:`run_wirings` lists them). Without it the only
    wiring is read, and with several none is (``history``, ``final`` and ``initial``
    stay None, ``wirings`` says what there is).

    A missing folder, one with none of those files, or an unknown ``wiring`` is a
    :class:`WiringFileError`.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise WiringFileError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise WiringFileError(f"run directory {run_dir} is not a directory")
    names = run_wirings(run_dir)
    present = [name for name in RUN_FILES if (run_dir / name).is_file()]
    if not present and not names:
        raise WiringFileError(f"{run_dir} is not a run directory: expected at least one of "
                              f"{', '.join(RUN_FILES)}")
    if wiring is not None and wiring not in names:
        held = ", ".join(n or "(the only one)" for n in names) or "none"
        raise WiringFileError(f"run directory {run_dir} has no wiring {wiring!r}; it holds: {held}")
    chosen = wiring if wiring is not None else ("" if "" in names else names[0] if len(names) == 1 else None)
    run = RunData(run_dir, wirings=names, wiring_name=chosen)
    if CONFIG_FILE in present:
        import yaml
        try:
            config = yaml.safe_load(read_text(run_dir / CONFIG_FILE))
        except NotText as err:
            raise WiringFileError(f"config file {err}") from None
        except yaml.YAMLError as err:
            raise WiringFileError(f"config file {run_dir / CONFIG_FILE} is not valid YAML: "
                                  f"{' '.join(str(err).split())}") from None
        if config is not None and not isinstance(config, dict):
            raise WiringFileError(f"config file {run_dir / CONFIG_FILE} is not a mapping")
        run.config = config or {}
    if METRICS_FILE in present:
        run.metrics = load_metrics(run_dir / METRICS_FILE)
    if chosen is not None:
        final, history, initial = (run_dir / run.wiring_file(stem, ext) for stem, ext in WIRING_FILES)
        if history.is_file():
            run.history = WiringHistory.load(history)
        if final.is_file():
            run.final = read_graphml(final)
        if initial.is_file():
            run.initial = read_graphml(initial)
    return run
