"""Draw one wiring: nodes in the fixed layout of :mod:`viz.layout`, real edges as lines.

Contract:

* :func:`render_wiring` draws a :class:`~wiring.graph.Wiring` (its real edges
  only) into a new figure, or into ``ax``, and returns the figure; with ``path``
  it also writes a ``.png``, ``.svg`` or ``.pdf`` atomically, ``size`` x ``dpi``
  pixels exactly (no tight bounding box).
* All edges are ONE :class:`~matplotlib.collections.LineCollection`: blue for a
  positive weight, red for a negative one; the strongest edges are drawn last.
  Two styles: ``weight`` (opacity and width growing with ``|weight|``, the overall
  opacity falling with the number of edges; 5-node graphs get thick lines, big
  markers and node labels) and ``ranked`` (opacity and width from the RANK of
  ``|w|``, :mod:`wiring.picture`: the ``--strong`` (250) strongest stand out, the
  rest fade to a haze). ``auto``, the default, is ranked from
  :data:`RANKED_FROM` (2,000) edges. ``--top N`` draws only the N strongest.
* Nodes: input squares, hidden circles, output diamonds, each column on a shaded
  band; dead nodes (:func:`wiring.topology.dead_nodes`, on no input-to-output
  path) hollow grey, and in wirings of more than 40 nodes also a dark dash
  across their column. A dynamic (recurrent) wiring is drawn by role: inputs a
  column left, the hidden nodes on a circle, outputs a column right, each group
  labelled (``inputs (N)``, ``hidden (N)``, ``outputs (N)``), edges as chords bent
  to the right of their direction with arrowheads on the strongest (all up to
  :data:`ARROW_MAX_EDGES` edges; ranked style: the ``--strong`` strongest); its
  adjacency view's blocks are the roles.
* Two more views that scale to any size (``--view``): ``flow`` (one band per
  level pair, its width the real edges, :func:`draw_flow`) and ``adjacency``
  (targets x sources, real edges as pixels, level blocks outlined and labelled
  with their edge counts, :func:`draw_adjacency`).
* :class:`WiringDrawing` holds those artists and updates them in place; the
  animation reuses it frame after frame.

CLI::

    python -m viz.render RUN_DIR|FILE.graphml [-o wiring.png|.svg|.pdf] [--size W H] [--dpi N]
                         [--palette] [--view graph|flow|adjacency] [--style auto|ranked|weight]
                         [--top N] [--strong N]

A run directory gives its final wiring (``wiring.graphml``, else the last
``history.pt`` snapshot). User mistakes exit with status 2 and one line on stderr.

Shared by the viz CLIs (``viz.animate`` and ``viz.plots`` import them from here):

* what to draw, read through :mod:`wiring.io` only: :func:`load_source` (a run
  directory's final wiring or a GraphML file), :func:`viz.sources.final_wiring` /
  :func:`viz.sources.initial_wiring` (``wiring.graphml`` / ``initial.graphml``, else the last /
  first ``history.pt`` snapshot), :func:`viz.sources.metrics_at` (the last epoch record whose
  ``step`` is at most a step), :func:`viz.sources.epoch_of` (the epoch a step lies in),
  :func:`wiring_info` and :func:`stats_line`;
* command-line plumbing: :class:`UsageError` (a user mistake), an
  :class:`ArgumentParser` whose errors are one line and exit 2, :func:`die`,
  :func:`output_path` (checked extension and folder) and :func:`wiring.io.atomic_path`
  (write to a temporary file next to the target, rename when complete).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from viz.cli import (
    UsageError,
    add_figure_options,
    add_wiring_option,
    check_pixels,
    output_path,
    positive_int,
    write_figure,
)
from viz.layout import is_dynamic, node_positions
from viz.sources import load_source, stats_line, wiring_info
from viz.style import (
    ARC_HEIGHT,
    ARC_POINTS,
    ARROW_AT,
    ARROW_MAX_EDGES,
    ARROW_SIZE,
    BANDS,
    CHORD_BEND,
    DEAD_EDGE,
    DEAD_FACE,
    DEAD_MARK,
    FLOW_NEEDS_LEVELS,
    FORMATS,
    LABEL_MAX_NODES,
    LOOP_RADIUS,
    NEGATIVE,
    POSITIVE,
    RANKED_FROM,
    REF_PIXELS,
    ROLE_STYLE,
    STYLES,
    VIEWS,
    plain,
)
from wiring.cli import ArgumentParser, die, run_cli
from wiring.graph import Wiring
from wiring.io import (
    atomic_path,
    to_networkx,
)
from wiring.picture import (
    RING_CENTRE,
    STRONG_EDGES,
    group_names,
    groups,
    level_name,
    level_names,
    ranked_style,
)
from wiring.topology import dead_nodes
from wiring.lazy import lazy_module

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

__all__ = [
    "STRONG_EDGES", "weight_range", "edge_style", "resolve_style", "strongest", "dead_of", "WiringDrawing",
    "column_names", "draw_flow", "draw_adjacency", "new_figure", "save_figure", "render_wiring", "main",
]


# ----------------------------------------------------------------------------- sources


# ----------------------------------------------------------------------------- drawing


def _edge_params(n_edges: float) -> tuple[float, float, float, float]:
    """(alpha_min, alpha_max, width_min, width_max) for ``n_edges`` lines on an
    axes of :data:`REF_PIXELS` pixels."""
    n = max(float(n_edges), 1.0)
    a_max = float(np.clip(20.0 / np.sqrt(n), 0.13, 0.95))
    w_max = float(np.clip(60.0 / np.sqrt(n), 0.5, 3.5))
    return float(np.clip(2.0 / np.sqrt(n), 0.012, 0.35)), a_max, 0.3 * w_max, w_max


def _crowding(ax, n_edges: int) -> float:
    """``n_edges`` scaled to an axes of :data:`REF_PIXELS` pixels: the same edges
    on a smaller picture overlap more, so they are drawn fainter."""
    width, height = ax.figure.get_size_inches() * ax.figure.dpi
    box = ax.get_position()
    pixels = max(width * box.width * height * box.height, 1.0)
    return max(int(n_edges), 1) * REF_PIXELS / pixels


def weight_range(weights: Iterable[np.ndarray]) -> tuple[float, float]:
    """``(lo, hi)``: the ``|weight|`` drawn faintest and the one drawn strongest,
    the 2nd and 98th percentiles (real DNW edges all lie above a threshold, so
    strength is shown relative to the weakest real edge). ``(0, 1)`` if none."""
    arrays = [np.abs(np.asarray(w, dtype=np.float64)).ravel() for w in weights]
    values = np.concatenate(arrays) if arrays else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [2, 98]))
    return lo, hi


def edge_style(weight: np.ndarray, *, n_edges: int | None = None,
               scale: tuple[float, float] | None = None,
               positive: str = POSITIVE, negative: str = NEGATIVE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, rgba [E, 4], widths [E])`` for edges of these weights: colour by
    sign, opacity and width growing with ``|weight|`` from ``scale = (lo, hi)``
    (default :func:`weight_range` of ``weight``; all strongest when ``hi <= lo``),
    the general opacity falling with ``n_edges`` (default ``len(weight)``).
    ``order`` sorts the edges weakest first, the order to draw them in."""
    weight = np.nan_to_num(np.asarray(weight, dtype=np.float64).ravel())
    a_min, a_max, w_min, w_max = _edge_params(len(weight) if n_edges is None else n_edges)
    lo, hi = weight_range([weight]) if scale is None else scale
    if hi - lo > 1e-12 * max(abs(hi), 1.0):
        s = np.clip((np.abs(weight) - lo) / (hi - lo), 0.0, 1.0)
    else:
        s = np.ones_like(weight)
    rgba = np.where((weight >= 0)[:, None], np.array(to_rgba(positive)), np.array(to_rgba(negative)))
    rgba[:, 3] = a_min + (a_max - a_min) * s
    widths = w_min + (w_max - w_min) * s
    order = np.argsort(np.abs(weight), kind="stable")
    return order, rgba, widths


