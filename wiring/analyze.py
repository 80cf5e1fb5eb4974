"""Text and JSON reports of a wiring's topology.

Contract: :func:`analyze` reads a run directory (its final wiring:
``wiring.graphml``, else the last ``history.pt`` snapshot; compared with its
initial wiring: ``initial.graphml``, else the first snapshot) or a GraphML file
(:func:`wiring.io.read_wiring_file`: one without levels whose cycles rule out a
layered reading is a dynamic wiring), through :mod:`wiring.io`, and returns one JSON-ready dict whose numbers come
from :mod:`wiring.topology`: ``nodes``, ``roles``, ``edges`` (k, the real
edges), ``candidates`` and ``density`` (None when the candidate count is
unknown), ``acyclic``, ``depth`` and ``generations`` (None for a cyclic wiring),
``cycles`` (:func:`~wiring.topology.cycle_stats`), ``dead`` and ``dead_nodes``,
``degree`` (:func:`~wiring.topology.degree_stats`), ``level_edges`` as
``[source level, target level, count]`` rows, and for a run ``initial`` (the same
numbers for the initial wiring) and ``churn`` (added / removed / kept from the
initial wiring to the final one). :func:`format_report` renders it as text.

CLI::

    python -m wiring.analyze RUN_DIR|FILE.graphml [--json]

A user mistake (missing or malformed input, bad flag) exits with status 2 and
one line on stderr (:func:`wiring.cli.run_cli`). This module imports only
:mod:`wiring.io`, :mod:`wiring.topology` and the command-line plumbing
(:mod:`wiring.cli`, :mod:`wiring.errors`) from the project.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from wiring.cli import ArgumentParser, run_cli
from wiring.errors import UserError
from wiring.io import (
    WIRING_OPTION_HELP,
    GraphError,
    WiringFileError,
    load_run,
    read_wiring_file,
    to_networkx,
    unchosen_wiring,
)
from wiring.topology import churn, cycle_stats, dead_nodes, degree_stats, depth, generations, level_edges

__all__ = ["AnalyzeError", "wiring_numbers", "analyze", "format_report", "main"]


class AnalyzeError(UserError):
    """A user mistake: the input is missing, malformed or holds no wiring."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def wiring_numbers(wiring) -> dict:
    """The topology numbers of one :class:`~wiring.graph.Wiring` (its real edges)."""
    real = wiring.real_edges()
    G = to_networkx(real)
    attrs = wiring.attrs or {}
    if wiring.real is not None:
        candidates: Any = wiring.num_edges
    else:
        candidates = _number(attrs.get("candidates"))
        candidates = int(candidates) if candidates else None
    k = G.number_of_edges()
    roles = {"input": 0, "hidden": 0, "output": 0}
    for _, role in G.nodes(data="role"):
        roles[role] = roles.get(role, 0) + 1
    cycles = cycle_stats(G)
    dead = sorted(dead_nodes(G))
    out: dict[str, Any] = {
        "nodes": G.number_of_nodes(), "roles": roles, "edges": k, "candidates": candidates,
        "density": k / candidates if candidates else None,
        "static": attrs.get("static"), "step": attrs.get("step"), "test_acc": _number(attrs.get("test_acc")),
        "acyclic": cycles["acyclic"],
        "depth": depth(G) if cycles["acyclic"] else None,
        "generations": len(generations(G)) if cycles["acyclic"] else None,
        "cycles": cycles, "dead": len(dead), "dead_nodes": dead, "degree": degree_stats(G),
        "level_edges": [[int(s), int(t), int(c)] for (s, t), c in level_edges(G).items()],
    }
    return out


def analyze(path: str | os.PathLike, wiring: str | None = None) -> dict:
    """The report of a run directory or a GraphML file (see the module docstring);
    ``wiring`` names one of a run's several wirings (MobileNetV1-DNW: one per stage).
    Raises :class:`AnalyzeError` with a one-line message for a user mistake."""
    path = Path(path)
    if not path.exists():
        raise AnalyzeError(f"{path} does not exist (expected a run directory or a .graphml file)")
    if wiring is not None and not path.is_dir():
        raise AnalyzeError(f"--wiring applies to run directories, not to the file {path}")
    try:
        if not path.is_dir():
            report = {"source": str(path), "kind": "graphml", "wiring": path.name}
            report.update(wiring_numbers(read_wiring_file(path)))
            return report
        run = load_run(path, wiring)
    except (WiringFileError, GraphError, OSError) as err:
        raise AnalyzeError(str(err)) from None
    message = unchosen_wiring(run)
    if message:
        raise AnalyzeError(message)
    history_name = run.wiring_file("history", ".pt")
    history = run.history if run.history is not None and len(run.history) else None
    final, final_name = run.final, run.wiring_file("wiring", ".graphml")
    if final is None and history is not None:
        final, final_name = history.frame(-1), f"{history_name} snapshot {len(history) - 1}"
    if final is None:
        raise AnalyzeError(f"run directory {path} has neither wiring.graphml nor a history.pt with snapshots")
    initial, initial_name = run.initial, run.wiring_file("initial", ".graphml")
    if initial is None and history is not None:
        initial, initial_name = history.frame(0), f"{history_name} snapshot 0"
    report = {"source": str(path), "kind": "run", "wiring": final_name}
    report.update(wiring_numbers(final))
    if report["test_acc"] is None and report["step"] is not None:
        for record in run.metrics:  # the last epoch at or before the wiring's step
            step = _number(record.get("step"))
            if step is not None and step <= report["step"] and _number(record.get("test_acc")) is not None:
                report["test_acc"] = record["test_acc"]
    if initial is not None:
        before = wiring_numbers(initial)
        report["initial"] = {"wiring": initial_name, **{key: before[key] for key in (
            "step", "edges", "density", "acyclic", "depth", "generations", "dead", "level_edges")}}
        report["churn"] = churn(initial, final)
    return report


