"""Wiring modes: how the real edges are chosen each step, and who gets a gradient.

A mode is a small object with one method, ``select(weight, frozen, training)``,
returning a :class:`Selection`: the boolean mask of edges used in the forward and
whether every candidate (``grad_all=True``) or only the used edges receive a
weight gradient. ``frozen`` is the layer's stored real set (the initial wiring,
or a trained model's top-k for ``fine_tune`` / ``lottery``).

This module is the one place that interprets mode names. Every :class:`Mode` class
says what the rest of the project needs to know without instantiating it (class
attributes, read with :func:`mode_class`): its :attr:`~Mode.label` (plots) and
:attr:`~Mode.phrase` (report text), whether it takes the real set from the layer's
frozen mask (``uses_frozen``), makes every candidate real (``all_real``, no budget),
starts from a trained source run (``needs_source``, ``--from``), rewinds the weights to
that run's initialisation (``rewinds``) or selects by chance (``stochastic``).

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
from typing import Any

import torch
from torch import Tensor

from wiring.graph import GraphError
from wiring.topk import topk_mask


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
    """A wiring mode: :meth:`select` picks each forward's real edges (see the module)."""
    name = "mode"
    #: how plots name the mode, and how report text does
    label = phrase = "mode"
    #: whether the real set is taken from the layer's frozen mask
    uses_frozen = False
    #: whether every candidate is real (the budget k does not apply)
    all_real = False
    #: whether the mode starts from a trained run (its weights and frozen top-k)
    needs_source = False
    #: whether the weights are rewound to the source run's initialisation
    rewinds = False
    #: whether the training-time selection is random
    stochastic = False
    #: whether DNW-for-any-model layers (:mod:`wiring.sparsify`) take the mode, per weight entry
    per_weight = False
    #: whether every candidate receives a weight gradient (the straight-through estimator)
    grad_all = False

    def __init__(self, k: int) -> None:
        self.k = k
        #: the previous top-k threshold: :func:`wiring.topk.topk_mask` searches near it first
        self.topk_hint: dict = {}

    def select(self, weight: Tensor, frozen: Tensor, training: bool) -> Selection:
        raise NotImplementedError

    @classmethod
    def config_options(cls, cfg: Any) -> dict[str, Any]:
        """The constructor options this mode takes from a training config (none)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


class DNW(Mode):
    """Top-k real edges every step; the gradient reaches every candidate."""
    name = "dnw"
    label = phrase = "DNW"
    per_weight = grad_all = True

    def select(self, weight, frozen, training):
        return Selection(topk_mask(weight, self.k, self.topk_hint), True)


class DNWNoUpdate(Mode):
    """Top-k real edges every step, but only real edges get gradients (ablation)."""
    name = "dnw_no_update"
    label, phrase = "DNW, no update rule", "no update rule"
    per_weight = True

    def select(self, weight, frozen, training):
        return Selection(topk_mask(weight, self.k, self.topk_hint), False)


class Fixed(Mode):
    """The frozen real set, never changing: the random-graph baseline."""
    name = "fixed"
    label, phrase = "random graph (fixed)", "random graph"
    uses_frozen = True
    per_weight = True

    def select(self, weight, frozen, training):
        return Selection(frozen, False)


class FineTune(Fixed):
    """The frozen top-k of a trained model, trained further (real edges only)."""
    name = "fine_tune"
    label, phrase = "fine-tune (top-k of trained)", "fine-tuned top-k of the complete graph"
    needs_source = True


class Lottery(Fixed):
    """One-shot lottery ticket: a trained model's top-k with rewound weights."""
    name = "lottery"
    label = phrase = "one-shot lottery ticket"
    needs_source = rewinds = True


class Complete(Mode):
    """Every candidate is real."""
    name = "complete"
    label = phrase = "complete graph"
    all_real = True

    def select(self, weight, frozen, training):
        return Selection(torch.ones_like(weight, dtype=torch.bool), True)


class TargetedDropout(Mode):
    """Targeted dropout: during training the candidates outside the top-k are
    each dropped with probability ``rho``; at evaluation only the top-k remain."""
    name = "td"
    label = phrase = "targeted dropout"
    stochastic = True

    def __init__(self, k: int, rho: float = 0.95) -> None:
        super().__init__(k)
        if not 0.0 <= rho <= 1.0:
            raise GraphError(f"targeted dropout rho must be in [0, 1], got {rho}")
        self.rho = rho

    @classmethod
    def config_options(cls, cfg: Any) -> dict[str, Any]:
        """``rho`` from the config's ``td_rho``."""
        return {"rho": cfg.td_rho}

    def select(self, weight, frozen, training):
        top = topk_mask(weight, self.k, self.topk_hint)
        if not training:
            return Selection(top, False)
        keep = torch.rand(weight.shape, device=weight.device) >= self.rho
        return Selection(top | keep, False)


MODES: dict[str, type[Mode]] = {cls.name: cls for cls in
                                (DNW, Fixed, DNWNoUpdate, Complete, FineTune, Lottery, TargetedDropout)}


#: the modes of :func:`wiring.sparsify.sparsify`'s layers (per weight entry)
SPARSE_MODES: tuple[str, ...] = tuple(name for name, cls in MODES.items() if cls.per_weight)

#: the modes a bare function can apply (:func:`wiring.ops.dnw_propagate`): no source run, no chance
STATELESS: tuple[str, ...] = tuple(name for name, cls in MODES.items() if not (cls.needs_source or cls.stochastic))


def mode_class(name: str) -> type[Mode]:
    """The class of the mode called ``name``, whose attributes describe it.

    >>> mode_class("lottery").needs_source, mode_class("lottery").rewinds, mode_class("complete").all_real
    (True, True, True)
    >>> mode_class("dnw").label, mode_class("fixed").phrase
    ('DNW', 'random graph')
    """
    if name not in MODES:
        raise GraphError(f"unknown mode {name!r}; expected one of {', '.join(MODES)}")
    return MODES[name]


def every_candidate_real(mode: str, preset: str = "") -> bool:
    """Whether every candidate edge is real, so that a budget k does not apply: a mode
    whose :attr:`~Mode.all_real` is set (``complete``), or the ``complete`` preset (every
    candidate in the initial wiring). False for a name that is no mode.

    >>> every_candidate_real("complete"), every_candidate_real("dnw", "complete"), every_candidate_real("dnw")
    (True, True, False)
    """
    return (mode in MODES and MODES[mode].all_real) or preset == "complete"


def make_mode(name: str, k: int, **options) -> Mode:
    """The mode called ``name`` with budget ``k``.

    >>> make_mode("dnw", 3)
    DNW(k=3)
    """
    return mode_class(name)(k, **options)