def resolve_style(style: str, n_edges: int) -> str:
    """``"ranked"`` or ``"weight"``: ``"auto"`` is ranked from :data:`RANKED_FROM` edges.

    >>> resolve_style("auto", 12000), resolve_style("auto", 40), resolve_style("ranked", 3)
    ('ranked', 'weight', 'ranked')
    """
    if style not in STYLES:
        raise ValueError(f"unknown edge style {style!r}: use one of {', '.join(STYLES)}")
    if style == "auto":
        return "ranked" if n_edges >= RANKED_FROM else "weight"
    return style


def strongest(wiring: Wiring, top: int) -> Wiring:
    """The real edges of ``wiring`` cut to the ``top`` largest ``|w|`` (ties: the lower
    edge id first); nodes and attributes unchanged."""
    real = wiring.real_edges()
    if top >= real.num_edges:
        return real
    order = torch.argsort(-real.weight.detach().abs().double(), stable=True)[:top]
    keep = torch.sort(order).values
    return Wiring(real.edge_index[:, keep], real.weight[keep], real.level, real.role, None, dict(real.attrs or {}))


def dead_of(wiring: Wiring) -> set:
    """Dead nodes of the real edges of ``wiring`` (:func:`wiring.topology.dead_nodes`)."""
    return dead_nodes(to_networkx(wiring.real_edges()))


