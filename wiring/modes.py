"""Wiring modes: how the real edges are chosen each step, and who gets a gradient.

A mode is a small object with one method, ``select(weight, frozen, training)``,
returning a :class:`Selection`: the boolean mask of edges used in the forward and
whether every candidate (``grad_all=True``) or only the used edges receive a
weight gradient. ``frozen`` is the layer's stored real set (the initial wiring,
or a trained model's top-k for ``fine_tune`` / ``lottery``).

=============== ================================================ =====================
mode            real edges                                       gradient to weights
=============== ================================================ =====================
dnw             top-k of ``|w|``, recomputed every step          every candidate
fixed           ``frozen`` (the initial k edges: random graph)   real edges only
dnw_no_update   top-k of ``|w|`` every step                      real edges only
complete        every candidate                                  every candidate
fine_tune       ``frozen`` (a trained model's top-k)             real edges only
lottery         ``frozen`` (a trained model's top-k; weights     real edges only
                rewound to the saved initialisation)
td              training: top-k plus each other candidate kept   the edges used
                with probability ``1 - rho``; evaluation: top-k
=============== ================================================ =====================
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .graph import GraphError
from .ops import topk_mask


@dataclass(frozen=True)
class Selection:
    """The edges a forward uses (``mask``, bool ``[C]``) and whether every
    candidate receives a weight gradient (``grad_all``)."""

    mask: Tensor
    grad_all: bool

    @property
    def num_real(self) -> int:
        return int(self.mask.sum())


class Mode:
    name = "mode"
    #: whether the real set is taken from the layer's frozen mask
    uses_frozen = False

    def __init__(self, k: int) -> None:
        self.k = k
        #: the previous top-k threshold: :func:`wiring.ops.topk_mask` searches near it first
        self.topk_hint: dict = {}

    def select(self, weight: Tensor, frozen: Tensor, training: bool) -> Selection:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


class DNW(Mode):
    """Top-k real edges every step; the gradient reaches every candidate."""
    name = "dnw"

    def select(self, weight, frozen, training):
        return Selection(topk_mask(weight, self.k, self.topk_hint), True)


class DNWNoUpdate(Mode):
    """Top-k real edges every step, but only real edges get gradients (ablation)."""
    name = "dnw_no_update"

    def select(self, weight, frozen, training):
        return Selection(topk_mask(weight, self.k, self.topk_hint), False)


class Fixed(Mode):
    """The frozen real set, never changing: the random-graph baseline."""
    name = "fixed"
    uses_frozen = True

    def select(self, weight, frozen, training):
        return Selection(frozen, False)


class FineTune(Fixed):
    """The frozen top-k of a trained model, trained further (real edges only)."""
    name = "fine_tune"


class Lottery(Fixed):
    """One-shot lottery ticket: a trained model's top-k with rewound weights."""
    name = "lottery"


class Complete(Mode):
    """Every candidate is real."""
    name = "complete"

    def select(self, weight, frozen, training):
        return Selection(torch.ones_like(weight, dtype=torch.bool), True)


class TargetedDropout(Mode):
    """Targeted dropout: during training the candidates outside the top-k are
    each dropped with probability ``rho``; at evaluation only the top-k remain."""
    name = "td"

    def __init__(self, k: int, rho: float = 0.95) -> None:
        super().__init__(k)
        if not 0.0 <= rho <= 1.0:
            raise GraphError(f"targeted dropout rho must be in [0, 1], got {rho}")
        self.rho = rho

    def select(self, weight, frozen, training):
        top = topk_mask(weight, self.k, self.topk_hint)
        if not training:
            return Selection(top, False)
        keep = torch.rand(weight.shape, device=weight.device) >= self.rho
        return Selection(top | keep, False)


MODES: dict[str, type[Mode]] = {cls.name: cls for cls in
                                (DNW, Fixed, DNWNoUpdate, Complete, FineTune, Lottery, TargetedDropout)}


def make_mode(name: str, k: int, **options) -> Mode:
    """The mode called ``name`` with budget ``k``.

    >>> make_mode("dnw", 3)
    DNW(k=3)
    """
    if name not in MODES:
        raise GraphError(f"unknown mode {name!r}; expected one of {', '.join(MODES)}")
    return MODES[name](k, **options)
