"""``python -m wiring.study``: reproduce the paper's claims at small scale and publish the evidence.

A *study* is a grid of training runs described by one YAML file::

    name: quick                       # names the default output folder runs/study-<name>
    base:                             # training settings for every cell (wiring.train's flags)
      data: digits
      model: micro
      epochs: 3
      batch-size: 128
    grid:                             # cells = setting x mode x edges x seed
      setting: [static, discrete]
      mode: [dnw, fixed]
      edges: [500, 2000]
      seed: [0, 1]
    curve_edges: 2000                 # optional: the budget of the per-epoch curves
    paper:                            # optional: published numbers printed beside ours
      - label: Table 1
        title: DNW Table 1, CIFAR-10 tiny classifier
        values: {static: {fixed: 76.1 +- 0.5, dnw: 80.9 +- 0.6}}   # setting (or "*") -> mode -> value

Every cell is one call of :func:`wiring.train.run` (in this process with ``--jobs 1``,
in worker processes otherwise) writing ``OUT/<setting>-<mode>-<edges>-s<seed>/``
(``complete`` ignores edges: one cell ``<setting>-complete-all-s<seed>`` per setting
and seed). ``fine_tune`` and ``lottery`` cells start (``--from``) from the trained
``complete`` cell of the same setting and seed (the paper fine-tunes, or rewinds, a
trained complete graph's top-k); without ``complete`` in the grid they start from the
``dnw`` cell of the same setting, edges and seed, and the report says so. Sources run
first.

Optional keys: ``order`` (the grid keys from the outermost loop to the innermost, default
``[mode, edges, seed]``; e.g. ``[edges, seed, mode]`` finishes every seed of a budget's
modes together, for paired comparisons) and ``mode_edges`` (``{mode: [edges, ...]}``: a mode
runs at only those of ``grid.edges``).

The study is resumable from two sources. Its **results file** (``--results``, default the
report's name with ``.jsonl``: ``docs/results.jsonl``) holds one JSON line per finished cell
with its metrics per epoch, the final wiring's statistics and the cell's training settings;
it is small enough to commit, and a cell recorded there with the same settings is never
trained again, even when its run folder is gone. Otherwise a cell whose ``wiring.graphml``
exists is done (and recorded), a cell with a checkpoint but no final wiring is continued
with ``--resume``, anything else starts afresh. A failed cell is reported
(``OUT/logs/<cell>.error``, its training output in ``OUT/logs/<cell>.log``) and the study
goes on; cells that need it are skipped (a fine_tune / lottery cell also needs its
source's run folder, which the results file does not replace).

At the end (and with ``--report-only``, from the results file and the run folders) it writes
``OUT/results.csv`` (one row per cell) and a Markdown report (``docs/results.md`` by
default) with the budget, a mean +- std table per (setting, mode, edges) beside the
paper's numbers, one line per setting on whether DNW beats the random graph at each
budget, and two plots next to it (``<report>_edges.png``, ``<report>_curves.png``).

    python -m wiring.study configs/study_quick.yaml --dry-run      # the cells, in order
    python -m wiring.study configs/study_quick.yaml --out runs/q    # run (resumable) and report
    python -m wiring.study configs/study_quick.yaml --out runs/q --report-only

Library API: :func:`load_study` (a :class:`Study`; bad files raise :class:`StudyError`),
:meth:`Study.cells` (the ordered :class:`Cell` list), :func:`cell_config`,
:func:`run_study`, :func:`collect`, :func:`write_csv`, :func:`write_report`, :func:`main`.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import shlex
import statistics
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from models import SETTINGS
from wiring.train.allocator import tune_malloc
from wiring.cli import ArgumentParser, run_cli
from wiring.train.config import SEED_MAX, Config, ConfigError, config_from_dict, saved_values
from wiring.train.data import check_dataset
from wiring.errors import UserError
from wiring.files import NotText, read_text
from wiring.io import CHECKPOINT_FILE, LOCK_FILE, METRICS_FILE, WiringFileError, load_metrics
from wiring.modes import MODES, every_candidate_real
from wiring.train.pipeline import run, solver_text

__all__ = ["StudyError", "Cell", "PaperTable", "Study", "load_study", "cell_config", "cell_state",
           "run_study", "collect", "write_csv", "write_report", "main", "CSV_FIELDS", "DEFAULT_REPORT"]

GRID_KEYS = ("setting", "mode", "edges", "seed")
STUDY_KEYS = ("name", "description", "base", "grid", "paper", "curve_edges", "order", "mode_edges")
DEFAULT_ORDER = ("mode", "edges", "seed")
DEPENDENT = tuple(name for name, cls in MODES.items() if cls.needs_source)   # fine_tune, lottery
ALL_REAL = every_candidate_real                                                 # complete: budget "all"
# Config fields a study sets per cell: not allowed in ``base``.
CELL_OWNED = ("setting", "mode", "edges", "seed", "out", "from_run", "resume", "overwrite", "config")
CSV_FIELDS = ("setting", "mode", "edges", "seed", "test_acc", "best_acc", "epochs", "seconds",
              "swapped_total", "status")
DEFAULT_REPORT = Path("docs/results.md")
MODE_LABELS = {name: cls.label for name, cls in MODES.items()}                 # plots


class StudyError(UserError, ValueError):
    """The study config is invalid; the message names the file and the key."""


# ----------------------------------------------------------------------------- the study

@dataclass(frozen=True)
class Cell:
    """One training run of the grid. ``edges`` is None for ``complete`` (all candidates);
    ``source`` is the name of the cell a fine_tune / lottery cell starts from."""

    setting: str
    mode: str
    edges: int | None
    seed: int
    source: str | None = None

    @property
    def name(self) -> str:
        return f"{self.setting}-{self.mode}-{'all' if self.edges is None else self.edges}-s{self.seed}"

    @property
    def edges_label(self) -> str:
        return "all" if self.edges is None else str(self.edges)


@dataclass
class PaperTable:
    """Published numbers: ``values[setting][mode]`` (setting ``"*"``: every setting), as printed."""

    label: str
    title: str
    values: dict[str, dict[str, str]]

    def value(self, setting: str, mode: str) -> str | None:
        for key in (setting, "*"):
            if mode in self.values.get(key, {}):
                return self.values[key][mode]
        return None


@dataclass
class Study:
    name: str
    base: dict[str, Any]
    grid: dict[str, list]
    path: Path | None = None
    description: str = ""
    paper: list[PaperTable] = field(default_factory=list)
    curve_edges: int | None = None
    order: tuple[str, ...] = DEFAULT_ORDER
    mode_edges: dict[str, list[int]] = field(default_factory=dict)

    @property
    def budgets(self) -> list:
        """``grid.edges`` in increasing order (tables and plots; the run order is the grid's)."""
        return sorted(self.grid["edges"], key=lambda e: -1 if e is None else e)

    def edges_of(self, mode: str) -> list:
        """The budgets ``mode`` runs at: [None] for complete, else ``mode_edges`` or every one."""
        if ALL_REAL(mode):
            return [None]
        return [e for e in self.grid["edges"] if e in self.mode_edges.get(mode, self.grid["edges"])]

    def source_mode(self) -> str | None:
        """The mode fine_tune / lottery cells start from: complete, else dnw (None: no such cells)."""
        if not any(m in DEPENDENT for m in self.grid["mode"]):
            return None
        return "complete" if "complete" in self.grid["mode"] else "dnw"

    def cells(self) -> list[Cell]:
        """Every cell, ordered so that each source runs before the cells that start from it:
        per setting, the independent modes first (loops in ``order``, each in grid order),
        then fine_tune / lottery."""
        import itertools

        source = self.source_mode()
        out: list[Cell] = []
        for setting in self.grid["setting"]:
            for dependent in (False, True):
                modes = [m for m in self.grid["mode"] if (m in DEPENDENT) == dependent]
                axes = {"mode": modes, "edges": self.grid["edges"] + ([None] if any(map(ALL_REAL, modes))
                                                                      and None not in self.grid["edges"] else []),
                        "seed": self.grid["seed"]}
                for combo in itertools.product(*(axes[key] for key in self.order)):
                    mode, edges, seed = (combo[self.order.index(key)] for key in ("mode", "edges", "seed"))
                    if edges not in self.edges_of(mode):
                        continue
                    src = None
                    if dependent:
                        src = Cell(setting, source, None if ALL_REAL(source) else edges, seed).name
                    out.append(Cell(setting, mode, edges, seed, src))
        return out

    def base_config(self) -> Config:
        return config_from_dict(self.base)


def _fail(path: Path | str, message: str) -> StudyError:
    return StudyError(f"study config {path}: {message}")


def _as_list(where: str, value: Any, path) -> list:
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif value is None:
        items = []
    else:
        items = [value]
    if not items:
        raise _fail(path, f"{where} is empty: list at least one value")
    seen = set()
    for item in items:
        if item in seen:
            raise _fail(path, f"{where} lists {item!r} twice")
        seen.add(item)
    return items


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _normalise_base(raw: Any, path) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(path, "'base' must be a mapping of training settings (data, epochs, batch-size, ...)")
    known = {f.name for f in fields(Config)}
    base: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = "from_run" if name == "from" else name
        if name not in known:
            raise _fail(path, f"base: unknown training setting {key!r}")
        if name in CELL_OWNED:
            raise _fail(path, f"base: {key!r} is set for each cell by the study (grid or --out); remove it")
        base[name] = value
    return base


def _parse_paper(raw: Any, path) -> list[PaperTable]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise _fail(path, "'paper' must be a list of tables (label, title, values)")
    tables = []
    for i, entry in enumerate(raw):
        where = f"paper[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
            raise _fail(path, f"{where} needs 'values': a mapping setting -> mode -> number")
        unknown = set(entry) - {"label", "title", "values"}
        if unknown:
            raise _fail(path, f"{where}: unknown key {sorted(unknown)[0]!r} (expected label, title, values)")
        values: dict[str, dict[str, str]] = {}
        for setting, row in entry["values"].items():
            if setting not in SETTINGS and setting != "*":
                raise _fail(path, f"{where}: unknown setting {setting!r}; choose from {', '.join(SETTINGS)} or '*'")
            if not isinstance(row, dict):
                raise _fail(path, f"{where}.values.{setting} must map modes to numbers")
            for mode, value in row.items():
                if mode not in MODES:
                    raise _fail(path, f"{where}.values.{setting}: unknown mode {mode!r}; choose from {', '.join(MODES)}")
                if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                    raise _fail(path, f"{where}.values.{setting}.{mode} must be a number or text")
            values[str(setting)] = {str(m): str(v) for m, v in row.items()}
        label = str(entry.get("label") or f"paper {i + 1}")
        tables.append(PaperTable(label=label, title=str(entry.get("title") or label), values=values))
    return tables


def study_from_dict(data: Any, path: Path | str = "<dict>") -> Study:
    """A validated :class:`Study` from the parsed YAML mapping ``data``."""
    if not isinstance(data, dict):
        raise _fail(path, "must hold a mapping with 'name', 'base' and 'grid'")
    unknown = [k for k in data if k not in STUDY_KEYS]
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}; expected {', '.join(STUDY_KEYS)}")
    if "grid" not in data:
        raise _fail(path, "missing 'grid' (lists of setting, mode, edges, seed)")
    raw_grid = data["grid"]
    if not isinstance(raw_grid, dict) or not raw_grid:
        raise _fail(path, "'grid' is empty: it needs lists of setting, mode, edges, seed")
    bad = [k for k in raw_grid if k not in GRID_KEYS]
    if bad:
        raise _fail(path, f"grid: unknown key {bad[0]!r}; expected {', '.join(GRID_KEYS)}")
    if "mode" not in raw_grid:
        raise _fail(path, "grid: missing 'mode' (e.g. [dnw, fixed])")
    grid: dict[str, list] = {}
    grid["setting"] = _as_list("grid.setting", raw_grid.get("setting", ["static"]), path)
    grid["mode"] = _as_list("grid.mode", raw_grid["mode"], path)
    grid["seed"] = _as_list("grid.seed", raw_grid.get("seed", [0]), path)
    for s in grid["setting"]:
        if s not in SETTINGS:
            raise _fail(path, f"grid.setting: unknown setting {s!r}; choose from {', '.join(SETTINGS)}")
    for m in grid["mode"]:
        if m not in MODES:
            raise _fail(path, f"grid.mode: unknown mode {m!r}; choose from {', '.join(MODES)}")
    for s in grid["seed"]:
        if not _plain_int(s) or not 0 <= s <= SEED_MAX:
            raise _fail(path, f"grid.seed: expected integers from 0 to {SEED_MAX}, got {s!r}")
    if all(map(ALL_REAL, grid["mode"])) and "edges" not in raw_grid:
        grid["edges"] = [None]
    else:
        if "edges" not in raw_grid:
            raise _fail(path, "grid: missing 'edges' (the budgets k, e.g. [500, 2000])")
        grid["edges"] = _as_list("grid.edges", raw_grid["edges"], path)
        for e in grid["edges"]:
            if not _plain_int(e) or e <= 0:
                raise _fail(path, f"grid.edges: expected positive integers (real edges), got {e!r}")
    if any(m in DEPENDENT for m in grid["mode"]) and not {"complete", "dnw"} & set(grid["mode"]):
        raise _fail(path, "grid.mode: fine_tune and lottery start from a trained complete (or dnw) cell: "
                          "add complete to the modes")
    name = data.get("name", Path(str(path)).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise _fail(path, f"'name' must be a word (letters, digits, _ . -), got {name!r}")
    base = _normalise_base(data.get("base"), path)
    try:
        config_from_dict(base)
    except ConfigError as err:
        raise _fail(path, f"base: {err}") from None
    for setting in grid["setting"]:
        for mode in grid["mode"]:
            probe = config_from_dict({**base, "setting": setting, "mode": "dnw" if mode in DEPENDENT else mode,
                                      "edges": grid["edges"][0]})
            try:
                probe.validate()
            except ConfigError as err:
                raise _fail(path, f"base: {err}") from None
    curve = data.get("curve_edges")
    if curve is not None and curve not in grid["edges"]:
        raise _fail(path, f"curve_edges {curve!r} is not one of grid.edges")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise _fail(path, "'description' must be text")
    order = data.get("order", list(DEFAULT_ORDER))
    if not isinstance(order, list) or sorted(order) != sorted(DEFAULT_ORDER):
        raise _fail(path, f"'order' must list mode, edges and seed once each (outermost first), got {order!r}")
    raw_mode_edges = data.get("mode_edges") or {}
    if not isinstance(raw_mode_edges, dict):
        raise _fail(path, "'mode_edges' must map modes to lists of edges")
    mode_edges: dict[str, list[int]] = {}
    for mode, budgets in raw_mode_edges.items():
        if mode not in grid["mode"] or ALL_REAL(mode):
            raise _fail(path, f"mode_edges: {mode!r} is not a sparse mode of grid.mode")
        budgets = _as_list(f"mode_edges.{mode}", budgets, path)
        missing = [e for e in budgets if e not in grid["edges"]]
        if missing:
            raise _fail(path, f"mode_edges.{mode}: {missing[0]!r} is not one of grid.edges")
        mode_edges[str(mode)] = budgets
    return Study(name=name, base=base, grid=grid, path=Path(str(path)), description=description.strip(),
                 paper=_parse_paper(data.get("paper"), path), curve_edges=curve, order=tuple(order),
                 mode_edges=mode_edges)


def load_study(path: str | os.PathLike) -> Study:
    """Read and validate a study YAML file; every problem is one :class:`StudyError` line."""
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"study config {path}: no such file")
    try:
        data = yaml.safe_load(read_text(p))
    except NotText as err:
        raise StudyError(f"study config {err}: a study is UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise _fail(path, f"not valid YAML ({str(err).splitlines()[0]})") from None
    return study_from_dict(data, path)


# ----------------------------------------------------------------------------- running

def cell_state(run_dir: Path) -> str:
    """``done`` (the final wiring exists), ``resume`` (a checkpoint, unfinished),
    ``restart`` (a folder without a checkpoint) or ``new``."""
    if any(run_dir.glob("wiring*.graphml")):
        return "done"
    if (run_dir / CHECKPOINT_FILE).is_file():
        return "resume"
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        return "restart"
    return "new"


def cell_config(study: Study, cell: Cell, out: Path, state: str = "new") -> Config:
    """The training :class:`Config` of ``cell`` in study folder ``out`` (not validated:
    a fine_tune source need not exist yet)."""
    run_dir = Path(out) / cell.name
    values = {**study.base, "setting": cell.setting, "mode": cell.mode, "edges": cell.edges,
              "seed": cell.seed, "out": str(run_dir), "progress": "none",
              "from_run": str(Path(out) / cell.source) if cell.source else None,
              "resume": state == "resume", "overwrite": state == "restart"}
    return config_from_dict(values)


# Config fields that do not change what a cell computes: not part of its recorded settings.
NOT_SETTINGS = ("out", "progress", "resume", "overwrite", "config", "from_run", "device", "backend",
                "eval_batch_size", "debug", "check_wiring_every", "snapshot_every")


def results_path(report: Path) -> Path:
    """The results file beside ``report``: same name, ``.jsonl``."""
    return Path(report).with_suffix(".jsonl")


def cell_settings(study: Study, cell: Cell) -> dict[str, Any]:
    """What a cell computes: its training config without paths and run plumbing, plus its
    source cell. A recorded result counts only while these settings are unchanged."""
    values = cell_config(study, cell, Path("."), "new").to_dict()
    settings = {k: v for k, v in values.items() if k not in NOT_SETTINGS}
    settings["source"] = cell.source
    return settings


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The records of a results file by cell name (a later line for a cell wins; a last line
    cut short by an interrupted write is ignored, any other bad line is a StudyError)."""
    path = Path(path)
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    records: dict[str, dict[str, Any]] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                continue
            raise StudyError(f"results file {path}, line {i}: not JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get("cell"), str):
            raise StudyError(f"results file {path}, line {i}: not a cell record")
        records[record["cell"]] = record
    return records


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one cell's record as a line (flushed and synced: a later interruption keeps it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        if f.tell() and not path.read_bytes().endswith(b"\n"):
            f.write("\n")                  # a line cut short before stays its own (ignored) line
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def same_settings(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether a record's ``saved`` settings are a cell's settings ``now``. A setting added to
    the trainer after the record was written counts as its value then (the field's default;
    ``init``: kaiming, see :func:`wiring.train.config.saved_values`); one since removed is ignored."""
    saved = saved_values(saved)
    defaults = {**Config().to_dict(), "source": None}
    return all(saved[key] == value if key in saved else defaults.get(key, object()) == value
               for key, value in now.items())


def recorded(study: Study, cell: Cell, records: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """``cell``'s record if it was finished with the settings it has now, else None."""
    record = records.get(cell.name)
    if (record and record.get("status") == "done" and isinstance(record.get("settings"), dict)
            and same_settings(record["settings"], cell_settings(study, cell))):
        return record
    return None


def _wiring_stats(run_dir: Path) -> dict[str, Any]:
    """The final wiring against the initial one: real edges, how many of the initial real
    edges are still real, the nodes that send and receive real edges."""
    from wiring.io import read_graphml

    finals = sorted(run_dir.glob("wiring*.graphml"))
    out: dict[str, Any] = {}
    for final in finals:
        initial = run_dir / final.name.replace("wiring", "initial", 1)
        try:
            w = read_graphml(final)
            stats: dict[str, Any] = {"edges": int(w.num_edges),
                                     "senders": int(w.edge_index[0].unique().numel()),
                                     "receivers": int(w.edge_index[1].unique().numel())}
            if initial.is_file():
                w0 = read_graphml(initial)
                n = max(w.num_nodes, w0.num_nodes)
                now = set((w.edge_index[0] * n + w.edge_index[1]).tolist())
                start = set((w0.edge_index[0] * n + w0.edge_index[1]).tolist())
                stats["kept_initial"] = len(now & start)
        except Exception as err:  # noqa: BLE001 - statistics are extra; a bad file is noted, not fatal
            stats = {"error": _one_line(err)}
        out[final.stem.replace("wiring", "", 1).lstrip("-_.") or "graph"] = stats
    return out


def record_from_run(study: Study, cell: Cell, run_dir: Path) -> dict[str, Any]:
    """A finished cell's results-file record from its run folder."""
    records = _epochs(run_dir)
    last = records[-1] if records else {}
    return {"cell": cell.name, "setting": cell.setting, "mode": cell.mode, "edges": cell.edges_label,
            "seed": cell.seed, "status": "done",
            "test_acc": round(float(last.get("test_acc", float("nan"))), 6),
            "best_acc": round(max((float(r["test_acc"]) for r in records), default=float("nan")), 6),
            "epochs": int(last.get("epoch", 0)),
            "seconds": round(sum(float(r.get("seconds", 0.0)) for r in records), 1),
            "curve": [round(float(r["test_acc"]), 6) for r in records],
            "loss": [round(float(r["loss"]), 6) for r in records if "loss" in r],
            "swapped": [int(r.get("swapped", 0) or 0) for r in records],
            "density": last.get("density"), "real_edges": last.get("edges"),
            "depth": last.get("depth"), "dead": last.get("dead"),
            "wiring": _wiring_stats(run_dir), "settings": cell_settings(study, cell),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def _log_paths(out: Path, cell: Cell) -> tuple[Path, Path]:
    return out / "logs" / f"{cell.name}.log", out / "logs" / f"{cell.name}.error"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(err, UserError) or type(err).__name__ == "TrainingStopped":
        return message or type(err).__name__
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def train_cell(cfg_values: dict[str, Any], log_path: str) -> dict[str, Any]:
    """Run one cell (``wiring.train.run``) with its output in ``log_path``; returns
    ``{"ok": True, "test_acc": ...}`` or ``{"ok": False, "error": one line}``. Every
    cell seeds torch / numpy / random itself and leaves the global torch flags as it
    found them, so cells are independent of their order and of each other."""
    import numpy as np
    import torch

    cfg = config_from_dict(cfg_values)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "a") as log, redirect_stdout(log), redirect_stderr(log):
        print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {cfg.out} "
              f"({'resume' if cfg.resume else 'overwrite' if cfg.overwrite else 'new'})", flush=True)
        try:
            cfg.validate()
            result = run(cfg)
        except Exception as err:  # noqa: BLE001 - a failed cell is reported, the study goes on
            traceback.print_exc(file=log)
            return {"ok": False, "error": _one_line(err), "seconds": time.perf_counter() - start}
        finally:
            torch.use_deterministic_algorithms(deterministic)
    return {"ok": True, "test_acc": float(result.get("test_acc", float("nan"))),
            "seconds": time.perf_counter() - start}


def _worker_init(threads: int) -> None:
    import torch
    tune_malloc()
    torch.set_num_threads(max(1, threads))


def run_study(study: Study, out: Path, *, jobs: int = 1, say: Callable[[str], None] = print,
              results: Path | None = None) -> dict[str, str]:
    """Run every unfinished cell of ``study`` into ``out``; returns ``{cell name: error}``
    for the cells that failed (or could not start because their source failed).

    With ``results`` (a results file), a cell recorded there with its current settings is
    not trained again, and every cell that finishes is appended to it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = study.cells()
    total = len(cells)
    index = {c.name: i + 1 for i, c in enumerate(cells)}
    finished: set[str] = set()
    failed: dict[str, str] = {}
    pending: list[Cell] = []
    records = read_results(results) if results else {}
    for cell in cells:
        if results and recorded(study, cell, records):
            finished.add(cell.name)
            _log_paths(out, cell)[1].unlink(missing_ok=True)
            say(f"[{index[cell.name]}/{total}] {cell.name}: finished, skipped (recorded in {results})")
        elif cell_state(out / cell.name) == "done":
            finished.add(cell.name)
            _log_paths(out, cell)[1].unlink(missing_ok=True)
            if results:
                append_result(results, record_from_run(study, cell, out / cell.name))
            say(f"[{index[cell.name]}/{total}] {cell.name}: finished, skipped")
        else:
            pending.append(cell)

    def start(cell: Cell) -> tuple[dict[str, Any], str]:
        state = cell_state(out / cell.name)
        cfg = cell_config(study, cell, out, state)
        what = {"new": "training", "resume": "resuming", "restart": "restarting (no checkpoint)"}[state]
        src = f" from {cell.source}" if cell.source else ""
        say(f"[{index[cell.name]}/{total}] {cell.name}: {what}{src}")
        return cfg.to_dict(), str(_log_paths(out, cell)[0])

    def finish(cell: Cell, result: dict[str, Any]) -> None:
        error_path = _log_paths(out, cell)[1]
        if result["ok"]:
            finished.add(cell.name)
            error_path.unlink(missing_ok=True)
            if results:
                append_result(results, record_from_run(study, cell, out / cell.name))
            say(f"    done: test accuracy {result['test_acc']:.4f} in {result['seconds']:.1f}s")
        else:
            failed[cell.name] = result["error"]
            error_path.write_text(result["error"] + "\n")
            say(f"    FAILED: {result['error']} (log: {_log_paths(out, cell)[0]})")

    def blocked(cell: Cell) -> bool:
        if cell.source and cell.source in failed:
            failed[cell.name] = f"not run: its source {cell.source} failed"
            _log_paths(out, cell)[1].parent.mkdir(parents=True, exist_ok=True)
            _log_paths(out, cell)[1].write_text(failed[cell.name] + "\n")
            say(f"[{index[cell.name]}/{total}] {cell.name}: skipped, its source {cell.source} failed")
            return True
        return False

    if jobs <= 1:
        for cell in pending:
            if not blocked(cell):
                finish(cell, train_cell(*start(cell)))
        return failed

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    running: dict[Any, Cell] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        while pending or running:
            for cell in list(pending):
                if len(running) >= jobs:
                    break
                if blocked(cell):
                    pending.remove(cell)
                elif cell.source is None or cell.source in finished:
                    pending.remove(cell)
                    running[pool.submit(train_cell, *start(cell))] = cell
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - a crashed worker fails its cell only
                    result = {"ok": False, "error": _one_line(err), "seconds": 0.0}
                say(f"[{index[cell.name]}/{total}] {cell.name}:")
                finish(cell, result)
    return failed


# ----------------------------------------------------------------------------- results

def _epochs(run_dir: Path) -> list[dict]:
    """The run's per-epoch records (the last record of an epoch repeated by a resume wins)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    try:
        records = load_metrics(path)
    except WiringFileError:
        return []
    by_epoch: dict[int, dict] = {}
    for record in records:
        if "epoch" in record and "test_acc" in record:
            by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def _row_from_record(cell: Cell, record: dict[str, Any]) -> dict[str, Any]:
    return {"setting": cell.setting, "mode": cell.mode, "edges": cell.edges_label, "seed": cell.seed,
            "test_acc": record["test_acc"], "best_acc": record["best_acc"], "epochs": record["epochs"],
            "seconds": record["seconds"], "swapped_total": int(sum(record.get("swapped", []))),
            "status": "done", "cell": cell, "curve": list(record.get("curve", [])),
            "swapped": list(record.get("swapped", [])), "density": record.get("density"),
            "real_edges": record.get("real_edges"), "error": "", "wiring": record.get("wiring", {})}


def collect(study: Study, out: Path, results: Path | None = None) -> list[dict[str, Any]]:
    """One row per cell, from its record in ``results`` (a results file) when it holds one
    with the cell's current settings, else from its run folder in ``out``: the CSV fields
    plus ``curve`` (test accuracy per epoch), ``swapped`` (per epoch), ``density``,
    ``real_edges`` and ``error``."""
    out = Path(out)
    saved = read_results(results) if results else {}
    rows = []
    for cell in study.cells():
        record = recorded(study, cell, saved)
        if record:
            rows.append(_row_from_record(cell, record))
            continue
        run_dir = out / cell.name
        records = _epochs(run_dir)
        error_path = _log_paths(out, cell)[1]
        error = error_path.read_text().strip() if error_path.is_file() else ""
        state = cell_state(run_dir)
        status = "done" if state == "done" else "failed" if error else "unfinished" if records else "missing"
        row: dict[str, Any] = {"setting": cell.setting, "mode": cell.mode, "edges": cell.edges_label,
                               "seed": cell.seed, "test_acc": None, "best_acc": None, "epochs": 0,
                               "seconds": 0.0, "swapped_total": 0, "status": status, "cell": cell,
                               "curve": [], "swapped": [], "density": None, "real_edges": None,
                               "error": error}
        if records:
            last = records[-1]
            row.update(test_acc=round(float(last["test_acc"]), 6),
                       best_acc=round(max(float(r["test_acc"]) for r in records), 6),
                       epochs=int(last["epoch"]),
                       seconds=round(sum(float(r.get("seconds", 0.0)) for r in records), 1),
                       swapped_total=int(sum(int(r.get("swapped", 0) or 0) for r in records)),
                       curve=[float(r["test_acc"]) for r in records],
                       swapped=[int(r.get("swapped", 0) or 0) for r in records],
                       density=last.get("density"), real_edges=last.get("edges"))
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_FIELDS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_FIELDS})


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean: float, std: float | None, digits: int = 1) -> str:
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} +- {std:.{digits}f}"