class WiringDrawing:
    """The artists of one wiring picture on ``ax``: node scatters (one per role),
    ONE edge :class:`LineCollection`, optional node labels and column labels.

    The node positions are fixed at construction (from ``level``, ``role`` and
    ``attrs``); :meth:`set_edges` and :meth:`set_dead` change the picture in place.
    ``n_edges`` sets the general edge opacity; ``scale`` the ``(lo, hi)`` range of
    ``|weight|`` (None: per call, from the weights given; see :func:`edge_style`).
    ``style``: ``"weight"`` (opacity and width from ``|w|``, :func:`edge_style`) or
    ``"ranked"`` (from the rank of ``|w|``, the ``strong`` strongest stand out:
    :func:`wiring.picture.ranked_style`). In the layered layout an edge that skips
    columns is drawn as a shallow arc, so skip connections do not hide behind the
    edges between neighbouring columns; each column sits on a shaded band, and in
    wirings of more than :data:`LABEL_MAX_NODES` nodes a dead node also gets a
    dark dash across its column.
    """

    def __init__(self, ax, level: torch.Tensor, role: torch.Tensor, attrs: Mapping | None = None, *,
                 n_edges: int = 1, scale: tuple[float, float] | None = None, labels: bool | None = None,
                 column_labels: bool = True, style: str = "weight", strong: int = STRONG_EDGES) -> None:
        if style not in ("weight", "ranked"):
            raise ValueError(f"unknown edge style {style!r}: use 'weight' or 'ranked'")
        self.style = style
        self.strong = int(strong)
        self.ax = ax
        self.level = torch.as_tensor(level).long()
        self.role = torch.as_tensor(role).long().cpu().numpy()
        self.dynamic = is_dynamic(self.level, attrs)
        self.pos = node_positions(self.level, self.role, dynamic=self.dynamic)
        self.n_edges = _crowding(ax, n_edges)
        self.scale = scale
        n = len(self.pos)
        big = n <= LABEL_MAX_NODES
        self.node_size = float(np.clip(4000.0 / max(n, 1), 5.0, 260.0))
        sizes = np.full(n, self.node_size)
        if not self.dynamic and not big:  # keep the dots of a column apart: at most 80% of their spacing
            _, where, counts = np.unique(self.pos[:, 0], return_inverse=True, return_counts=True)
            height = ax.figure.get_size_inches()[1] * ax.get_position().height * 72.0  # points
            spacing = 0.8 * height / (1.25 * counts[where])
            sizes = np.minimum(np.maximum(self.node_size, 30.0), np.maximum(spacing, 1.2) ** 2)
        self.edges = LineCollection([], zorder=1, capstyle="round")
        ax.add_collection(self.edges)
        self.arrows = PolyCollection([], zorder=2, linewidths=0) if self.dynamic else None
        # arrowheads on the edges that stand out: the `strong` strongest (ranked), else up to ARROW_MAX_EDGES
        self.arrow_count = min(self.strong, ARROW_MAX_EDGES) if style == "ranked" else ARROW_MAX_EDGES
        self.arrows_on_all = int(n_edges) <= self.arrow_count
        if self.arrows is not None:
            ax.add_collection(self.arrows)
        self.roles: dict[int, tuple[np.ndarray, object]] = {}
        for code, (name, marker, colour) in ROLE_STYLE.items():
            ids = np.flatnonzero(self.role == code)
            if ids.size == 0:
                continue
            sc = ax.scatter(self.pos[ids, 0], self.pos[ids, 1], s=sizes[ids], marker=marker,
                            c=[colour] * ids.size, edgecolors=[colour] * ids.size,
                            linewidths=1.2 if big else 0.4, zorder=3)
            self.roles[code] = (ids, sc)
        self.dead_marks = None
        if not big:
            self.dead_marks = ax.scatter(np.zeros(0), np.zeros(0), marker="_", s=(8 if self.dynamic else 12) ** 2,
                                         c=DEAD_MARK, linewidths=1.3, zorder=3.5)
        self.dead: set = set()
        if labels if labels is not None else big:
            for i, (x, y) in enumerate(self.pos):
                ax.annotate(str(i), (x, y), xytext=(7, 6), textcoords="offset points", fontsize=7,
                            zorder=4, color="#222222")
        self._frame(column_labels)

    def _frame(self, column_labels: bool) -> None:
        ax = self.ax
        ax.set_axis_off()
        if self.dynamic:  # nodes by role: inputs | the circle of hidden nodes | outputs, each group named
            ax.set_aspect("equal")
            x = self.pos[:, 0] if len(self.pos) else np.array([RING_CENTRE[0]])
            ax.set_xlim(float(x.min()) - 0.12, float(x.max()) + 0.12)
            ax.set_ylim(-0.1, 1.16)
            if column_labels:
                group = groups(self.level, self.role, dynamic=True)
                for code, name in zip(np.unique(group), group_names(self.level, self.role, dynamic=True)):
                    ids = np.flatnonzero(group == code)
                    ax.text(float(self.pos[ids, 0].mean()), 1.06, f"{name} ({ids.size:,})", ha="center",
                            va="bottom", fontsize=7, color="#333333")
            return
        cols = np.unique(self.pos[:, 0]) if len(self.pos) else np.zeros(1)
        ax.set_xlim(float(cols.min()) - 0.25, float(cols.max()) + 0.25)
        if len(self.pos) > LABEL_MAX_NODES:
            for j, c in enumerate(cols):
                ax.add_patch(Rectangle((c - 0.045, -0.012), 0.09, 1.024, facecolor=BANDS[j % 2],
                                       edgecolor="none", zorder=0.5))
        top = 1.0 + ARC_HEIGHT * max(float(cols.max() - cols.min()) - 1.0, 0.0) / 2.0
        label_y = 1.0 + 0.5 * (top - 1.0) + 0.03  # the few longest arcs may pass behind the labels
        ax.set_ylim(-(top - 1.0) - 0.02, label_y + 0.06)
        if column_labels:
            for c in cols:
                ids = np.flatnonzero(self.pos[:, 0] == c)
                name = level_name(int(c), self.role[ids])
                ax.text(c, label_y, f"{name} ({ids.size:,})", ha="center", va="bottom", fontsize=7,
                        color="#333333")

    def set_edges(self, edge_index, weight) -> None:
        """Show these edges (``edge_index`` ``[2, E]``, ``weight`` ``[E]``)."""
        ei = np.asarray(torch.as_tensor(edge_index).long().cpu().numpy()).reshape(2, -1)
        w = torch.as_tensor(weight).detach().float().cpu().numpy().reshape(-1)
        if self.style == "ranked":
            order, rgba, widths = ranked_style(w, strong=self.strong, n_edges=self.n_edges)
        else:
            order, rgba, widths = edge_style(w, n_edges=self.n_edges, scale=self.scale)
        ei, rgba, widths = ei[:, order], rgba[order], widths[order]
        self.edges.set_segments(self.segments(ei))
        self.edges.set_color(rgba)
        self.edges.set_linewidth(widths)
        if self.arrows is not None:  # the direction of the strongest (last drawn) edges
            shown = -min(ei.shape[1], self.arrow_count)
            self.arrows.set_verts(self.arrowheads(ei[:, shown:], widths[shown:]) if shown else [])
            self.arrows.set_facecolor(rgba[shown:] if shown else "none")

    def _controls(self, edge_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, control, end) ``[E, 2]`` of each edge's quadratic Bezier curve."""
        a, b = self.pos[edge_index[0]], self.pos[edge_index[1]]
        control = (a + b) / 2.0
        if self.dynamic:  # bend to the right of the direction: u->v and v->u stay apart
            control += CHORD_BEND * np.stack([b[:, 1] - a[:, 1], a[:, 0] - b[:, 0]], axis=1)
        else:
            skip = np.maximum(np.abs(b[:, 0] - a[:, 0]) - 1.0, 0.0)
            sign = np.where((edge_index[0] + edge_index[1]) % 2 == 0, 1.0, -1.0)
            control[:, 1] += ARC_HEIGHT * skip * sign
        return a, control, b

    def segments(self, edge_index: np.ndarray) -> np.ndarray:
        """Polylines ``[E, ARC_POINTS, 2]`` of the edges. Layered layout: straight
        between neighbouring columns, a shallow arc when an edge skips columns,
        bulging up or down (by the parity of ``source + target``) more the more
        columns it skips. Dynamic layout: chords bent to the right of their
        direction, so that ``u -> v`` and ``v -> u`` are two curves; a self-loop
        is a small circle outside its node (away from the centre of the hidden nodes' circle)."""
        edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        a, control, b = self._controls(edge_index)
        t = np.linspace(0.0, 1.0, ARC_POINTS)[None, :, None]
        out = (1 - t) ** 2 * a[:, None] + 2 * (1 - t) * t * control[:, None] + t ** 2 * b[:, None]
        loops = np.flatnonzero(edge_index[0] == edge_index[1])
        if loops.size:
            centre = self.pos[edge_index[0, loops]]
            outward = centre - np.array(RING_CENTRE)
            outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
            angle = np.linspace(0.0, 2 * np.pi, ARC_POINTS)
            ring = np.stack([np.cos(angle), np.sin(angle)], axis=1) * LOOP_RADIUS
            out[loops] = (centre + LOOP_RADIUS * outward)[:, None, :] + ring[None]
        return out

    def arrowheads(self, edge_index: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Triangles ``[E, 3, 2]`` pointing along each edge just before its target
        (dynamic layout: the direction is not implied by the layout)."""
        edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        a, control, b = self._controls(edge_index)
        t = ARROW_AT
        tip = (1 - t) ** 2 * a + 2 * (1 - t) * t * control + t ** 2 * b
        tangent = 2 * (1 - t) * (control - a) + 2 * t * (b - control)
        tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        crowd = float(np.clip(np.sqrt(60.0 / max(edge_index.shape[1], 1)), 0.55, 1.0))  # many: smaller heads
        size = ARROW_SIZE * crowd * (0.6 + 0.4 * np.asarray(widths) / max(float(np.max(widths, initial=1.0)), 1e-9))
        base = tip - tangent * size[:, None]
        tri = np.stack([tip, base + normal * (0.5 * size)[:, None], base - normal * (0.5 * size)[:, None]], axis=1)
        tri[edge_index[0] == edge_index[1]] = np.nan  # no arrowhead on a self-loop
        return tri

    def set_dead(self, dead: Iterable[int]) -> None:
        """Draw the nodes in ``dead`` hollow grey, the others in their role colour."""
        dead = {int(i) for i in dead}
        self.dead = dead
        for code, (ids, sc) in self.roles.items():
            colour = to_rgba(ROLE_STYLE[code][2])
            is_dead = np.fromiter((int(i) in dead for i in ids), dtype=bool, count=ids.size)
            face = np.where(is_dead[:, None], np.array(to_rgba(DEAD_FACE)), np.array(colour))
            edge = np.where(is_dead[:, None], np.array(to_rgba(DEAD_EDGE)), np.array(colour))
            sc.set_facecolors(face)
            sc.set_edgecolors(edge)
        if self.dead_marks is not None:
            ids = np.array(sorted(dead), dtype=np.int64)
            self.dead_marks.set_offsets(self.pos[ids] if ids.size else np.zeros((0, 2)))

    def legend_handles(self, *, counts: bool = True) -> list:
        """Legend entries: the two weight signs (ranked style: the strongest and the
        faded rest), each role present, dead nodes."""
        if self.style == "ranked":
            handles = [Line2D([], [], color=POSITIVE, lw=2, label=f"w > 0, {self.strong:,} strongest |w| bold"),
                       Line2D([], [], color=NEGATIVE, lw=2, label="w < 0"),
                       Line2D([], [], color=POSITIVE, lw=0.6, alpha=0.35, label="weaker edges faded by rank")]
        else:
            handles = [Line2D([], [], color=POSITIVE, lw=2, label="weight > 0"),
                       Line2D([], [], color=NEGATIVE, lw=2, label="weight < 0")]
        size = 7
        for code, (ids, _) in self.roles.items():
            name, marker, colour = ROLE_STYLE[code]
            label = f"{name} ({ids.size:,})" if counts else name
            handles.append(Line2D([], [], ls="", marker=marker, color=colour, markersize=size, label=label))
        if self.arrows is not None:
            handles.append(Line2D([], [], ls="", marker=">", color="#555555", markersize=size,
                                  label="direction" if self.arrows_on_all else
                                  f"direction ({self.arrow_count:,} strongest)"))
        label = f"dead ({len(self.dead):,})" if counts else "dead (no input→output path)"
        if self.dead_marks is not None:
            handles.append(Line2D([], [], ls="", marker="_", color=DEAD_MARK, markersize=12, markeredgewidth=1.6,
                                  label=label))
        else:
            handles.append(Line2D([], [], ls="", marker="o", markerfacecolor=DEAD_FACE,
                                  markeredgecolor=DEAD_EDGE, markersize=size, label=label))
        return handles


def new_figure(size: Sequence[float], dpi: int) -> Figure:
    """A figure with an Agg canvas, outside pyplot (nothing global to leak)."""
    fig = Figure(figsize=tuple(size), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int | None = None,
                palette: bool = False) -> Path:
    """Write ``fig`` to ``path`` (.png, .svg or .pdf) atomically; returns the path.
    ``palette``: a PNG with 256 colours (Pillow's fast octree quantizer, no
    dithering), typically 3-4 times smaller for thousands of translucent edges."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown output extension {path.suffix!r}: use one of "
                         f"{', '.join('.' + f for f in FORMATS)}")
    if palette and fmt != "png":
        raise ValueError(f"a palette applies to .png files only, not {path.suffix!r}")
    with atomic_path(path) as tmp:
        if palette:
            from PIL import Image
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi or fig.dpi)
            buf.seek(0)
            with Image.open(buf) as im:
                quantized = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE,
                                                       dither=Image.Dither.NONE)
            quantized.save(tmp, format="PNG", optimize=True)
        else:
            fig.savefig(tmp, format=fmt, dpi=dpi or fig.dpi)
    return path