def _level_table(rows: list[list[int]]) -> list[str]:
    if not rows:
        return ["  (no edges)"]
    sources = sorted({s for s, _, _ in rows})
    targets = sorted({t for _, t, _ in rows})
    cell = {(s, t): c for s, t, c in rows}
    width = max(6, *(len(f"{c:,}") + 1 for c in cell.values()))
    lines = ["  src\\dst" + "".join(f"{t:>{width}}" for t in targets)]
    for s in sources:
        lines.append(f"  {s:>7}" + "".join(f"{cell[(s, t)]:>{width},}" if (s, t) in cell else f"{'.':>{width}}"
                                            for t in targets))
    return lines


def _density(report: dict) -> str:
    if report.get("density") is None:
        return "n/a (candidate count unknown)"
    return f"{100 * report['density']:.4g}% of {report['candidates']:,} candidates"


def format_report(report: dict) -> str:
    """The report as aligned text lines."""
    head = f"wiring report: {report['source']} ({report['wiring']}"
    if report.get("step") is not None:
        head += f", step {report['step']:,}"
    if report.get("test_acc") is not None:
        head += f", test acc {100 * report['test_acc']:.2f}%"
    lines = [head + ")"]
    roles = report["roles"]

    def row(name: str, value: str) -> None:
        lines.append(f"  {name:<14}{value}")

    row("nodes", f"{report['nodes']:,} ({roles.get('input', 0):,} input, {roles.get('hidden', 0):,} hidden, "
                 f"{roles.get('output', 0):,} output)")
    row("edges (k)", f"{report['edges']:,}")
    row("density", _density(report))
    if report["acyclic"]:
        row("depth", f"{report['depth']} (edges on the longest input-to-output path)")
        row("generations", f"{report['generations']} (topological generations)")
    else:
        c = report["cycles"]
        row("cycles", f"{c['cyclic_components']} cyclic components, largest {c['largest_component']} nodes, "
                      f"{c['self_loops']} self-loops (no depth: the wiring is cyclic)")
    dead = report["dead_nodes"]
    shown = ", ".join(map(str, dead[:12])) + (", ..." if len(dead) > 12 else "")
    row("dead nodes", f"{report['dead']:,} (on no input-to-output path)" + (f": {shown}" if dead else ""))
    d = report["degree"]
    row("in-degree", f"mean {d['in_mean']:.2f}, min {d['in_min']}, max {d['in_max']}, "
                     f"{d['zero_in']:,} without in-edges")
    row("out-degree", f"mean {d['out_mean']:.2f}, min {d['out_min']}, max {d['out_max']}, "
                      f"{d['zero_out']:,} without out-edges")
    lines.append("  level-to-level edges (rows: source level, columns: target level)")
    lines.extend("  " + line for line in _level_table(report["level_edges"]))
    initial = report.get("initial")
    if initial is not None:
        ch = report["churn"]
        step = "" if initial.get("step") is None else f", step {initial['step']:,}"
        lines.append(f"  compared with the initial wiring ({initial['wiring']}{step})")
        row("churn", f"+{ch['added']:,} added, -{ch['removed']:,} removed, {ch['kept']:,} kept")
        row("edges (k)", f"{initial['edges']:,} -> {report['edges']:,}")
        if initial["acyclic"] and report["acyclic"]:
            row("depth", f"{initial['depth']} -> {report['depth']}")
        row("dead nodes", f"{initial['dead']:,} -> {report['dead']:,}")
    return "\n".join(lines)


PROG = "python -m wiring.analyze"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m wiring.analyze: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG,
                     description="Report the topology of a wiring (run directory or GraphML file).")
    parser.add_argument("source", metavar="RUN_DIR|FILE.graphml", help="run directory or GraphML file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--wiring", metavar="NAME", default=None, help=WIRING_OPTION_HELP)
    args = parser.parse_args(argv)
    report = analyze(args.source, args.wiring)
    print(json.dumps(report) if args.json else format_report(report), flush=True)   # a broken pipe: run_cli
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