def _groups(study: Study, rows: list[dict]) -> list[tuple[str, str, str, list[dict]]]:
    """(setting, mode, edges label, finished rows) in grid order, one per (setting, mode, edges)."""
    out = []
    for setting in study.grid["setting"]:
        for mode in study.grid["mode"]:
            for edges in [e for e in study.budgets if e in study.edges_of(mode)] or [None]:
                label = "all" if edges is None else str(edges)
                members = [r for r in rows if r["setting"] == setting and r["mode"] == mode
                           and r["edges"] == label and r["status"] == "done"]
                out.append((setting, mode, label, members))
    return out


def _paper_number(text: str | None) -> float | None:
    match = re.search(r"-?\d+(?:\.\d+)?", text or "")
    return float(match.group()) if match else None


MODE_NAMES = {name: cls.phrase for name, cls in MODES.items()}                 # report text


def _comparison(study: Study, rows: list[dict], setting: str, other: str = "fixed") -> str:
    """The plain-language line: does DNW beat ``other`` (default the random graph) in ``setting``, per budget?

    ``complete`` has one run per seed (all candidates real): each budget's DNW is set against it.
    """
    name = MODE_NAMES.get(other, other)
    parts = []
    for edges in study.budgets:
        if other != "complete" and edges not in study.edges_of(other):
            continue
        label = str(edges)
        acc = {mode: {r["seed"]: 100 * r["test_acc"] for r in rows if r["setting"] == setting
                      and r["mode"] == mode and r["edges"] == ("all" if ALL_REAL(mode) else label)
                      and r["status"] == "done"}
               for mode in ("dnw", other)}
        if not acc["dnw"] or not acc[other]:
            parts.append(f"at {edges} edges: not measured (DNW or {name} unfinished)")
            continue
        dnw_m, dnw_s = _mean_std(list(acc["dnw"].values()))
        oth_m, oth_s = _mean_std(list(acc[other].values()))
        paired = sorted(set(acc["dnw"]) & set(acc[other]))
        if len(paired) > 1:
            diffs = [acc["dnw"][s] - acc[other][s] for s in paired]
            diff, spread = statistics.fmean(diffs), statistics.stdev(diffs)
            how = f"{diff:+.2f} +- {spread:.2f} points over {len(paired)} paired seeds"
        else:
            diff = dnw_m - oth_m
            spread = None if dnw_s is None or oth_s is None else math.hypot(dnw_s, oth_s)
            how = f"{diff:+.2f} points" + ("" if spread is None else f" +- {spread:.2f}") + \
                (" (1 seed each: no spread)" if spread is None else "")
        verdict = "holds" if diff > 0 else "does not hold (a tie)" if diff == 0 else "does not hold"
        if spread is not None and diff != 0 and abs(diff) <= spread:
            verdict += ", within the seed-to-seed spread"
        parts.append(f"at {edges} edges DNW > {name} {verdict}: {how}; "
                     f"DNW {_fmt(dnw_m, dnw_s, 2)} vs {name} {_fmt(oth_m, oth_s, 2)}")
    paper = []
    for table in study.paper:
        d, f = _paper_number(table.value(setting, "dnw")), _paper_number(table.value(setting, other))
        if d is not None and f is not None:
            paper.append(f"{table.label}: {d:g} vs {f:g}, {d - f:+.1f}")
    tail = f" Paper ({'; '.join(paper)})." if paper else ""
    return f"- **{setting}**: " + "; ".join(parts) + "." + tail