def column_names(level, role, *, short: bool = False) -> list[str]:
    """The name of each layout column (:func:`viz.layout.columns`), in column order: the
    one naming of every picture, :func:`wiring.picture.level_names` (``inputs``,
    ``level 1`` ..., ``outputs``; ``short``, for axis ticks: ``in``, ``1`` ..., ``out``)."""
    return level_names(level, role, short=short)


def _pair_table(wiring: Wiring) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(col, count [C, C], abs_sum [C, C], node_count [C])``: each node's column
    index (0..C-1) and, per (source column, target column), the number of real edges
    and the sum of their ``|w|``."""
    real = wiring.real_edges()
    raw = groups(real.level, real.role, dynamic=is_dynamic(real.level, real.attrs))
    uniq, col = np.unique(raw, return_inverse=True) if raw.size else (np.zeros(0), raw)
    c = max(len(uniq), 1)
    ei = real.edge_index.long().cpu().numpy().reshape(2, -1)
    w = real.weight.detach().double().cpu().numpy().reshape(-1)
    pair = col[ei[0]] * c + col[ei[1]] if ei.size else np.zeros(0, dtype=np.int64)
    count = np.bincount(pair, minlength=c * c).reshape(c, c)
    abs_sum = np.bincount(pair, weights=np.abs(w), minlength=c * c).reshape(c, c)
    return col, count, abs_sum, np.bincount(col, minlength=c)


def _strength_colour(t: float):
    """A colour for a relative strength ``t`` in [0, 1]: pale yellow-green to dark blue."""
    from matplotlib import colormaps
    return colormaps["YlGnBu"](0.25 + 0.7 * float(np.clip(t, 0.0, 1.0)))


def draw_flow(ax, wiring: Wiring, dead: Iterable[int] = ()) -> None:
    """Level-to-level flow on ``ax``: one bar per column (its height the larger of the
    real edges going in and out), one band per (source column, target column) whose
    width is the number of real edges and whose colour is the share of the pair's
    node pairs that are real edges (``count / (nodes_s * nodes_t)``, pale to dark
    blue, 0 to the fullest pair); bands of 3% of the height or more carry their
    count just right of their source column. Columns are labelled with their nodes
    and dead nodes."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    col, count, abs_sum, nodes = _pair_table(wiring)
    fill = count / np.maximum(np.outer(nodes, nodes), 1)
    hi = float(fill.max()) if count.any() else 1.0
    names = column_names(wiring.level, wiring.role)         # column headers: inputs, level 1, ..., outputs
    ticks = column_names(wiring.level, wiring.role, short=True)  # band labels: -> 1, ..., -> out
    c = len(names)
    dead_per = np.bincount(col[np.array(sorted(dead), dtype=np.int64)], minlength=c) if len(dead) else np.zeros(c, int)
    out_total, in_total = count.sum(1), count.sum(0)
    scale = 0.86 / max(int(max(out_total.max(initial=0), in_total.max(initial=0))), 1)
    bar = 0.07
    heights = np.maximum(out_total, in_total) * scale
    ax.set_axis_off()
    ax.set_xlim(-0.45, c - 0.55)
    ax.set_ylim(-0.1, 1.06)
    out_next = 0.5 + out_total * scale / 2          # next free y (from the top) on each bar's right side
    in_next = 0.5 + in_total * scale / 2
    labels = []
    for s in range(c):
        for t in range(c):
            n = int(count[s, t])
            if n == 0:
                continue
            h = n * scale
            y0s, y0t = out_next[s], in_next[t]
            out_next[s] -= h
            in_next[t] -= h
            x0, x1 = s + bar / 2, t - bar / 2
            mid = (x0 + x1) / 2
            verts = [(x0, y0s), (mid, y0s), (mid, y0t), (x1, y0t), (x1, y0t - h), (mid, y0t - h), (mid, y0s - h),
                     (x0, y0s - h), (x0, y0s)]
            codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4, MplPath.LINETO,
                     MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4, MplPath.CLOSEPOLY]
            ax.add_patch(PathPatch(MplPath(verts, codes), facecolor=_strength_colour(fill[s, t] / hi),
                                   edgecolor="white", linewidth=0.5, alpha=0.85 if t == s + 1 else 0.6,
                                   zorder=1 if t == s + 1 else 2))
            if h >= 0.03:
                labels.append((x0 + 0.16, y0s - h / 2, f"{n:,} → {ticks[t]}", t - s > 1))
    for s in range(c):
        ax.add_patch(Rectangle((s - bar / 2, 0.5 - heights[s] / 2), bar, heights[s], facecolor="#4d4d4d",
                               edgecolor="none", zorder=3))
        text = f"{names[s]}\n{int(nodes[s]):,} nodes"
        if dead_per[s]:
            text += f"\n{int(dead_per[s]):,} dead"
        ax.text(s, 0.5 + heights[s] / 2 + 0.015, text, ha="center", va="bottom", fontsize=8, color="#222222",
                zorder=4)
    for x, y, text, skip in labels:
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, zorder=5,
                color="#111111", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none",
                                            alpha=0.7 if skip else 0.55))
    handles = [Patch(facecolor=_strength_colour(t), label=f"{100 * t * hi:.2g}% of node pairs")
               for t in (0.0, 0.5, 1.0)]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=3, frameon=False, fontsize=8,
              title="band width = real edges from column to column (count printed); "
                    "colour = the share of the two columns' node pairs that are real edges",
              title_fontsize=8)


