"""The Markdown report of a study (``docs/results.md`` by default).

Contract: :func:`write_report` writes the budget, a mean +- std table per (setting, mode,
edges) beside the paper's numbers, DNW minus the random graph per budget with paired
per-seed spread (:func:`paired_differences`: same seed = same initial weights, data order and
test images), the churn per budget and the plots of :mod:`wiring.study.plots`; everything
below :data:`NOTES_MARKER` in an existing report is kept.
"""
from __future__ import annotations

import math
import os
import re
import statistics
from pathlib import Path
from typing import Any

from wiring.files import atomic_write
from wiring.modes import MODES
from wiring.study.plots import plot_study
from wiring.study.results import mean_std, paired_differences
from wiring.study.spec import ALL_REAL, Study
from wiring.train.pipeline import solver_text


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
        dnw_m, dnw_s = mean_std(list(acc["dnw"].values()))
        oth_m, oth_s = mean_std(list(acc[other].values()))
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
    text = report.read_text(encoding="utf-8", errors="replace")
    return ["", NOTES_MARKER + text.split(NOTES_MARKER, 1)[1].rstrip("\n")] if NOTES_MARKER in text else []


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
    learning = [m for m in study.grid["mode"]                                                       # they rewire
                if MODES[m].updates or not (MODES[m].uses_frozen or MODES[m].all_real)]
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
            cells.append(_fmt(*mean_std([100 * r["test_acc"] for r in members]), 2))
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

    plots = plot_study(study, rows, report)
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
    text = "\n".join(lines) + "\n"
    atomic_write(report, lambda f: f.write(text), binary=False)     # a full disk keeps the old report
    return report
