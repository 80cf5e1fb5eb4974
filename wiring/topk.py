"""The real edges of the DNW rule: the ``k`` candidates of largest ``|w|``.

:func:`topk_mask` is exactly ``k`` entries, ties broken towards the lower candidate
index, so every rank of a distributed run selects the same set. It sits below
:mod:`wiring.modes` (which selects with it every step) and :mod:`wiring.ops` (which
re-exports it as ``wiring.ops.topk_mask``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from wiring.lazy import lazy_module

from wiring.backends import kernels
from wiring.graph import check_edges

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

HINT_MARGIN = 0.9   # the pre-filter keeps |w| >= 0.9 x the previous threshold


def topk_mask(weight: Tensor, k: int, hint: dict | None = None) -> Tensor:
    """Boolean mask of the ``k`` candidates with the largest ``|weight|``.

    Exactly ``k`` entries are True; among equal magnitudes the lower index wins,
    so the result is deterministic (and equal on every rank of a distributed run).

    ``hint``, a dict the caller keeps between calls (a mode keeps one), makes repeated
    selections on slowly changing weights cheaper on CPU: the k-th largest magnitude is
    searched only among the entries within :data:`HINT_MARGIN` of the previous
    threshold, a small pool, and among all of them when the pool holds fewer than k.
    Either way the result is the same mask (what changes is the cost: 5-8x less at 24
    million candidates). On other devices the hint is ignored.

    >>> topk_mask(torch.tensor([0.1, -2.0, 0.5, 2.0, 0.5]), 3).tolist()
    [False, True, True, True, False]
    >>> cache = {}
    >>> w = torch.tensor([0.1, -2.0, 0.5, 2.0, 0.5])
    >>> topk_mask(w, 3, cache).tolist() == topk_mask(w * 1.05, 3, cache).tolist()
    True
    """
    k = check_edges(k, weight.numel())
    if k == weight.numel():
        return torch.ones_like(weight, dtype=torch.bool)
    if kernels.enabled(weight):                      # the same mask, by selection in one call
        floor = float(hint["threshold"]) * HINT_MARGIN if hint is not None and "threshold" in hint else 0.0
        mask, threshold = kernels.topk_mask(weight, k, floor)
        if hint is not None:
            hint["threshold"] = threshold
        return mask
    mag = torch.nan_to_num(weight.detach().abs(), nan=-1.0)
    threshold = None
    if hint is not None and mag.device.type == "cpu" and "threshold" in hint:
        pool = mag[mag >= hint["threshold"] * HINT_MARGIN]
        if pool.numel() >= k:                       # every one of the top k is in the pool
            threshold = torch.topk(pool, k, sorted=False).values.min()
    if threshold is None:
        threshold = torch.topk(mag, k, sorted=False).values.min()
    if hint is not None:
        hint["threshold"] = threshold
    mask = mag > threshold
    ties = mag == threshold
    room = k - mask.sum()
    mask |= ties & (torch.cumsum(ties, 0) <= room)
    return mask
