"""Summary plots of a run: training curves, churn, degrees, level-to-level connectivity.

Contract: :func:`plot_run` builds ONE figure of :data:`PANELS` axes (no
colorbars, so ``len(fig.axes) == len(PANELS)``):

1. ``loss``: training loss and test loss per epoch;
2. ``accuracy``: train and test accuracy per epoch;
3. ``churn``: edges swapped per epoch (``swapped`` in ``metrics.jsonl``);
4. ``in-degree``: histograms of the in-degree of non-input nodes, start vs end;
5. ``levels start`` and 6. ``levels end``: heatmaps of the number of edges per
   (source level, target level), from :func:`wiring.topology.level_edges`,
   on one colour scale, with the share of edges that skip a level; the end
   panel also prints each cell's change since the start. The ticks name the
   levels as every picture does (``in``, ``1`` ..., ``out``: :func:`level_ticks`). A
   dynamic wiring has one level: these panels count its role pairs instead
   (:func:`role_matrix`; ``in``, ``hidden``, ``out``).

Start is ``initial.graphml`` or the first history snapshot, end is
``wiring.graphml`` or the last one. Missing data leaves a panel with a note.

CLI::

    python -m viz.plots RUN_DIR|FILE.graphml [-o plots.png|.svg|.pdf] [--size W H] [--dpi N]

A GraphML file is one wiring and no training: its in-degrees and level pairs are
drawn (as the end), the training panels say there are no metrics.

User mistakes exit with status 2 and one line on stderr.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from viz.cli import UsageError, add_figure_options, add_wiring_option, check_pixels, output_path, write_figure
from viz.layout import is_dynamic
from viz.render import new_figure, save_figure
from viz.sources import final_wiring, initial_wiring, load_run_dir, wiring_info
from viz.style import FORMATS, plain
from wiring.cli import ArgumentParser, die, run_cli
from wiring.graph import GraphError, Wiring
from wiring.io import RunData, WiringFileError, read_wiring_file, to_networkx, unchosen_wiring
from wiring.picture import group_names, groups, level_name
from wiring.topology import level_edges
from wiring.lazy import lazy_module

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

__all__ = ["PANELS", "level_matrix", "level_ticks", "role_matrix", "in_degrees", "skip_fraction", "plot_run", "main"]

PANELS = ("loss", "accuracy", "churn", "in-degree", "levels start", "levels end")
START, END = "#9a9a9a", "#1f5fbf"


def level_matrix(wiring: Wiring, num_levels: int | None = None) -> np.ndarray:
    """``M[s, t]``: the number of real edges from level ``s`` to level ``t``
    (:func:`wiring.topology.level_edges`), ``num_levels`` square (default: the
    wiring's levels)."""
    counts = level_edges(to_networkx(wiring.real_edges()))
    size = int(wiring.level.max()) + 1 if wiring.num_nodes else 1
    size = max(size, num_levels or 0)
    m = np.zeros((size, size), dtype=np.int64)
    for (s, t), c in counts.items():
        m[s, t] = c
    return m


def level_ticks(wiring: Wiring | None, num_levels: int) -> list[str]:
    """The tick label of each of ``num_levels`` levels: the short names of every picture
    (:func:`wiring.picture.level_name`: ``in``, ``1`` ..., ``out``)."""
    level = wiring.level.long().numpy() if wiring is not None else np.zeros(0, dtype=np.int64)
    role = wiring.role.long().numpy() if wiring is not None else np.zeros(0, dtype=np.int64)
    return [level_name(v, role[level == v], short=True) for v in range(num_levels)]


def role_matrix(wiring: Wiring) -> np.ndarray:
    """``M[s, t]``: the real edges from role group ``s`` to ``t`` of a dynamic wiring
    (:func:`wiring.picture.groups`: inputs, hidden, outputs, those present), for its one level."""
    real = wiring.real_edges()
    group = groups(real.level, real.role, dynamic=True)
    codes = np.unique(group)
    index = np.searchsorted(codes, group)
    ei = real.edge_index.long().numpy().reshape(2, -1)
    m = np.zeros((max(codes.size, 1),) * 2, dtype=np.int64)
    np.add.at(m, (index[ei[0]], index[ei[1]]), 1)
    return m


def in_degrees(wiring: Wiring) -> np.ndarray:
    """In-degree (real edges) of every node that is not an input."""
    real = wiring.real_edges()
    deg = torch.bincount(real.edge_index[1], minlength=real.num_nodes)
    return deg[real.role != 0].numpy()


def _series(metrics: Sequence[Mapping], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for i, record in enumerate(metrics):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            epoch = record.get("epoch", i + 1)
            xs.append(epoch if isinstance(epoch, (int, float)) else i + 1)
            ys.append(float(value))
    return xs, ys


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _curves(ax, metrics: Sequence[Mapping], keys: Sequence[tuple[str, str]], title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    drawn = False
    for key, label in keys:
        xs, ys = _series(metrics, key)
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, lw=1.5, label=label)
            drawn = True
    if not drawn:
        _note(ax, "no metrics.jsonl records")
        return
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _churn(ax, metrics: Sequence[Mapping]) -> None:
    ax.set_title("churn: edges swapped per epoch", fontsize=10)
    xs, ys = _series(metrics, "swapped")
    if not xs:
        _note(ax, "no 'swapped' in metrics.jsonl")
        return
    ax.bar(xs, ys, color="#00a152", width=0.7)
    ks = _series(metrics, "edges")[1]
    if ks:
        ax.set_title(f"churn: edges swapped per epoch (of k = {int(ks[-1]):,})", fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("edges swapped")
    ax.grid(alpha=0.3, axis="y")


def _degrees(ax, start: Wiring | None, end: Wiring | None) -> None:
    ax.set_title("in-degree of hidden and output nodes", fontsize=10)
    present = [(w, label, colour) for w, label, colour in ((start, "start", START), (end, "end", END))
               if w is not None]
    if not present:
        _note(ax, "no wiring")
        return
    degrees = [in_degrees(w) for w, _, _ in present]
    top = max((int(d.max()) for d in degrees if d.size), default=0)
    bins = np.arange(-0.5, top + 1.5, max(1, (top + 1) // 40))
    for d, (_, label, colour) in zip(degrees, present):
        ax.hist(d, bins=bins, histtype="step" if label == "start" else "stepfilled",
                color=colour, alpha=1.0 if label == "start" else 0.45, lw=1.5,
                label=f"{label}: mean {d.mean():.1f}, max {int(d.max()) if d.size else 0}")
    ax.set_xlabel("in-degree")
    ax.set_ylabel("nodes")
    ax.legend(fontsize=8)


def skip_fraction(matrix: np.ndarray) -> float:
    """Fraction of the edges that skip at least one level (target level > source + 1)."""
    total = int(matrix.sum())
    s, t = np.indices(matrix.shape)
    return float(matrix[t > s + 1].sum()) / total if total else 0.0


def _heatmap(ax, matrix: np.ndarray | None, title: str, vmax: float, ticks: Sequence[str],
             before: np.ndarray | None = None, by: str = "level") -> None:
    ax.set_title(title, fontsize=10)
    if matrix is None:
        _note(ax, "no wiring")
        return
    if matrix.shape[0] > 1 and by == "level":
        ax.set_title(f"{title}: {100 * skip_fraction(matrix):.1f}% skip a level", fontsize=10)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(vmax, 1), origin="upper")
    n = matrix.shape[0]
    ax.set_xticks(range(n), ticks[:n])
    ax.set_yticks(range(n), ticks[:n])
    ax.set_xlabel(f"target {by}")
    ax.set_ylabel(f"source {by}")
    if n <= 12:
        for (s, t), c in np.ndenumerate(matrix):
            delta = None if before is None else int(c - before[s, t])
            if c or delta:
                text = f"{c:,}" if not delta else f"{c:,}\n{delta:+,}"
                ax.text(t, s, text, ha="center", va="center", fontsize=7 if n <= 8 else 5,
                        color="white" if c > 0.6 * vmax else "#222222")


def plot_run(run: RunData, path: str | os.PathLike | None = None, *, size: Sequence[float] = (14.0, 8.0),
             dpi: int = 100, title: str | None = None) -> Figure:
    """The figure of :data:`PANELS` for ``run`` (see the module docstring);
    saved to ``path`` (.png/.svg/.pdf) atomically when given."""
    fig = new_figure(size, dpi)
    axes = fig.subplots(2, 3)
    ax = axes.ravel()
    metrics = run.metrics
    start, end = initial_wiring(run), final_wiring(run)
    _curves(ax[0], metrics, [("loss", "train loss"), ("test_loss", "test loss")], "loss", "loss")
    _curves(ax[1], metrics, [("train_acc", "train"), ("test_acc", "test")], "accuracy", "accuracy")
    _churn(ax[2], metrics)
    _degrees(ax[3], start, end)
    ref = end if end is not None else start
    if ref is not None and is_dynamic(ref.level, ref.attrs):   # one level: the pairs of roles instead
        by, ticks = "role", group_names(ref.level, ref.role, dynamic=True, short=True)
        m_start, m_end = (role_matrix(w) if w is not None else None for w in (start, end))
    else:
        by = "level"
        levels = max((int(w.level.max()) + 1 for w in (start, end) if w is not None and w.num_nodes), default=1)
        m_start = level_matrix(start, levels) if start is not None else None
        m_end = level_matrix(end, levels) if end is not None else None
        ticks = level_ticks(ref, levels)
    vmax = max((float(m.max()) for m in (m_start, m_end) if m is not None), default=1.0)
    step = lambda w: f" (step {w.attrs['step']:,})" if w is not None and _is_int(w.attrs.get("step")) else ""
    _heatmap(ax[4], m_start, f"{by} pairs, start" + step(start), vmax, ticks, by=by)
    _heatmap(ax[5], m_end, f"{by} pairs, end" + step(end), vmax, ticks, before=m_start, by=by)
    head = title if title is not None else plain(run.path.name)
    if end is not None:
        info = wiring_info(end, metrics)
        density = "density n/a" if info["density"] is None else f"density {100 * info['density']:.3g}%"
        head += f"  ·  k = {info['k']:,} edges  ·  {density}"
        if info["test_acc"] is not None:
            head += f"  ·  final test acc {100 * info['test_acc']:.1f}%"
    fig.suptitle(head, fontsize=12)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.9, wspace=0.28, hspace=0.38)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def graphml_run(path: str | os.PathLike) -> RunData:
    """A GraphML file as a run of one wiring and no metrics: the plots of a single wiring
    (its in-degrees and level pairs) are drawn, the training panels say there is nothing."""
    try:
        return RunData(Path(path), final=read_wiring_file(path))
    except (WiringFileError, GraphError) as err:
        raise UsageError(str(err)) from None


PROG = "python -m viz.plots"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m viz.plots: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG,
                            description="Training curves, churn, degrees and level connectivity of a run "
                                        "(of a GraphML file: its degrees and level pairs).")
    parser.add_argument("run_dir", metavar="RUN_DIR|FILE.graphml", help="run directory, or a GraphML file")
    parser.add_argument("-o", "--output", default="plots.png", help="output file: .png, .svg or .pdf "
                                                                    "(default plots.png)")
    add_figure_options(parser, (14.0, 8.0), 100)
    add_wiring_option(parser)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        out, _ = output_path(args.output, FORMATS)
        check_pixels(args.size, args.dpi, 20000)
        if not os.path.exists(args.run_dir):
            raise UsageError(f"{args.run_dir} does not exist (expected a run directory or a .graphml file)")
        if os.path.isdir(args.run_dir):
            run = load_run_dir(args.run_dir, args.wiring, need_wiring=False)
        elif args.wiring is not None:
            raise UsageError(f"--wiring applies to run directories, not to the file {args.run_dir}")
        else:
            run = graphml_run(args.run_dir)
    except UsageError as err:
        die(prog, str(err))
    if unchosen_wiring(run):
        print(f"note: {args.run_dir} holds {len(run.wirings)} wirings; --wiring NAME "
              f"({', '.join(run.wirings)}) adds that wiring's panels", file=sys.stderr)
    return write_figure(prog, out, lambda: plot_run(run, out, size=args.size, dpi=args.dpi))


if __name__ == "__main__":
    raise SystemExit(main())
