"""How one run's learned wiring differs from another's at the same budget (e.g. DNW vs fixed random).

Contract: :func:`compare_runs` reads the final wiring of two run directories
(``wiring.graphml``, else the last ``history.pt`` snapshot) over the SAME nodes
(equal ``level`` and ``role``; else :class:`~viz.render.UsageError`) and draws ONE
figure of :data:`PANELS` axes (no colorbars, so ``len(fig.axes) == 3``):

1. ``level pairs A - B``: per (source column, target column) of the layout
   (:func:`wiring.picture.groups`: a dynamic wiring's roles), named as every
   picture's ticks name them (``in``, ``1`` ..., ``out``), the real edges of A minus those of B, an
   annotated heatmap (blue: A has more, red: B has more), each cell also giving
   A's count;
2. ``in-degree per level``: the mean in-degree of the nodes of each column, A
   and B side by side, with each column's dead nodes (on no input-to-output path);
3. ``output in-degree``: the histograms of the in-degree of the output nodes, A
   and B, with their means.

:func:`pair_difference` and :func:`column_in_degree` are the numbers behind
panels 1 and 2. The title names both runs, their mode, k and test accuracy
(different budgets are allowed and said in the title).

CLI::

    python -m viz.compare RUN_A RUN_B [-o compare.png|.svg|.pdf] [--size W H] [--dpi N] [--wiring NAME]

User mistakes exit with status 2 and one line on stderr.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from viz.cli import UsageError, add_figure_options, add_wiring_option, check_pixels, output_path, write_figure
from viz.layout import is_dynamic
from viz.render import dead_of, new_figure, save_figure
from viz.sources import final_wiring, load_run_dir, wiring_info
from viz.style import FORMATS
from wiring.cli import ArgumentParser, die, run_cli
from wiring.graph import OUTPUT, Wiring
from wiring.io import RunData
from wiring.modes import mode_label
from wiring.picture import group_names, groups
from wiring.lazy import lazy_module

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

__all__ = ["PANELS", "pair_counts", "pair_difference", "column_in_degree", "compare_runs", "main"]

PANELS = ("level pairs A - B", "in-degree per level", "output in-degree")
A_COLOUR, B_COLOUR = "#1f5fbf", "#9a9a9a"


def _column_index(wiring: Wiring) -> np.ndarray:
    raw = groups(wiring.level, wiring.role, dynamic=is_dynamic(wiring.level, wiring.attrs))
    return np.unique(raw, return_inverse=True)[1] if raw.size else raw


def pair_counts(wiring: Wiring) -> np.ndarray:
    """``M[s, t]``: real edges from layout column ``s`` to column ``t`` (columns
    numbered 0..C-1 in layout order: inputs, levels, outputs).

    >>> from wiring.graph import static_graph
    >>> g = static_graph([2, 2, 1])
    >>> w = Wiring(g.edge_index, torch.ones(8), g.level, g.role, torch.tensor([1, 1, 0, 0, 1, 0, 1, 1]).bool())
    >>> pair_counts(w).tolist()
    [[0, 2, 1], [0, 0, 2], [0, 0, 0]]
    """
    real = wiring.real_edges()
    col = _column_index(real)
    c = int(col.max()) + 1 if col.size else 1
    ei = real.edge_index.long().cpu().numpy().reshape(2, -1)
    return np.bincount(col[ei[0]] * c + col[ei[1]], minlength=c * c).reshape(c, c)


def pair_difference(a: Wiring, b: Wiring) -> np.ndarray:
    """``pair_counts(a) - pair_counts(b)`` (the two must share their nodes)."""
    return pair_counts(a) - pair_counts(b)


def in_degree(wiring: Wiring) -> np.ndarray:
    """Real in-edges per node ``[N]``."""
    real = wiring.real_edges()
    return torch.bincount(real.edge_index[1].long(), minlength=real.num_nodes).numpy()


def column_in_degree(wiring: Wiring) -> tuple[np.ndarray, np.ndarray]:
    """``(mean in-degree [C], dead nodes [C])`` per layout column (inputs: 0)."""
    real = wiring.real_edges()
    col = _column_index(real)
    c = int(col.max()) + 1 if col.size else 1
    deg = in_degree(wiring).astype(np.float64)
    sizes = np.bincount(col, minlength=c)
    mean = np.bincount(col, weights=deg, minlength=c) / np.maximum(sizes, 1)
    dead = np.array(sorted(dead_of(real)), dtype=np.int64)
    return mean, np.bincount(col[dead], minlength=c) if dead.size else np.zeros(c, dtype=np.int64)


def _label(run: RunData, wiring: Wiring) -> tuple[str, str]:
    """(name, ``mode · k · test acc``) of a run."""
    config = run.config or {}
    mode = (wiring.attrs or {}).get("mode") or config.get("mode") or "?"
    info = wiring_info(wiring, run.metrics)
    acc = "test acc n/a" if info["test_acc"] is None else f"test acc {100 * info['test_acc']:.1f}%"
    return run.path.resolve().name or str(run.path), f"{mode_label(str(mode))} · k = {info['k']:,} · {acc}"


def compare_runs(run_a: RunData, run_b: RunData, path: str | os.PathLike | None = None, *,
                 size: Sequence[float] = (15.0, 5.2), dpi: int = 100) -> Figure:
    """The comparison figure of two runs (module docstring); with ``path`` also saved."""
    a, b = final_wiring(run_a), final_wiring(run_b)
    for run, w in ((run_a, a), (run_b, b)):
        if w is None:
            raise UsageError(f"run directory {run.path} has neither wiring.graphml nor a history.pt with snapshots")
    if a.num_nodes != b.num_nodes or not torch.equal(a.level.long(), b.level.long()) \
            or not torch.equal(a.role.long(), b.role.long()):
        raise UsageError(f"the runs have different nodes ({a.num_nodes:,} vs {b.num_nodes:,} nodes, or other levels "
                         f"or roles): compare two runs of one graph")
    names = group_names(a.level, a.role, dynamic=is_dynamic(a.level, a.attrs), short=True)   # ticks: in, 1, .., out
    (name_a, what_a), (name_b, what_b) = _label(run_a, a), _label(run_b, b)
    fig = new_figure(size, dpi)
    axes = [fig.add_axes(box) for box in ((0.04, 0.11, 0.30, 0.68), (0.42, 0.11, 0.26, 0.68),
                                          (0.73, 0.11, 0.25, 0.68))]
    ka, kb = a.real_edges().num_edges, b.real_edges().num_edges
    budget = f"the same budget, k = {ka:,}" if ka == kb else f"DIFFERENT budgets: k = {ka:,} vs {kb:,}"
    fig.suptitle(f"A: {name_a} ({what_a})   vs   B: {name_b} ({what_b})\n"
                 f"how A's wiring differs from B's at {budget}", fontsize=11, parse_math=False)
    _pairs(axes[0], pair_counts(a), pair_counts(b), names)
    _columns(axes[1], a, b, names)
    _outputs(axes[2], a, b)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def _pairs(ax, ma: np.ndarray, mb: np.ndarray, names: Sequence[str]) -> None:
    diff = ma - mb
    c = len(names)
    used = (ma + mb) > 0
    limit = max(int(np.abs(diff[used]).max(initial=0)), 1)
    shown = np.where(used, diff, np.nan)
    ax.imshow(shown, cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
    for s in range(c):
        for t in range(c):
            if used[s, t]:
                d = int(diff[s, t])
                dark = abs(d) > 0.6 * limit
                ax.text(t, s, f"{d:+,}\n({int(ma[s, t]):,})", ha="center", va="center", fontsize=8,
                        color="white" if dark else "#111111")
    ax.set_xticks(range(c), names, fontsize=8)
    ax.set_yticks(range(c), names, fontsize=8)
    ax.set_xlabel("target level", fontsize=9)
    ax.set_ylabel("source level", fontsize=9)
    ax.set_title("real edges per level pair: A − B (A's count)\nblue: A has more, red: B has more", fontsize=9.5)


def _columns(ax, a: Wiring, b: Wiring, names: Sequence[str]) -> None:
    (mean_a, dead_a), (mean_b, dead_b) = column_in_degree(a), column_in_degree(b)
    x = np.arange(len(names))
    ax.bar(x - 0.2, mean_a, width=0.4, color=A_COLOUR, label="A")
    ax.bar(x + 0.2, mean_b, width=0.4, color=B_COLOUR, label="B")
    top = max(float(mean_a.max(initial=0)), float(mean_b.max(initial=0)), 1.0)
    for i in x:
        if dead_a[i] or dead_b[i]:
            ax.text(i, max(mean_a[i], mean_b[i]) + 0.03 * top, f"dead\n{int(dead_a[i])} | {int(dead_b[i])}",
                    ha="center", va="bottom", fontsize=7.5, color="#333333")
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_xlabel("level", fontsize=9)
    ax.set_ylabel("mean in-degree (real edges)", fontsize=9)
    ax.set_title("mean in-degree per level; dead nodes A | B", fontsize=9.5)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def _outputs(ax, a: Wiring, b: Wiring) -> None:
    degrees = []
    for w in (a, b):
        degrees.append(in_degree(w)[w.role.numpy() == OUTPUT])
    if not degrees[0].size:
        ax.text(0.5, 0.5, "no output nodes", ha="center", va="center", transform=ax.transAxes, color="#777777")
        return
    hi = int(max(d.max(initial=0) for d in degrees))
    bins = np.arange(-0.5, hi + 1.5, max(1, int(np.ceil((hi + 1) / 30))))
    for d, colour, name in ((degrees[0], A_COLOUR, "A"), (degrees[1], B_COLOUR, "B")):
        ax.hist(d, bins=bins, histtype="stepfilled" if name == "B" else "step", color=colour,
                alpha=0.6 if name == "B" else 1.0, lw=1.8, label=f"{name}: mean {d.mean():.1f}, "
                                                                  f"{int((d == 0).sum())} with none")
    ax.set_xlabel("in-degree of an output node", fontsize=9)
    ax.set_ylabel("output nodes", fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"in-degree of the {degrees[0].size:,} output nodes", fontsize=9.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


PROG = "python -m viz.compare"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m viz.compare: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG,
                            description="How run A's learned wiring differs from run B's (e.g. DNW vs a fixed "
                                        "random graph at the same budget): level-pair edge counts A - B, "
                                        "in-degree per level, output in-degree.")
    parser.add_argument("run_a", metavar="RUN_A", help="run directory (e.g. --mode dnw)")
    parser.add_argument("run_b", metavar="RUN_B", help="run directory of the same graph (e.g. --mode fixed)")
    parser.add_argument("-o", "--output", default="compare.png",
                        help="output file: .png, .svg or .pdf (default compare.png)")
    add_figure_options(parser, (15.0, 5.2), 100)
    add_wiring_option(parser)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        out, _ = output_path(args.output, FORMATS)
        check_pixels(args.size, args.dpi, 20000)
        runs = []
        for path in (args.run_a, args.run_b):
            if not os.path.isdir(path):
                what = "is not a directory" if os.path.exists(path) else "does not exist"
                raise UsageError(f"run directory {path} {what}")
            runs.append(load_run_dir(path, args.wiring))
        for run in runs:
            if final_wiring(run) is None:
                raise UsageError(f"run directory {run.path} has neither wiring.graphml nor a history.pt "
                                 f"with snapshots")
        a, b = (final_wiring(r) for r in runs)
        if not (a.num_nodes == b.num_nodes and torch.equal(a.level.long(), b.level.long())
                and torch.equal(a.role.long(), b.role.long())):
            raise UsageError(f"the runs have different nodes ({a.num_nodes:,} vs {b.num_nodes:,} nodes, or other "
                             f"levels or roles): compare two runs of one graph")
    except UsageError as err:
        die(prog, str(err))
    return write_figure(prog, out, lambda: compare_runs(runs[0], runs[1], out, size=args.size, dpi=args.dpi))


if __name__ == "__main__":
    raise SystemExit(main())
