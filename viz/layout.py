"""Fixed node positions for drawing a wiring, computed once per node set.

Contract: :func:`node_positions` is a pure function of the ``level`` and ``role``
tensors (and whether the wiring is dynamic); it never looks at edges, so every
snapshot of a run gets the same picture frame and steps line up.

* static (layered) wirings: one column per level, ``x = level``; output nodes
  go in the last column whatever their level; within a column nodes are spread
  evenly over ``y`` in ``[0, 1]`` by node id, the smallest id on top;
* dynamic wirings (``attrs["static"]`` False, or every level equal): a circle of
  radius 0.5 around ``(0.5, 0.5)``, node 0 on top, ids clockwise.

Positions are a float ``numpy`` array ``[N, 2]``.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

__all__ = ["OUTPUT_ROLE", "is_dynamic", "columns", "node_positions", "positions_for"]

OUTPUT_ROLE = 2  # wiring.graph.OUTPUT, the role code of output nodes


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
    out = role == OUTPUT_ROLE
    col = level.copy()
    if out.any():
        top = int(level.max())
        if (~out).any() and int(level[~out].max()) >= top:
            top = int(level[~out].max()) + 1
        col[out] = top
    return col


def node_positions(level: Tensor, role: Tensor, *, dynamic: bool = False) -> np.ndarray:
    """Positions ``[N, 2]`` of the nodes (see the module docstring).

    >>> node_positions(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2])).tolist()
    [[0.0, 0.75], [0.0, 0.25], [1.0, 0.5]]
    >>> node_positions(torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long),
    ...                dynamic=True).round(3).tolist()
    [[0.5, 1.0], [1.0, 0.5], [0.5, 0.0], [0.0, 0.5]]
    """
    n = int(torch.as_tensor(level).numel())
    pos = np.zeros((n, 2), dtype=np.float64)
    if n == 0:
        return pos
    if dynamic:
        angle = math.pi / 2 - 2 * math.pi * np.arange(n) / n
        pos[:, 0] = 0.5 + 0.5 * np.cos(angle)
        pos[:, 1] = 0.5 + 0.5 * np.sin(angle)
        return pos + 0.0  # turn -0.0 into 0.0
    col = columns(level, role)
    pos[:, 0] = col
    for c in np.unique(col):
        ids = np.flatnonzero(col == c)  # ascending node ids
        pos[ids, 1] = 1.0 - (np.arange(ids.size) + 0.5) / ids.size
    return pos


def positions_for(wiring) -> np.ndarray:
    """:func:`node_positions` of a :class:`~wiring.graph.Wiring` (or anything with
    ``level``, ``role`` and ``attrs``), dynamic as :func:`is_dynamic` says."""
    attrs = getattr(wiring, "attrs", None)
    return node_positions(wiring.level, wiring.role, dynamic=is_dynamic(wiring.level, attrs))
