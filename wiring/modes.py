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
that run's initialisation (``rewinds``) or selects by chance (``stochastic``), and the
constructor options it takes (``options``, whose values the caller gives: :func:`mode_options`;
no mode reads a training config).

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
rigl            ``frozen``, rewired every ``update_every`` steps  real edges; every
                (Evci et al. 2020): drop the real edges of        candidate on update
                smallest ``|w|``, grow the others of largest      steps only (read for
                ``|g|``, grown weights 0                          the growth, not used)
set             ``frozen``, rewired every ``update_every`` steps  real edges only
                (Mocanu et al. 2018): drop by smallest ``|w|``,
                grow as many at random, grown weights drawn
                like the initial ones
=============== ================================================ =====================

The two rewiring modes (:class:`DynamicSparse`, ``updates = True``) are the only stateful
ones: their real set is the layer's ``frozen`` mask (a buffer, so checkpoints hold it), and
it changes only in :meth:`DynamicSparse.rewire`, which the training loop's wiring monitor
calls after an update step's optimizer step (:mod:`wiring.train.monitor`). An update
after step ``t`` (counted from 1) happens when ``t`` is a multiple of ``update_every`` and
at most ``drop_until x total_steps``; it drops :func:`drop_count` real edges, ``floor(k f(t))``
with ``f(t) = drop_fraction`` (``constant``) or ``drop_fraction (1 + cos(pi t / T_end)) / 2``
(``cosine``, RigL's), and grows as many among the candidates not kept (a dropped edge may
grow back, keeping its weight). Ties and NaN as :func:`wiring.topk.topk_mask`: the lower
index wins among equal scores, a NaN scores below every number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from wiring.lazy import lazy_module

from wiring.graph import GraphError
from wiring.topk import topk_mask

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names


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
    #: whether the stored (frozen) real set is rewired during training (:class:`DynamicSparse`)
    updates = False
    #: the constructor options the mode takes besides ``k``; the caller gives their values
    #: (:func:`mode_options` picks them from what it offers)
    options: tuple[str, ...] = ()

    def __init__(self, k: int) -> None:
        self.k = k
        #: the previous top-k threshold: :func:`wiring.topk.topk_mask` searches near it first
        self.topk_hint: dict = {}

    def select(self, weight: Tensor, frozen: Tensor, training: bool) -> Selection:
        raise NotImplementedError

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
    options = ("rho",)

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


#: how ``--drop-schedule`` lowers the fraction of real edges an update replaces
DROP_SCHEDULES = ("cosine", "constant")

#: the published defaults (RigL, Evci et al. 2020: ``drop_fraction`` 0.3, cosine to 0 at 75% of
#: training; ``update_every`` scaled to this project's short runs, see :class:`DynamicSparse`)
UPDATE_EVERY, DROP_FRACTION, DROP_SCHEDULE, DROP_UNTIL = 10, 0.3, "cosine", 0.75


def drop_fraction_at(step: int, fraction: float, schedule: str, until: int) -> float:
    """The fraction of the real edges an update after step ``step`` replaces: ``fraction``
    (``constant``) or ``fraction (1 + cos(pi step / until)) / 2`` (``cosine``); 0 past ``until``.

    >>> drop_fraction_at(0, 0.3, "cosine", 100), drop_fraction_at(50, 0.3, "cosine", 100)
    (0.3, 0.15)
    >>> drop_fraction_at(100, 0.3, "cosine", 100), drop_fraction_at(101, 0.3, "constant", 100)
    (0.0, 0.0)
    """
    if step > until or until <= 0:
        return 0.0
    if schedule == "constant":
        return fraction
    return round(fraction * (1.0 + math.cos(math.pi * step / until)) / 2.0, 12)


