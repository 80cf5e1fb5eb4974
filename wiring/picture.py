"""Ranked edge style and a quick wiring picture from plain tensors (below training and viz).

Contract:

* :func:`edge_ranks` and :func:`rank_emphasis` turn edge weights into a
  per-edge emphasis in ``(0, 1]`` from the RANK of ``|w|`` (never its value): the
  ``strong`` strongest edges get an emphasis near 1, it is 1/2 at rank ``strong``
  and falls as ``1 / (1 + (rank / strong) ** 4)`` after it, so a 12,000-edge wiring
  shows its few hundred strongest edges and keeps the rest as faint context.
* :func:`ranked_style` maps the emphasis to RGBA colours (blue ``w > 0``, red
  ``w < 0``) and line widths, and returns the drawing order (weakest first, so the
  strongest lie on top). The context opacity falls with the number of edges.
  :mod:`viz.render` draws large wirings with it; the tensorboard hook of
  :mod:`wiring.train` draws with :func:`wiring_picture`.
* :func:`node_positions`: fixed node positions, a pure function of ``level`` and
  ``role`` (never of edges, so every snapshot of a run gets the same frame): for a
  static wiring one column per level (:func:`columns`; output nodes in the last
  column whatever their level), nodes spread evenly over ``y`` in ``[0, 1]`` by id,
  the smallest on top; for a dynamic wiring (:func:`is_dynamic`) the nodes by role:
  the hidden nodes on a circle of radius 0.5 around :data:`RING_CENTRE` ``(1, 0.5)``
  (the first on top, ids clockwise), the inputs a column at ``x = 0`` left of it, the
  outputs a column at ``x = 2`` right of it (each spread over ``y`` in ``[0, 1]`` by id,
  the smallest on top), so what comes in, what recurs and what goes out are apart.
  :mod:`viz.layout` and :func:`wiring_picture` both use them.
* :func:`level_name` / :func:`level_names`: the one naming of the layout's columns
  that every picture and the explorer use: ``inputs``, ``level 1`` ... ``level N``,
  ``outputs`` in titles, column labels, legends and hover text; the same names cut
  to ``in``, ``1`` ... ``N``, ``out`` (``short=True``) where they are axis ticks or
  table headers under a "level" axis title (:mod:`viz.render`'s adjacency view,
  :mod:`viz.plots`, :mod:`viz.compare`, :mod:`viz.animate`'s churn strip, the
  explorer's level table). A level is never named by its number alone when it
  holds only inputs or only outputs. :func:`groups` / :func:`group_names`: what the
  pictures count by, the layout columns of a static wiring and the roles of a dynamic
  one (its nodes share one level): ``inputs``, ``hidden``, ``outputs`` (``in``,
  ``hidden``, ``out``).
* :func:`wiring_picture` draws a wiring given as ``level``, ``role``,
  ``edge_index`` and ``weight`` tensors in the ranked style (levels as columns,
  outputs in the last column; nodes by role around a circle of the hidden nodes when
  every node shares one level) and
  returns an ``[H, W, 3]`` uint8 array, ``size`` x ``dpi`` pixels. It uses
  matplotlib's Agg canvas only (no pyplot, nothing global).

This module imports nothing from the trainer or from :mod:`viz` (both use it).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from wiring.graph import HIDDEN, INPUT, OUTPUT
from wiring.lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

__all__ = ["POSITIVE", "NEGATIVE", "STRONG_EDGES", "edge_ranks", "rank_emphasis", "ranked_params", "ranked_style",
           "is_dynamic", "columns", "level_name", "level_names", "groups", "group_names", "RING_CENTRE",
           "node_positions", "wiring_picture"]

POSITIVE = "#1f5fbf"   # blue: positive weight
NEGATIVE = "#d62728"   # red: negative weight
STRONG_EDGES = 250     # default number of edges that stand out
RING_CENTRE = (1.0, 0.5)  # dynamic layout: the centre of the hidden nodes' circle (radius 0.5)
#: role -> (name, short name) of the groups a dynamic wiring is drawn and counted by
ROLE_GROUPS = {INPUT: ("inputs", "in"), HIDDEN: ("hidden", "hidden"), OUTPUT: ("outputs", "out")}


def edge_ranks(weight) -> np.ndarray:
    """Rank of each edge by ``|w|``, 0 for the strongest (ties: the lower index first).

    >>> edge_ranks(np.array([0.1, -3.0, 2.0, 0.5])).tolist()
    [3, 0, 1, 2]
    """
    w = np.abs(np.nan_to_num(np.asarray(weight, dtype=np.float64).ravel()))
    order = np.argsort(-w, kind="stable")
    ranks = np.empty(w.size, dtype=np.int64)
    ranks[order] = np.arange(w.size)
    return ranks


def rank_emphasis(weight, strong: int = STRONG_EDGES) -> np.ndarray:
    """``1 / (1 + (rank / strong) ** 4)``: near 1 for the ``strong`` strongest edges,
    1/2 at rank ``strong``, about 0.06 at ``2 * strong``.

    >>> rank_emphasis(np.array([1.0, -4.0, 2.0, 3.0]), strong=2).round(3).tolist()
    [0.165, 1.0, 0.5, 0.941]
    """
    ranks = edge_ranks(weight).astype(np.float64)
    return 1.0 / (1.0 + (ranks / max(float(strong), 1e-9)) ** 4)


def ranked_params(n_edges: float) -> tuple[float, float, float, float]:
    """``(alpha_context, alpha_strong, width_context, width_strong)`` (widths in points)
    for ``n_edges`` edges on a picture of about 1200 x 600 pixels: the context fades
    as edges are added (12,000 edges: opacity 0.0083, 0.17 points wide, each one
    below what the eye sees, their crowd a light haze), the strong edges stay opaque.

    >>> ranked_params(12000)
    (0.008333333333333333, 0.85, 0.16666666666666666, 0.9)
    """
    n = max(float(n_edges), 1.0)
    a_ctx = float(np.clip(100.0 / n, 0.008, 0.25))
    w_ctx = float(np.clip(2000.0 / n, 0.15, 0.6))
    return a_ctx, 0.85, w_ctx, 0.9


def ranked_style(weight, *, strong: int = STRONG_EDGES, n_edges: float | None = None,
                 positive: str = POSITIVE, negative: str = NEGATIVE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, rgba [E, 4], widths [E])`` of the ranked style (module docstring);
    ``n_edges`` (default ``len(weight)``) sets the context opacity; ``order``
    sorts the edges weakest first."""
    from matplotlib.colors import to_rgba

    w = np.nan_to_num(np.asarray(weight, dtype=np.float64).ravel())
    a_ctx, a_top, w_ctx, w_top = ranked_params(len(w) if n_edges is None else n_edges)
    e = rank_emphasis(w, strong)
    rgba = np.where((w >= 0)[:, None], np.array(to_rgba(positive)), np.array(to_rgba(negative)))
    rgba[:, 3] = a_ctx + (a_top - a_ctx) * e
    widths = w_ctx + (w_top - w_ctx) * e
    order = np.argsort(e, kind="stable")
    return order, rgba, widths


