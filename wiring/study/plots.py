"""The plots of a study report: accuracy vs edges (log x), DNW minus the random graph vs edges
with error bars, and the per-epoch curves at ``curve_edges``; PNG files beside the report.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from wiring.files import atomic_path
from wiring.modes import MODES
from wiring.study.results import mean_std, paired_differences
from wiring.study.spec import ALL_REAL, Study

MODE_LABELS = {name: cls.label for name, cls in MODES.items()}                 # plots


def _save(fig, path: Path) -> None:
    """Write ``fig`` as ``path`` atomically (:func:`wiring.files.atomic_path`: a full disk keeps the old plot)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, metadata={"Software": None})

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


def plot_study(study: Study, rows: list[dict], report: Path) -> list[tuple[str, Path]]:
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
                    m, s = mean_std(accs)
                    ax.axhline(m, color=colors[mode], ls="--", label=MODE_LABELS.get(mode, mode))
                    if s:
                        ax.axhspan(m - s, m + s, color=colors[mode], alpha=0.12)
                continue
            xs, ys, es = [], [], []
            for edges in study.budgets:
                accs = [100 * r["test_acc"] for r in done if r["setting"] == setting and r["mode"] == mode
                        and r["edges"] == str(edges)]
                if accs:
                    m, s = mean_std(accs)
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
    _save(fig, path)
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
    _save(fig, path)
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
        _save(fig, path)
        plt.close(fig)
        made.append(("DNW minus the random graph per budget", path))
    return made