def drop_count(k: int, step: int, fraction: float, schedule: str, until: int) -> int:
    """Real edges an update after ``step`` drops (and grows): ``floor(k f(step))``, as RigL.

    >>> [drop_count(100, t, 0.3, "cosine", 100) for t in (10, 50, 90, 100)]
    [29, 15, 0, 0]
    """
    return int(math.floor(k * drop_fraction_at(step, fraction, schedule, until) + 1e-9))


def top_scores(score: Tensor, n: int) -> Tensor:
    """Boolean mask of the ``n`` entries of largest ``score`` (a NaN below every number,
    ``-inf`` for the entries that may not be chosen), ties to the lower index, as
    :func:`wiring.topk.topk_mask` breaks them.

    >>> top_scores(torch.tensor([0.5, float("nan"), 2.0, 0.5, -float("inf")]), 2).tolist()
    [True, False, True, False, False]
    """
    mask = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    if n <= 0:
        return mask
    s = score.detach().float()
    s = torch.where(torch.isnan(s), torch.full_like(s, -3e38), s)          # NaN: below every number, above -inf
    threshold = torch.topk(s, n, sorted=False).values.min()
    mask = s > threshold
    ties = s == threshold
    mask |= ties & (torch.cumsum(ties, 0) <= n - mask.sum())
    return mask


def drop_and_grow(real: Tensor, weight: Tensor, n: int, grow_score: Tensor) -> tuple[Tensor, Tensor]:
    """One rewiring of the 1-d real set ``real``: keep its ``k - n`` edges of largest ``|weight|``
    (drop the ``n`` smallest), grow the ``n`` candidates of largest ``grow_score`` among the
    ones not kept. Returns ``(new real set, grown)``, ``grown`` the edges real now that were
    not before (a dropped edge grown back is neither dropped nor grown).

    >>> real = torch.tensor([True, True, True, False, False, False])
    >>> w = torch.tensor([0.9, -0.1, 0.5, 2.0, 0.0, 0.0])
    >>> new, grown = drop_and_grow(real, w, 1, torch.tensor([0.0, 0.0, 0.0, 0.1, 0.7, 0.2]))
    >>> new.tolist(), grown.tolist()
    ([True, False, True, False, True, False], [False, False, False, False, True, False])
    """
    k = int(real.sum())
    n = min(int(n), k)
    if n <= 0:
        return real.clone(), torch.zeros_like(real)
    mag = weight.detach().abs()
    out = torch.full_like(mag, -float("inf"), dtype=torch.float32)
    keep = top_scores(torch.where(real, mag.float(), out), k - n)
    grow = top_scores(torch.where(keep, out, grow_score.detach().float().abs().to(out.device)), n)
    new = keep | grow
    return new, new & ~real