def draw_adjacency(ax, wiring: Wiring, dead: Iterable[int] = (), *, bins: int | None = None) -> None:
    """The adjacency picture on ``ax``: rows are targets, columns sources, both in
    layout order (column, then node id); a real edge is a blue (``w > 0``) or red
    pixel. Above ``bins`` nodes a side (default: about one per screen pixel of ``ax``)
    nodes are grouped into ``bins`` bins and a pixel's darkness is its number of
    real edges relative to the fullest, its colour their mean sign. Level blocks are
    outlined and named, large blocks labelled with their real edges and the share of
    their node pairs that are real edges; dead nodes are ticked along both axes."""
    from matplotlib.colors import to_rgb

    real = wiring.real_edges()
    n = real.num_nodes
    dynamic = is_dynamic(real.level, real.attrs)
    col = groups(real.level, real.role, dynamic=dynamic)  # layout columns; a dynamic wiring's roles
    order = np.lexsort((np.arange(n), col)) if n else np.zeros(0, dtype=np.int64)
    place = np.empty(n, dtype=np.int64)
    place[order] = np.arange(n)
    if bins is None:
        width, height = ax.figure.get_size_inches() * ax.figure.dpi
        box = ax.get_position()
        bins = int(max(min(width * box.width, height * box.height), 16))
    b = max(min(n, int(bins)), 1)
    ei = real.edge_index.long().cpu().numpy().reshape(2, -1)
    w = real.weight.detach().double().cpu().numpy().reshape(-1)
    row = place[ei[1]] * b // max(n, 1)
    column = place[ei[0]] * b // max(n, 1)
    cell = row * b + column
    count = np.bincount(cell, minlength=b * b).reshape(b, b).astype(np.float64)
    pos = np.bincount(cell, weights=(w > 0).astype(np.float64), minlength=b * b).reshape(b, b)
    share = np.divide(pos, count, out=np.full_like(count, 0.5), where=count > 0)
    darkness = np.sqrt(count / max(count.max(), 1.0))
    blue, red = np.array(to_rgb(POSITIVE)), np.array(to_rgb(NEGATIVE))
    colour = share[..., None] * blue + (1 - share[..., None]) * red
    image = 1.0 - darkness[..., None] * (1.0 - colour)
    ax.imshow(image, interpolation="nearest", extent=(0, n, n, 0), zorder=1)
    ax.set_xlim(-0.025 * n, n)
    ax.set_ylim(n, -0.025 * n)
    ax.set_aspect("equal")
    names = group_names(real.level, real.role, dynamic=dynamic, short=True)
    uniq = np.unique(col)
    bounds = [0] + [int((col <= c).sum()) for c in uniq]
    for x in bounds:
        ax.axvline(x, color="#555555", lw=0.7, zorder=2)
        ax.axhline(x, color="#555555", lw=0.7, zorder=2)
    centres = [(a + z) / 2 for a, z in zip(bounds[:-1], bounds[1:])]
    _, block, _, _ = _pair_table(real)
    for i, (a, z) in enumerate(zip(bounds[:-1], bounds[1:])):        # source block
        for j, (a2, z2) in enumerate(zip(bounds[:-1], bounds[1:])):  # target block
            if block[i, j] and min(z - a, z2 - a2) >= 0.06 * n:
                fill = block[i, j] / ((z - a) * (z2 - a2))
                ax.text((a + z) / 2, (a2 + z2) / 2, f"{int(block[i, j]):,}\n{100 * fill:.2g}% filled",
                        ha="center", va="center", fontsize=8, zorder=4,
                        bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.8))
    ax.set_xticks(centres, names, fontsize=8)
    ax.set_yticks(centres, names, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_xlabel("source role" if dynamic else "source level", fontsize=9)
    ax.set_ylabel("target role" if dynamic else "target level", fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    dead = np.array(sorted(dead), dtype=np.int64)
    if dead.size:
        p = place[dead] + 0.5
        ax.scatter(p, np.full(p.size, -0.012 * n), marker="|", s=30, c=DEAD_MARK, linewidths=0.6, zorder=3,
                   clip_on=False)
        ax.scatter(np.full(p.size, -0.012 * n), p, marker="_", s=30, c=DEAD_MARK, linewidths=0.6, zorder=3,
                   clip_on=False)


def render_wiring(wiring: Wiring, path: str | os.PathLike | None = None, *, ax=None,
                  title: str | None = None, metrics: Sequence[Mapping] = (),
                  size: Sequence[float] = (12.0, 7.0), dpi: int = 100, legend: bool = True,
                  palette: bool = False, view: str = "graph", style: str = "auto", top: int | None = None,
                  strong: int = STRONG_EDGES) -> Figure:
    """Draw ``wiring`` (see the module docstring) and return the figure.

    ``ax``: draw there (``size`` and ``dpi`` are then the figure's own); else a
    new ``size`` (inches) figure. ``title``: the first title line (default
    ``"wiring"``); the second gives k, density, step and test accuracy (from
    ``wiring.attrs``, else the ``metrics`` record at the wiring's step).
    ``view``: ``"graph"`` (nodes and edges), ``"flow"`` (:func:`draw_flow`) or
    ``"adjacency"`` (:func:`draw_adjacency`). ``style`` (graph view):
    ``"ranked"``, ``"weight"`` or ``"auto"`` (:func:`resolve_style`); ``strong``:
    how many edges the ranked style makes stand out; ``top``: draw only the
    ``top`` strongest real edges (dead nodes are still those of the whole wiring).
    ``path``: also save it there (.png/.svg/.pdf; ``palette``: 256-colour PNG,
    see :func:`save_figure`).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: use one of {', '.join(VIEWS)}")
    if view == "flow" and is_dynamic(wiring.level, wiring.attrs):
        raise ValueError(FLOW_NEEDS_LEVELS)
    real = wiring.real_edges()
    if ax is None:
        fig = new_figure(size, dpi)
        box = (0.08, 0.04, 0.84, 0.84) if view == "adjacency" else (0.01, 0.09, 0.98, 0.80)
        ax = fig.add_axes(box)
    else:
        fig = ax.figure
    dead = dead_of(real)
    info = wiring_info(wiring, metrics)
    line = stats_line(info)
    if view == "graph":
        shown = strongest(real, top) if top is not None else real
        chosen = resolve_style(style, real.num_edges)
        drawing = WiringDrawing(ax, real.level, real.role, real.attrs, n_edges=shown.num_edges, style=chosen,
                                strong=min(strong, shown.num_edges) if top is not None else strong)
        drawing.set_edges(shown.edge_index, shown.weight)
        drawing.set_dead(dead)
        if top is not None and top < real.num_edges:
            line += f"  ·  the {top:,} strongest shown"
        if legend:
            handles = drawing.legend_handles()
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      ncol=max(len(handles), 7), frameon=False, fontsize=8, handlelength=1.5, columnspacing=1.2)
    elif view == "flow":
        draw_flow(ax, real, dead)
    else:
        draw_adjacency(ax, real, dead)
        line += f"  ·  dead {len(dead):,} (ticks)"
    ax.set_title(f"{title or 'wiring'}\n{line}", fontsize=10, pad=18 if view == "adjacency" else 6)
    if path is not None:
        save_figure(fig, path, dpi=dpi, palette=palette)
    return fig


def _title(source) -> str:
    attrs = source.wiring.attrs or {}
    what = " · ".join(str(attrs[key]) for key in ("preset", "mode") if attrs.get(key) is not None)
    name = source.run.wiring_name if source.run is not None else None
    return plain(f"{source.path.name}" + (f" · {name}" if name else "") + (f"  ({what})" if what else ""))


PROG = "python -m viz.render"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m viz.render: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG,
                            description="Draw a wiring (a run directory's final wiring, or a GraphML file).")
    parser.add_argument("source", metavar="RUN_DIR|FILE.graphml", help="run directory or GraphML file")
    parser.add_argument("-o", "--output", default="wiring.png",
                        help="output file: .png, .svg or .pdf (default wiring.png)")
    add_figure_options(parser, (12.0, 7.0), 100)
    parser.add_argument("--palette", action="store_true",
                        help="write a 256-colour PNG (3-4x smaller for large wirings; .png only)")
    parser.add_argument("--view", choices=VIEWS, default="graph",
                        help="graph: nodes and edges (default); flow: level-to-level bands; "
                             "adjacency: targets x sources, level blocks outlined")
    parser.add_argument("--style", choices=STYLES, default="auto",
                        help=f"graph view: edge opacity and width from the rank of |w| (ranked) or from |w| "
                             f"(weight); auto: ranked from {RANKED_FROM:,} edges (default)")
    parser.add_argument("--top", type=positive_int, metavar="N", default=None,
                        help="graph view: draw only the N strongest real edges")
    parser.add_argument("--strong", type=positive_int, metavar="N", default=STRONG_EDGES,
                        help=f"ranked style: about how many edges stand out (default {STRONG_EDGES})")
    add_wiring_option(parser)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        out, fmt = output_path(args.output, FORMATS)
        if args.palette and fmt != "png":
            raise UsageError(f"--palette applies to .png output only, not {out.name}")
        if args.view != "graph" and (args.top is not None or args.style != "auto"):
            raise UsageError(f"--top and --style apply to --view graph, not --view {args.view}")
        check_pixels(args.size, args.dpi, 20000)
        source = load_source(args.source, args.wiring)
        if args.view == "flow" and is_dynamic(source.wiring.level, source.wiring.attrs):
            raise UsageError(FLOW_NEEDS_LEVELS)
    except UsageError as err:
        die(prog, str(err))
    return write_figure(prog, out, lambda: render_wiring(source.wiring, out, title=_title(source),
                                                         metrics=source.metrics, size=args.size, dpi=args.dpi,
                                                         palette=args.palette, view=args.view, style=args.style,
                                                         top=args.top, strong=args.strong))


if __name__ == "__main__":
    raise SystemExit(main())