def is_dynamic(level: Tensor, attrs: Mapping | None = None) -> bool:
    """True for a dynamic wiring: ``attrs["static"]`` is False, or (when the
    attribute says nothing) all nodes share one level."""
    static = (attrs or {}).get("static")
    if static is not None:
        return not bool(static)
    level = torch.as_tensor(level)
    return level.numel() == 0 or bool((level == level.flatten()[0]).all())


def columns(level: Tensor, role: Tensor) -> np.ndarray:
    """The column of each node in the layered layout: its level, except that
    output nodes all sit in the last column (one past the highest non-output
    level when an output shares a column with other nodes of a lower level)."""
    level = torch.as_tensor(level).long().cpu().numpy().astype(np.int64)
    role = torch.as_tensor(role).long().cpu().numpy()
    if level.size == 0:
        return level
    out = role == OUTPUT
    col = level.copy()
    if out.any():
        top = int(level.max())
        if (~out).any() and int(level[~out].max()) >= top:
            top = int(level[~out].max()) + 1
        col[out] = top
    return col


def level_name(column: int, roles, *, short: bool = False) -> str:
    """The name of a layout column (:func:`columns`) holding nodes of these ``roles``:
    ``inputs`` when they are all inputs, ``outputs`` when all outputs, else ``level N``
    (N the column, which is the nodes' level); ``short``: ``in``, ``out``, ``N``.

    >>> level_name(0, [0, 0]), level_name(3, [1, 1]), level_name(5, [2])
    ('inputs', 'level 3', 'outputs')
    >>> level_name(0, [0, 0], short=True), level_name(3, [1, 1], short=True), level_name(5, [2], short=True)
    ('in', '3', 'out')
    """
    roles = torch.as_tensor(roles).long().cpu().numpy() if isinstance(roles, torch.Tensor) else np.asarray(roles)
    for code in (INPUT, OUTPUT):
        if roles.size and (roles == code).all():
            return ROLE_GROUPS[code][1 if short else 0]
    return str(int(column)) if short else f"level {int(column)}"


def level_names(level: Tensor, role: Tensor, *, short: bool = False) -> list[str]:
    """:func:`level_name` of each column of the layered layout, in column order.

    >>> level_names(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 0, 1, 1, 2]))
    ['inputs', 'level 1', 'level 2', 'outputs']
    >>> level_names(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 0, 1, 1, 2]), short=True)
    ['in', '1', '2', 'out']
    """
    col = columns(level, role)
    role = torch.as_tensor(role).long().cpu().numpy()
    return [level_name(int(c), role[col == c], short=short) for c in np.unique(col)]