NOTES_MARKER = "<!-- notes: everything below this line is kept when the report is rebuilt -->"


def _kept_notes(report: Path) -> list[str]:
    """The hand-written notes of an existing report (from :data:`NOTES_MARKER` on), else none."""
    if not report.exists():
        return []
    text = report.read_text()
    return ["", NOTES_MARKER + text.split(NOTES_MARKER, 1)[1].rstrip("\n")] if NOTES_MARKER in text else []


def _edges_axis(ax, study, setting: str) -> None:
    """One setting's panel with the study's budgets on a log x axis (the edges and difference plots)."""
    ax.set_xscale("log")
    ticks = [e for e in study.budgets if e is not None]
    ax.set_xticks(ticks, [str(e) for e in ticks])
    ax.minorticks_off()
    ax.set_title(setting)
    ax.set_xlabel("real edges k")
    ax.grid(alpha=0.3)


def _legend(axes) -> None:
    """One legend (on the first panel) of every line in any panel."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        axes[0].legend(list(handles.values()), list(handles), fontsize=7)


def _plots(study: Study, rows: list[dict], report: Path) -> list[tuple[str, Path]]:
    """Accuracy vs edges per mode (one panel per setting) and accuracy per epoch at one budget."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    done = [r for r in rows if r["status"] == "done"]
    if not done:
        return []
    settings = study.grid["setting"]
    stem = report.with_suffix("")
    made = []
    colors = {m: f"C{i}" for i, m in enumerate(study.grid["mode"])}

    fig, axes = plt.subplots(1, len(settings), figsize=(max(6.0, 4.6 * len(settings)), 4.0), squeeze=False, sharey=True)
    for ax, setting in zip(axes[0], settings):
        for mode in study.grid["mode"]:
            if ALL_REAL(mode):
                accs = [100 * r["test_acc"] for r in done if r["setting"] == setting and r["mode"] == mode]
                if accs:
                    m, s = _mean_std(accs)
                    ax.axhline(m, color=colors[mode], ls="--", label=MODE_LABELS.get(mode, mode))
                    if s:
                        ax.axhspan(m - s, m + s, color=colors[mode], alpha=0.12)
                continue
            xs, ys, es = [], [], []
            for edges in study.budgets:
                accs = [100 * r["test_acc"] for r in done if r["setting"] == setting and r["mode"] == mode
                        and r["edges"] == str(edges)]
                if accs:
                    m, s = _mean_std(accs)
                    xs.append(edges), ys.append(m), es.append(s or 0.0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=colors[mode],
                            label=MODE_LABELS.get(mode, mode))
        _edges_axis(ax, study, setting)
    axes[0][0].set_ylabel("test accuracy (%)")
    _legend(axes[0])
    fig.suptitle(f"{study.name}: test accuracy vs real edges (mean +- std)")
    fig.tight_layout()
    path = Path(f"{stem}_edges.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    made.append(("test accuracy vs edges", path))

    edges = study.curve_edges
    if edges is None:      # the middle budget among those with finished cells
        measured = sorted({int(r["edges"]) for r in done if r["edges"] != "all"})
        edges = measured[len(measured) // 2] if measured else None
    fig, axes = plt.subplots(1, len(settings), figsize=(max(6.0, 4.6 * len(settings)), 4.0), squeeze=False, sharey=True)
    for ax, setting in zip(axes[0], settings):
        for mode in study.grid["mode"]:
            label = "all" if ALL_REAL(mode) else str(edges)
            curves = [r["curve"] for r in done if r["setting"] == setting and r["mode"] == mode
                      and r["edges"] == label]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            xs = list(range(1, n + 1))
            means = [statistics.fmean(100 * c[i] for c in curves) for i in range(n)]
            ax.plot(xs, means, marker="o" if n < 20 else None, ms=3, color=colors[mode],
                    ls="--" if ALL_REAL(mode) else "-", label=MODE_LABELS.get(mode, mode))
            if len(curves) > 1:
                stds = [statistics.stdev(100 * c[i] for c in curves) for i in range(n)]
                ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                                color=colors[mode], alpha=0.12)
        ax.set_title(setting)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    _legend(axes[0])
    fig.suptitle(f"{study.name}: test accuracy per epoch" + (f", k = {edges}" if edges else ""))
    fig.tight_layout()
    path = Path(f"{stem}_curves.png")
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    made.append(("test accuracy per epoch" + (f" at {edges} edges" if edges else ""), path))
    diffs = {setting: paired_differences(study, rows, setting) for setting in settings}
    if any(diffs.values()):
        fig, axes = plt.subplots(1, len(settings), figsize=(max(6.0, 4.6 * len(settings)), 4.0), squeeze=False,
                                 sharey=True)
        for ax, setting in zip(axes[0], settings):
            got = [d for d in diffs[setting] if d["n"]]
            if got:
                ax.errorbar([d["edges"] for d in got], [d["mean"] for d in got],
                            yerr=[d["std"] or 0.0 for d in got], marker="o", capsize=3, color="C0",
                            label="DNW - random graph (mean +- std over paired seeds)")
                for d in got:
                    ax.annotate(f"n={d['n']}", (d["edges"], d["mean"]), textcoords="offset points",
                                xytext=(4, 4), fontsize=7)
            ax.axhline(0.0, color="0.4", lw=0.8)
            _edges_axis(ax, study, setting)
        axes[0][0].set_ylabel("test accuracy difference (points)")
        _legend(axes[0])
        fig.suptitle(f"{study.name}: DNW minus the random graph, same seed")
        fig.tight_layout()
        path = Path(f"{stem}_difference.png")
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        made.append(("DNW minus the random graph per budget", path))
    return made


def paired_differences(study: Study, rows: list[dict], setting: str, other: str = "fixed") -> list[dict[str, Any]]:
    """Per budget (increasing): DNW minus ``other`` in points over the seeds both finished:
    ``edges``, ``n`` (paired seeds), ``mean``, ``std`` (of the per-seed differences; None
    below 2), ``min``, ``max``, ``diffs`` (by seed), ``dnw`` and ``other`` (their means)."""
    out = []
    for edges in study.budgets:
        if edges is None or edges not in study.edges_of("dnw") or edges not in study.edges_of(other):
            continue
        acc = {mode: {r["seed"]: 100 * r["test_acc"] for r in rows if r["setting"] == setting
                      and r["mode"] == mode and r["edges"] == str(edges) and r["status"] == "done"}
               for mode in ("dnw", other)}
        seeds = sorted(set(acc["dnw"]) & set(acc[other]))
        diffs = {s: acc["dnw"][s] - acc[other][s] for s in seeds}
        values = list(diffs.values())
        out.append({"edges": edges, "n": len(values), "diffs": diffs,
                    "mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "min": min(values) if values else None, "max": max(values) if values else None,
                    "dnw": statistics.fmean(acc["dnw"][s] for s in seeds) if seeds else None,
                    "other": statistics.fmean(acc[other][s] for s in seeds) if seeds else None})
    return out


def _spread(std: float | None) -> str:
    return "-" if std is None else f"{std:.2f}"


def _difference_table(study: Study, rows: list[dict]) -> list[str]:
    """The per-budget table of paired DNW - random graph differences."""
    total = len(study.grid["seed"])
    lines = ["", "DNW minus the random graph per budget, paired by seed (the same seed gives both the same "
             "initial weights, data order and test images); spread = std of the per-seed differences.", "",
             "| setting | edges | paired seeds | DNW (%) | random graph (%) | DNW - RG (points) | spread | "
             "min .. max | per seed |", "|---|---|---|---|---|---|---|---|---|"]
    for setting in study.grid["setting"]:
        for d in paired_differences(study, rows, setting):
            if not d["n"]:
                lines.append(f"| {setting} | {d['edges']} | 0 of {total} | - | - | - | - | - | not run yet |")
                continue
            per_seed = ", ".join(f"s{s}: {v:+.2f}" for s, v in d["diffs"].items())
            lines.append(f"| {setting} | {d['edges']} | {d['n']} of {total} | {d['dnw']:.2f} | {d['other']:.2f} | "
                         f"{d['mean']:+.2f} | {_spread(d['std'])} | "
                         f"{d['min']:+.2f} .. {d['max']:+.2f} | {per_seed} |")
    return lines


def _churn_table(study: Study, rows: list[dict]) -> list[str]:
    """How much each learning mode rewired, per budget: swaps per epoch as a share of k, and
    the share of the initial real edges still real at the end."""
    learning = [m for m in study.grid["mode"] if not (MODES[m].uses_frozen or MODES[m].all_real)]   # they rewire
    done = [r for r in rows if r["status"] == "done" and r["mode"] in learning and r["edges"] != "all"]
    if not done:
        return []
    epochs = max(len(r.get("swapped") or []) for r in done)
    lines = ["", "## Churn: how much the wiring moved", "",
             "Per epoch, the real edges at its end that were not real at its start (as many left the real "
             "set) as a share of k, and the share of the initial k real edges still real after training; "
             "mean over the finished seeds.", "",
             "| setting | mode | edges | seeds | " + " | ".join(f"epoch {e + 1} swapped" for e in range(epochs))
             + " | initial edges kept |", "|" + "---|" * (5 + epochs)]
    for setting in study.grid["setting"]:
        for mode in learning:
            for edges in study.budgets:
                if edges is None or edges not in study.edges_of(mode):
                    continue
                members = [r for r in done if r["setting"] == setting and r["mode"] == mode and r["edges"] == str(edges)]
                if not members:
                    continue
                cells = [setting, mode, str(edges), str(len(members))]
                for e in range(epochs):
                    shares = [r["swapped"][e] / edges for r in members if len(r.get("swapped") or []) > e]
                    cells.append(f"{100 * statistics.fmean(shares):.1f}%" if shares else "-")
                kept = [s["kept_initial"] / edges for r in members for s in (r.get("wiring") or {}).values()
                        if isinstance(s, dict) and "kept_initial" in s]
                cells.append(f"{100 * statistics.fmean(kept):.1f}%" if kept else "-")
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path)


