"""The results file of a study: one JSON line per finished cell, and the rows a report reads.

Contract: :func:`append_result` adds one record (metrics per epoch, the final wiring's
statistics, the cell's training settings: small enough to commit) with the one crash-safe
writer; :func:`recorded` finds a cell's record only where its settings are the same
(:func:`same_settings`, ignoring :data:`NOT_SETTINGS`), so a cell is never trained twice and
cells of different settings never mix; :func:`collect` turns records and run folders into one
row per cell, :func:`write_csv` writes them as ``results.csv``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from wiring.errors import UserError
from wiring.files import append_line, atomic_write, torn_tail
from wiring.io import CHECKPOINT_FILE, LOCK_FILE, METRICS_FILE, WiringFileError, load_metrics, read_graphml
from wiring.study.spec import Cell, Study, StudyError, cell_config
from wiring.train.config import Config, saved_values

CSV_FIELDS = ("setting", "mode", "edges", "seed", "test_acc", "best_acc", "epochs", "seconds",
              "swapped_total", "status")


# Config fields that do not change what a cell computes: not part of its recorded settings.
NOT_SETTINGS = ("out", "data_dir", "progress", "resume", "overwrite", "config", "from_run", "device", "backend",
                "eval_batch_size", "debug", "check_wiring_every", "snapshot_every", "progress_every")


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


def _whole(line: bytes) -> bool:
    """Whether ``line`` is a whole record line (a JSON object), not one cut short."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:          # not JSON, or not UTF-8
        return False


def _finite(value: Any, low: float | None = None, high: float | None = None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _accuracy(value: Any) -> bool:
    return _finite(value, 0.0, 1.0)


def _int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _optional_number(value: Any) -> bool:
    return value is None or _finite(value)


#: every field a record must hold: (what it must be, the test)
RECORD_FIELDS: dict[str, tuple[str, Any]] = {
    "cell": ("a cell name", lambda v: isinstance(v, str) and bool(v)),
    "status": ("text", lambda v: isinstance(v, str)),
    "test_acc": ("an accuracy: a finite number from 0 to 1", _accuracy),
    "best_acc": ("an accuracy: a finite number from 0 to 1", _accuracy),
    "epochs": ("a non-negative integer", _int),
    "seconds": ("a finite number of seconds, 0 or more", lambda v: _finite(v, 0.0)),
    "curve": ("a list of accuracies (finite numbers from 0 to 1)",
              lambda v: isinstance(v, list) and all(map(_accuracy, v))),
    "swapped": ("a list of non-negative integers", lambda v: isinstance(v, list) and all(map(_int, v))),
    "settings": ("a mapping of training settings", lambda v: isinstance(v, dict)),
}
#: fields a record may hold: (what they must be, the test)
OPTIONAL_FIELDS: dict[str, tuple[str, Any]] = {
    "setting": ("text", lambda v: isinstance(v, str)),
    "mode": ("text", lambda v: isinstance(v, str)),
    "edges": ("a budget (digits or 'all')", lambda v: isinstance(v, str) and (v == "all" or v.isdigit())),
    "seed": ("a non-negative integer", _int),
    "loss": ("a list of finite numbers", lambda v: isinstance(v, list) and all(map(_finite, v))),
    "wiring": ("a mapping of wiring name -> statistics",
               lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())),
    "density": ("a finite number or null", _optional_number),
    "real_edges": ("a finite number or null", _optional_number),
    "depth": ("a finite number or null", _optional_number),
    "dead": ("a finite number or null", _optional_number),
    "finished": ("text", lambda v: isinstance(v, str)),
}


def record_problem(record: Any) -> str | None:
    """What is wrong with a results-file record (one phrase), or None when it is sound.

    >>> record_problem({"cell": "static-dnw-500-s0"})
    "no field 'status'"
    """
    if not isinstance(record, dict):
        return "not a cell record (a JSON object)"
    for name, (what, ok) in RECORD_FIELDS.items():
        if name not in record:
            return f"no field {name!r}"
        if not ok(record[name]):
            return f"field {name!r} must be {what}, got {json.dumps(record[name])[:40]}"
    for name, (what, ok) in OPTIONAL_FIELDS.items():
        if name in record and not ok(record[name]):
            return f"field {name!r} must be {what}, got {json.dumps(record[name])[:40]}"
    if record["best_acc"] < record["test_acc"] - 1e-9 and record["curve"]:
        return f"best_acc {record['best_acc']} is below test_acc {record['test_acc']}"
    return None


def torn_record(path: Path) -> int | None:
    """The line number of a last record cut short (a write interrupted), else None."""
    torn = torn_tail(path, _whole)
    return torn[0] if torn else None


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The records of a results file by cell name (a later line for a cell wins). A last
    line cut short by an interrupted write is ignored (:func:`torn_record` finds it, the
    next :func:`append_result` drops it); any other bad line, a record that
    :func:`record_problem` refuses, or a file that is not UTF-8 is a StudyError naming the
    file and the line."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = torn_record(path)
    records: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(lines, 1):
        if i == torn:
            break
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StudyError(f"results file {path}, line {i}: not UTF-8 text (byte {raw[err.start]:#04x}); "
                             f"a results file is JSON lines") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise StudyError(f"results file {path}, line {i}: not JSON (only a last line cut short is "
                             f"ignored): remove or fix that line") from None
        problem = record_problem(record)
        if problem:
            raise StudyError(f"results file {path}, line {i}: {problem}")
        records[record["cell"]] = record
    return records


def append_result(path: Path, record: dict[str, Any]) -> bool:
    """Append one cell's record as a whole line or not at all (:func:`wiring.files.append_line`:
    synced, cut back on a failed write); a last line cut short before is dropped first.
    Returns whether one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = record_problem(record)
    if problem:
        raise StudyError(f"cell {record.get('cell')}: its record is refused ({problem}); nothing was appended "
                         f"to {path}")
    return append_line(path, json.dumps(record, sort_keys=True, separators=(",", ":")), drop_torn=_whole)


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
            stats = {"error": one_line(err)}
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
        error_path = log_paths(out, cell)[1]
        error = error_path.read_text(errors="replace").strip() if error_path.is_file() else ""
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
    """``results.csv``: one row per cell, written atomically (:func:`wiring.files.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(CSV_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_FIELDS})
    atomic_write(path, lambda f: f.write(text.getvalue()), binary=False)


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


def log_paths(out: Path, cell: Cell) -> tuple[Path, Path]:
    return out / "logs" / f"{cell.name}.log", out / "logs" / f"{cell.name}.error"


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(err, UserError) or type(err).__name__ == "TrainingStopped":
        return message or type(err).__name__
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


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