class DynamicSparse(Mode):
    """The rewiring modes' common part (``rigl``, ``set``): the real set is the layer's frozen
    mask, exactly k edges, replaced in part by :meth:`rewire` after every ``update_every``-th
    training step up to ``drop_until`` of ``total_steps`` (see the module).

    ``update_every`` (RigL's ``Delta T``): RigL used 100 on CIFAR-10, about 390 steps an epoch.
    This project's runs are far shorter: the default digits run is 12 steps an epoch x 30 epochs
    = 360 steps, the Fashion-MNIST studies 5,000 images x 2 epochs = 80 steps, full Fashion-MNIST
    469 steps an epoch. With 100, a study cell (last update at step 60) would never rewire; the
    default 10 gives 6 updates there (at steps 10 .. 60), 27 in the digits run, and still leaves
    10 SGD steps between two updates for the grown weights to move off their start.

    One budget per wiring: on a :class:`~wiring.layer.WiredGraph` the drop and the growth run over
    all of its candidates at once, as DNW's top-k does (RigL's reference code works per layer
    mask; a sparsified model's ``scope="layer"`` budget does that). SET's drop is by ``|w|`` as in
    RigL's SET baseline (the SET paper removes the smallest positive and largest negative weights
    separately, the same set up to the split between the signs).
    """
    uses_frozen = True
    per_weight = True
    updates = True
    options = ("update_every", "drop_fraction", "drop_schedule", "drop_until", "total_steps", "seed")
    #: how a newly grown edge's weight starts: "zero" (RigL) or "random" (SET: drawn like the initial weights)
    grow_init = "zero"

    def __init__(self, k: int, update_every: int = UPDATE_EVERY, drop_fraction: float = DROP_FRACTION,
                 drop_schedule: str = DROP_SCHEDULE, drop_until: float = DROP_UNTIL, total_steps: int = 0,
                 seed: int = 0) -> None:
        super().__init__(k)
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise GraphError(f"update_every must be an integer of at least 1, got {update_every!r}")
        if not 0.0 <= drop_fraction <= 1.0:
            raise GraphError(f"drop_fraction must be in [0, 1], got {drop_fraction}")
        if drop_schedule not in DROP_SCHEDULES:
            raise GraphError(f"unknown drop schedule {drop_schedule!r}; expected one of {', '.join(DROP_SCHEDULES)}")
        if not 0.0 <= drop_until <= 1.0:
            raise GraphError(f"drop_until must be in [0, 1] (a fraction of training), got {drop_until}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
            raise GraphError(f"total_steps must be a non-negative integer, got {total_steps!r}")
        self.update_every, self.drop_fraction, self.drop_schedule = update_every, float(drop_fraction), drop_schedule
        self.drop_until, self.total_steps, self.seed = float(drop_until), total_steps, int(seed)

    @property
    def last_update(self) -> int:
        """``T_end``: the last step after which an update may happen (``floor(drop_until x total_steps)``)."""
        return int(math.floor(self.drop_until * self.total_steps + 1e-9))

    def select(self, weight, frozen, training):
        return Selection(frozen, self.grad_all)

    def update_due(self, step: int) -> bool:
        """Whether the wiring is rewired after training step ``step`` (counted from 1).

        >>> m = make_mode("set", 5, update_every=10, total_steps=100)
        >>> [t for t in range(1, 101) if m.update_due(t)]
        [10, 20, 30, 40, 50, 60, 70]
        """
        return step >= 1 and step % self.update_every == 0 and step <= self.last_update

    def drop_count(self, step: int, k: int | None = None) -> int:
        """Edges the update after ``step`` replaces, of ``k`` real ones (default the mode's)."""
        return drop_count(self.k if k is None else k, step, self.drop_fraction, self.drop_schedule, self.last_update)

    def updates_planned(self) -> list[int]:
        """The steps after which the wiring is rewired (:meth:`update_due`)."""
        return list(range(self.update_every, self.last_update + 1, self.update_every))

    def plan(self) -> str:
        """One line for a run's header: when the wiring changes and by how much.

        >>> make_mode("rigl", 2000, total_steps=80).plan()
        'every 10 steps up to step 60 of 80 (6 updates), each replacing 0.3 of the real edges by cosine to 0'
        """
        steps = self.updates_planned()
        how = "by cosine to 0" if self.drop_schedule == "cosine" else "(constant)"
        return (f"every {self.update_every} steps up to step {self.last_update} of {self.total_steps} "
                f"({len(steps)} update{'' if len(steps) == 1 else 's'}), each replacing {self.drop_fraction:g} "
                f"of the real edges {how}")

    def generator(self, step: int, salt: int = 0) -> torch.Generator:
        """The seeded random source of the update after ``step`` (no state to save: a resumed run
        draws what an uninterrupted one draws)."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + salt * 7_919 + step) % (2 ** 63))

    def grow_score(self, grad: Tensor | None, shape: torch.Size, step: int, salt: int = 0) -> Tensor:
        raise NotImplementedError

    def rewire(self, real: Tensor, weight: Tensor, grow_score: Tensor, step: int,
               k: int | None = None) -> tuple[Tensor, Tensor]:
        """The update after ``step``: :func:`drop_and_grow` of :meth:`drop_count` edges of the
        flat real set ``real``; returns ``(new real set, grown)``."""
        return drop_and_grow(real, weight, self.drop_count(step, k), grow_score)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(k={self.k}, update_every={self.update_every}, "
                f"drop_fraction={self.drop_fraction}, drop_schedule={self.drop_schedule!r}, "
                f"drop_until={self.drop_until}, total_steps={self.total_steps})")


class RigL(DynamicSparse):
    """RigL (Evci et al. 2020): grow the candidates of largest gradient magnitude, weights at 0.
    The gradient to every candidate is computed on update steps only."""
    name = "rigl"
    label = phrase = "RigL"
    grad_all = True

    def grow_score(self, grad, shape, step, salt=0):
        if grad is None:
            raise GraphError("rigl needs the gradient of every candidate on its update steps")
        return grad.detach().abs()


class SET(DynamicSparse):
    """SET (Mocanu et al. 2018): grow candidates at random (seeded), weights drawn like the
    initial ones (the SET reference code draws new weights at random too). Never needs
    the candidates' gradient."""
    name = "set"
    label = phrase = "SET"
    grow_init = "random"

    def grow_score(self, grad, shape, step, salt=0):
        return torch.rand(shape, generator=self.generator(step, salt))


MODES: dict[str, type[Mode]] = {cls.name: cls for cls in
                                (DNW, Fixed, DNWNoUpdate, Complete, FineTune, Lottery, TargetedDropout, RigL, SET)}


#: the modes of :func:`wiring.sparsify.sparsify`'s layers (per weight entry)
SPARSE_MODES: tuple[str, ...] = tuple(name for name, cls in MODES.items() if cls.per_weight)

#: the modes a bare function can apply (:func:`wiring.ops.dnw_propagate`): no source run, no chance
STATELESS: tuple[str, ...] = tuple(name for name, cls in MODES.items()
                                   if not (cls.needs_source or cls.stochastic or cls.updates))


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


def mode_label(name: str) -> str:
    """How plots and pictures name the mode called ``name`` (its :attr:`~Mode.label`); a name
    that is no mode (a run of another version, a hand-written file) is shown as it is.

    >>> mode_label("rigl"), mode_label("fixed"), mode_label("magic")
    ('RigL', 'random graph (fixed)', 'magic')
    """
    return MODES[name].label if name in MODES else name


def every_candidate_real(mode: str, preset: str = "") -> bool:
    """Whether every candidate edge is real, so that a budget k does not apply: a mode
    whose :attr:`~Mode.all_real` is set (``complete``), or the ``complete`` preset (every
    candidate in the initial wiring). False for a name that is no mode.

    >>> every_candidate_real("complete"), every_candidate_real("dnw", "complete"), every_candidate_real("dnw")
    (True, True, False)
    """
    return (mode in MODES and MODES[mode].all_real) or preset == "complete"


def clear_optimizer_state(optimizer: Any, param: Tensor, where: Tensor) -> None:
    """Zero ``optimizer``'s per-entry state of ``param`` (SGD's momentum, Adam's moments) at the
    entries ``where`` (bool, ``param``'s shape): a grown edge starts with no momentum, as RigL's."""
    if optimizer is None:
        return
    with torch.no_grad():
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value[where.to(value.device)] = 0


def mode_options(name: str, offered: Mapping[str, Any]) -> dict[str, Any]:
    """The options mode ``name`` takes (its :attr:`Mode.options`) among those ``offered`` by the
    caller (``wiring.train`` offers every one a config gives: ``rho``, ``update_every``, ...).

    >>> mode_options("td", {"rho": 0.5, "update_every": 10}), mode_options("dnw", {"rho": 0.5})
    ({'rho': 0.5}, {})
    """
    return {key: offered[key] for key in mode_class(name).options if key in offered}


def make_mode(name: str, k: int, **options) -> Mode:
    """The mode called ``name`` with budget ``k``.

    >>> make_mode("dnw", 3)
    DNW(k=3)
    """
    return mode_class(name)(k, **options)
