"""Fixed node positions for drawing a wiring, computed once per node set.

The positions themselves live one floor down, in :mod:`wiring.picture` (the training's
TensorBoard picture draws with them too); this module names them for the viz tools.

Contract: :func:`node_positions` is a pure function of the ``level`` and ``role``
tensors (and whether the wiring is dynamic); it never looks at edges, so every
snapshot of a run gets the same picture frame and steps line up.

* static (layered) wirings: one column per level, ``x = level``; output nodes
  go in the last column whatever their level; within a column nodes are spread
  evenly over ``y`` in ``[0, 1]`` by node id, the smallest id on top;
* dynamic wirings (``attrs["static"]`` False, or every level equal): nodes by
  role: the hidden nodes on a circle of radius 0.5 around ``(1, 0.5)`` (the first
  on top, ids clockwise), the inputs a column at ``x = 0``, the outputs a column at
  ``x = 2`` (spread over ``y`` by id like a static column).

Positions are a float ``numpy`` array ``[N, 2]``.
"""
from __future__ import annotations

import numpy as np

from wiring.picture import columns, is_dynamic, node_positions

__all__ = ["is_dynamic", "columns", "node_positions", "positions_for"]


def positions_for(wiring) -> np.ndarray:
    """:func:`node_positions` of a :class:`~wiring.graph.Wiring` (or anything with
    ``level``, ``role`` and ``attrs``), dynamic as :func:`is_dynamic` says."""
    attrs = getattr(wiring, "attrs", None)
    return node_positions(wiring.level, wiring.role, dynamic=is_dynamic(wiring.level, attrs))