def write_report(study: Study, rows: list[dict[str, Any]], out: Path, report: Path, command: str) -> Path:
    """The Markdown report (and its plots next to it) from ``collect``'s rows."""
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    cfg = study.base_config()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "unfinished", "missing")}
    hours = sum(r["seconds"] for r in rows) / 3600
    lines = [f"# Study `{study.name}`: Discovering Neural Wirings at small scale", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [
        f"Produced by `{command}` (rebuild this report with `--report-only`, from its results file and the run folders).", "",
        f"- **Data**: `{cfg.data}`" + (f" (`{cfg.data_dir}`)" if cfg.data_dir else "")
        + f"; model `{cfg.model}`" + (f" x{cfg.width}" if cfg.width else "") + f", initial wiring `{cfg.graph}`.",
        f"- **Budget**: {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}, batch {cfg.batch_size}, SGD lr {cfg.lr} momentum {cfg.momentum} "
        f"weight decay {cfg.weight_decay}, {cfg.schedule} schedule"
        + (f" (x{cfg.gamma} at epochs {', '.join(map(str, cfg.milestones))})" if cfg.schedule == "multistep" else "")
        + (f"; discrete: {cfg.steps} steps" if "discrete" in study.grid["setting"] else "")
        + (f"; continuous: {solver_text(cfg)}" if "continuous" in study.grid["setting"] else "")
        + (f"; a fixed random {cfg.train_subset:,} of the training images" if cfg.train_subset else "")
        + (f"; a fixed random {cfg.test_subset:,} of the test images" if cfg.test_subset else "")
        + ".",
        f"- **Grid**: settings {', '.join(study.grid['setting'])}; modes {', '.join(study.grid['mode'])}; "
        f"edges {', '.join(str(e) for e in study.grid['edges'])}; seeds {', '.join(map(str, study.grid['seed']))} "
        f"({len(rows)} cells: {counts['done']} done, {counts['failed']} failed, {counts['unfinished']} unfinished, "
        f"{counts['missing']} not run). `complete` ignores edges: one run per setting and seed.",
        f"- **Compute**: {f'{hours:.1f} h' if hours >= 1 else f'{hours * 60:.1f} min'} of training and "
        f"evaluation in all (sum over cells); runs in `{out}`, "
        f"one row per cell in `{Path(out) / 'results.csv'}`.",
    ]
    source = study.source_mode()
    if source == "complete":
        lines.append("- `fine_tune` and `lottery` start from the trained `complete` cell of the same setting and seed "
                     "(its top-k edges; fine_tune keeps the trained weights, lottery rewinds them to the saved "
                     "initialisation), as in the paper.")
    elif source == "dnw":
        lines.append("- `fine_tune` and `lottery` start from the trained **`dnw`** cell of the same setting, edges "
                     "and seed, because `complete` is not in the grid (the paper starts both from a trained "
                     "complete graph).")
    lines += ["", "## Test accuracy", "",
              "Final-epoch test accuracy in %, mean +- std over the seeds that finished (best: the best epoch's, "
              "mean over seeds). Density is k over the candidate edges."]
    header = ["setting", "mode", "edges", "density", "seeds", "test acc (%)", "best acc (%)"]
    header += [f"paper: {t.label}" for t in study.paper]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, mode, label, members in _groups(study, rows):
        density = members[0]["density"] if members else None
        cells = [setting, mode, label if label != "all" else f"all ({members[0]['real_edges']})" if members
                 and members[0]["real_edges"] else "all",
                 "" if density is None else f"{float(density):.4f}", str(len(members))]
        if members:
            cells.append(_fmt(*_mean_std([100 * r["test_acc"] for r in members]), 2))
            cells.append(f"{statistics.fmean(100 * r['best_acc'] for r in members):.2f}")
        else:
            cells += ["-", "-"]
        cells += [t.value(setting, mode) or "" for t in study.paper]
        lines.append("| " + " | ".join(cells) + " |")
    if study.paper:
        lines += ["", "Paper columns (the paper's scale, not ours: compare the ordering and the gaps, not the values):"]
        lines += [f"- **{t.label}**: {t.title}" for t in study.paper]

    lines += ["", "## Does DNW beat the random graph?", ""]
    if {"dnw", "fixed"} <= set(study.grid["mode"]):
        lines.append("DNW minus the random graph (`fixed`: the initial random k edges, never changed), "
                     "final test accuracy in points, mean +- std of the per-seed differences.")
        lines.append("")
        lines += [_comparison(study, rows, setting) for setting in study.grid["setting"]]
        lines += _difference_table(study, rows)
    else:
        lines.append("The grid does not hold both `dnw` and `fixed`: no comparison.")
    lines += _churn_table(study, rows)
    ablations = [m for m in study.grid["mode"] if m not in ("dnw", "fixed")]
    if "dnw" in study.grid["mode"] and ablations:
        lines += ["", "## Does DNW beat its ablations?", "",
                  "DNW minus each other mode, final test accuracy in points, per setting and budget "
                  "(`complete`: every candidate real, one run per seed, set against each budget).", ""]
        for other in ablations:
            lines += [f"**DNW vs {MODE_NAMES.get(other, other)}** (`{other}`)", ""]
            lines += [_comparison(study, rows, setting, other) for setting in study.grid["setting"]]
            lines.append("")
        lines.pop()

    plots = _plots(study, rows, report)
    if plots:
        lines += ["", "## Plots", ""]
        for title, path in plots:
            lines += [f"![{title}]({_relative(path, report.parent)})", ""]
        lines.pop()
    problems = [r for r in rows if r["status"] != "done"]
    if problems:
        lines += ["", "## Cells not finished", ""]
        for r in problems:
            what = {"failed": f"failed: {r['error']}", "unfinished": f"unfinished after {r['epochs']} epochs "
                    "(rerun the study to resume it)", "missing": "not run yet"}[r["status"]]
            lines.append(f"- `{r['cell'].name}`: {what}")
    lines += _kept_notes(report)
    report.write_text("\n".join(lines) + "\n")
    return report


# ----------------------------------------------------------------------------- CLI

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


if __name__ == "__main__":
    sys.exit(main())