def groups(level: Tensor, role: Tensor, *, dynamic: bool = False) -> np.ndarray:
    """The group of each node that the pictures draw and count by: its layout column
    (:func:`columns`) in a static wiring, its role (0 inputs, 1 hidden, 2 outputs) in a
    dynamic one.

    >>> groups(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 1, 2]), dynamic=True).tolist()
    [0, 1, 1, 2]
    """
    if not dynamic:
        return columns(level, role)
    return np.clip(torch.as_tensor(role).long().cpu().numpy().astype(np.int64), INPUT, OUTPUT)


def group_names(level: Tensor, role: Tensor, *, dynamic: bool = False, short: bool = False) -> list[str]:
    """The name of each of :func:`groups`, in group order: :func:`level_names` of a
    static wiring, ``inputs`` / ``hidden`` / ``outputs`` of a dynamic one (the roles
    present; ``short``: ``in``, ``hidden``, ``out``).

    >>> group_names(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 1, 2]), dynamic=True, short=True)
    ['in', 'hidden', 'out']
    """
    if not dynamic:
        return level_names(level, role, short=short)
    return [ROLE_GROUPS[int(r)][1 if short else 0] for r in np.unique(groups(level, role, dynamic=True))]


def node_positions(level: Tensor, role: Tensor, *, dynamic: bool = False) -> np.ndarray:
    """Positions ``[N, 2]`` of the nodes (see the module docstring).

    >>> node_positions(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2])).tolist()
    [[0.0, 0.75], [0.0, 0.25], [1.0, 0.5]]
    >>> node_positions(torch.zeros(6, dtype=torch.long), torch.tensor([0, 1, 1, 1, 1, 2]),
    ...                dynamic=True).round(3).tolist()
    [[0.0, 0.5], [1.0, 1.0], [1.5, 0.5], [1.0, 0.0], [0.5, 0.5], [2.0, 0.5]]
    """
    n = int(torch.as_tensor(level).numel())
    pos = np.zeros((n, 2), dtype=np.float64)
    if n == 0:
        return pos
    if dynamic:
        group = groups(level, role, dynamic=True)
        cx, cy = RING_CENTRE
        ring = np.flatnonzero(group == HIDDEN)
        angle = math.pi / 2 - 2 * math.pi * np.arange(ring.size) / max(ring.size, 1)
        pos[ring, 0] = cx + 0.5 * np.cos(angle)
        pos[ring, 1] = cy + 0.5 * np.sin(angle)
        for code, x in ((INPUT, cx - 1.0), (OUTPUT, cx + 1.0)):
            ids = np.flatnonzero(group == code)
            pos[ids, 0] = x
            pos[ids, 1] = 1.0 - (np.arange(ids.size) + 0.5) / max(ids.size, 1)
        return pos + 0.0  # turn -0.0 into 0.0
    col = columns(level, role)
    pos[:, 0] = col
    for c in np.unique(col):
        ids = np.flatnonzero(col == c)  # ascending node ids
        pos[ids, 1] = 1.0 - (np.arange(ids.size) + 0.5) / ids.size
    return pos


def wiring_picture(level: Tensor, role: Tensor, edge_index: Tensor, weight: Tensor, *,
                   title: str = "", size: Sequence[float] = (8.0, 4.5), dpi: int = 80,
                   strong: int = STRONG_EDGES) -> np.ndarray:
    """The ranked picture of a wiring as an ``[H, W, 3]`` uint8 array (module docstring)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    pos = node_positions(level, role, dynamic=is_dynamic(level))
    ei = torch.as_tensor(edge_index).long().cpu().numpy().reshape(2, -1)
    w = torch.as_tensor(weight).detach().double().cpu().numpy().reshape(-1)
    fig = Figure(figsize=tuple(size), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.86 if title else 0.96))
    ax.set_axis_off()
    order, rgba, widths = ranked_style(w, strong=strong)
    segments = np.stack([pos[ei[0]], pos[ei[1]]], axis=1)[order] if ei.size else np.zeros((0, 2, 2))
    ax.add_collection(LineCollection(segments, colors=rgba[order], linewidths=widths[order], zorder=1))
    role_np = torch.as_tensor(role).long().cpu().numpy()
    colours = np.array(["#2ca02c", "#4d4d4d", "#8e44ad"])[np.clip(role_np, 0, 2)]
    ax.scatter(pos[:, 0], pos[:, 1], s=float(np.clip(2000.0 / max(len(pos), 1), 2.0, 80.0)), c=colours,
               linewidths=0, zorder=2)
    if len(pos):
        ax.set_xlim(pos[:, 0].min() - 0.1, pos[:, 0].max() + 0.1)
        ax.set_ylim(pos[:, 1].min() - 0.03, pos[:, 1].max() + 0.03)
    if title:
        fig.suptitle(title, fontsize=10)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
