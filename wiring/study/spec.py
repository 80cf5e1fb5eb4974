"""A study file: the YAML grid of training runs -> :class:`Study`, its ordered :class:`Cell` list.

Contract: :func:`load_study` reads a study file (format in :mod:`wiring.study`) and
:func:`study_from_dict` checks it (every problem a :class:`StudyError` naming the file and the
key: unknown keys, a ``base`` setting a cell owns, grid values the training command would
refuse); :meth:`Study.cells` lists the cells in the study's ``order`` with the source cell of
each ``fine_tune`` / ``lottery`` one; :func:`cell_config` is a cell's training config.

>>> study = study_from_dict({"name": "tiny", "base": {"data": "digits"},
...                          "grid": {"mode": ["dnw", "fixed"], "edges": [500], "seed": [0]}})
>>> [cell.name for cell in study.cells()]
['static-dnw-500-s0', 'static-fixed-500-s0']
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from models import SETTINGS
from wiring.errors import UserError
from wiring.files import NotText, read_text
from wiring.modes import MODES, every_candidate_real
from wiring.train.config import SEED_MAX, Config, ConfigError, config_from_dict

GRID_KEYS = ("setting", "mode", "edges", "seed")
STUDY_KEYS = ("name", "description", "base", "grid", "paper", "curve_edges", "order", "mode_edges")
DEFAULT_ORDER = ("mode", "edges", "seed")
DEPENDENT = tuple(name for name, cls in MODES.items() if cls.needs_source)   # fine_tune, lottery
ALL_REAL = every_candidate_real                                                 # complete: budget "all"
# Config fields a study sets per cell: not allowed in ``base``.
CELL_OWNED = ("setting", "mode", "edges", "seed", "out", "from_run", "resume", "overwrite", "config")


class StudyError(UserError, ValueError):
    """The study config is invalid; the message names the file and the key."""


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
    #: ``--only`` patterns (fnmatch, on cell names): the cells run and reported; () = all
    only: tuple[str, ...] = ()

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
        if self.only:
            chosen = {c.name for c in out if any(fnmatch.fnmatchcase(c.name, p) for p in self.only)}
            chosen |= {c.source for c in out if c.name in chosen and c.source}     # what they start from
            out = [c for c in out if c.name in chosen]
        return out

    def count(self) -> int:
        """How many cells the grid has (before ``only``), from its dimensions: no cell is made.

        >>> grid = {"mode": ["dnw", "fixed", "complete"], "edges": list(range(1, 1001)), "seed": list(range(1000))}
        >>> study_from_dict({"name": "big", "grid": grid}).count()
        2001000
        """
        edges = set(self.grid["edges"])
        per_seed = 0
        for mode in self.grid["mode"]:
            if ALL_REAL(mode):
                per_seed += 1
            else:
                per_seed += len(edges & set(self.mode_edges.get(mode, edges)) - {None})
        return len(self.grid["setting"]) * len(self.grid["seed"]) * per_seed

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
        known = set(grid["edges"])
        missing = [e for e in budgets if e not in known]
        if missing:
            raise _fail(path, f"mode_edges.{mode}: {missing[0]!r} is not one of grid.edges")
        mode_edges[str(mode)] = budgets
    return Study(name=name, base=base, grid=grid, path=Path(str(path)), description=description.strip(),
                 paper=_parse_paper(data.get("paper"), path), curve_edges=curve, order=tuple(order),
                 mode_edges=mode_edges)


def load_study(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Study:
    """Read and validate a study YAML file; every problem is one :class:`StudyError` line.
    ``overrides`` (``--set key=value``, ``--data-dir``) replace keys of its ``base``."""
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"study config {path}: no such file")
    try:
        data = yaml.safe_load(read_text(p))
    except NotText as err:
        raise StudyError(f"study config {err}: a study is UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise _fail(path, f"not valid YAML ({str(err).splitlines()[0]})") from None
    if overrides:
        if not isinstance(data, dict):
            raise _fail(path, "must hold a mapping with 'name', 'base' and 'grid'")
        base = data.get("base") or {}
        if not isinstance(base, dict):
            raise _fail(path, "'base' must be a mapping of training settings (data, epochs, batch-size, ...)")
        names = {str(k).replace("-", "_"): k for k in base}
        base = dict(base)
        for key, value in overrides.items():
            base.pop(names.get(key, key), None)
            base[key] = value
        data = {**data, "base": base}
    return study_from_dict(data, path)


def parse_override(text: str) -> tuple[str, Any]:
    """``--set key=value``: the base key (dashes as underscores) and its YAML value.

    >>> parse_override("batch-size=64"), parse_override("train_subset=null")
    (('batch_size', 64), ('train_subset', None))
    """
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise StudyError(f"--set {text}: expected KEY=VALUE (a training setting of the study's base, "
                         f"e.g. --set epochs=1)")
    known = {f.name for f in fields(Config)}
    if key not in known:
        raise StudyError(f"--set {text}: unknown training setting {key!r} (the keys of 'base': the flags of "
                         f"python -m wiring.train)")
    if key in CELL_OWNED:
        raise StudyError(f"--set {text}: {key!r} is set for each cell by the study (grid or --out), not in base")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def cell_config(study: Study, cell: Cell, out: Path, state: str = "new") -> Config:
    """The training :class:`Config` of ``cell`` in study folder ``out`` (not validated:
    a fine_tune source need not exist yet)."""
    run_dir = Path(out) / cell.name
    values = {**study.base, "setting": cell.setting, "mode": cell.mode, "edges": cell.edges,
              "seed": cell.seed, "out": str(run_dir), "progress": "none",
              "from_run": str(Path(out) / cell.source) if cell.source else None,
              "resume": state == "resume", "overwrite": state == "restart"}
    return config_from_dict(values)
