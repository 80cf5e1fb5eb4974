"""Tests for wiring.modes: each mode's selection of real edges and its gradient rule.

Weights are hand-made vectors, so every expected mask is written out literally.
"""
from __future__ import annotations

import math

import pytest
import torch

from wiring.graph import GraphError
from wiring.modes import (
    DNW,
    MODES,
    SET,
    STATELESS,
    RigL,
    Complete,
    DNWNoUpdate,
    FineTune,
    Fixed,
    Lottery,
    Selection,
    TargetedDropout,
    drop_and_grow,
    drop_count,
    every_candidate_real,
    make_mode,
    mode_class,
    mode_options,
    top_scores,
)

# |w| = 0.5, 1.0, 1.0, 0.5, 0.2, 3.0, 0.0, 0.5 -> order by magnitude with ties to the lower index:
# 5 (3.0), 1 (1.0), 2 (1.0), 0 (0.5), 3 (0.5), 7 (0.5), 4 (0.2), 6 (0.0)
W = torch.tensor([0.5, -1.0, 1.0, -0.5, 0.2, 3.0, 0.0, 0.5])
TOP = {
    1: [5],
    2: [5, 1],
    3: [5, 1, 2],
    4: [5, 1, 2, 0],
    5: [5, 1, 2, 0, 3],
    6: [5, 1, 2, 0, 3, 7],
    8: list(range(8)),
}
FROZEN = torch.tensor([False, False, False, False, True, False, True, True])   # not the top-3


def mask_of(idx, n=8):
    m = torch.zeros(n, dtype=torch.bool)
    m[list(idx)] = True
    return m


# ----------------------------------------------------------------------------- dnw / dnw_no_update

@pytest.mark.parametrize("name, grad_all", [("dnw", True), ("dnw_no_update", False)])
@pytest.mark.parametrize("k", sorted(TOP))
@pytest.mark.parametrize("training", [True, False])
def test_topk_modes_exact(name, grad_all, k, training):
    sel = make_mode(name, k).select(W, FROZEN, training)
    assert isinstance(sel, Selection)
    assert sel.mask.dtype == torch.bool
    assert torch.equal(sel.mask, mask_of(TOP[k]))
    assert sel.grad_all is grad_all
    assert sel.num_real == k


@pytest.mark.parametrize("cls", [DNW, DNWNoUpdate])
def test_topk_modes_ignore_frozen_and_follow_weights(cls):
    mode = cls(2)
    w = W.clone()
    assert torch.equal(mode.select(w, FROZEN, True).mask, mask_of([5, 1]))
    w[6] = -10.0                     # a hallucinated edge overtakes: recomputed every call
    assert torch.equal(mode.select(w, FROZEN, True).mask, mask_of([6, 5]))


def test_topk_all_equal_magnitudes_take_lowest_indices():
    w = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    assert make_mode("dnw", 3).select(w, torch.zeros(5, dtype=torch.bool), True).mask.tolist() == \
        [True, True, True, False, False]


# ----------------------------------------------------------------------------- frozen modes

@pytest.mark.parametrize("name", ["fixed", "fine_tune", "lottery"])
@pytest.mark.parametrize("training", [True, False])
def test_frozen_modes_return_frozen_mask(name, training):
    mode = make_mode(name, 3)
    assert mode.uses_frozen
    sel = mode.select(W, FROZEN, training)
    assert torch.equal(sel.mask, FROZEN)
    assert sel.grad_all is False
    # weights do not matter at all
    sel2 = mode.select(torch.randn(8) * 100, FROZEN, training)
    assert torch.equal(sel2.mask, FROZEN)


def test_frozen_mode_classes():
    assert issubclass(FineTune, Fixed) and issubclass(Lottery, Fixed)
    for cls in (DNW, DNWNoUpdate, Complete, TargetedDropout):
        assert not cls.uses_frozen


# ----------------------------------------------------------------------------- complete

@pytest.mark.parametrize("training", [True, False])
def test_complete_all_true(training):
    sel = make_mode("complete", 8).select(W, FROZEN, training)
    assert sel.mask.dtype == torch.bool
    assert sel.mask.tolist() == [True] * 8
    assert sel.grad_all is True


# ----------------------------------------------------------------------------- targeted dropout

def test_td_eval_is_exact_topk():
    for k in (1, 3, 6):
        sel = make_mode("td", k, rho=0.5).select(W, FROZEN, False)
        assert torch.equal(sel.mask, mask_of(TOP[k]))
        assert sel.grad_all is False


def test_td_default_rho():
    assert make_mode("td", 3).rho == 0.95


def test_td_training_drops_others_with_frequency_rho():
    torch.manual_seed(1234)
    c, k, rho, draws = 40, 5, 0.7, 3000
    w = torch.randn(c)
    top = make_mode("dnw", k).select(w, torch.zeros(c, dtype=torch.bool), False).mask
    mode = make_mode("td", k, rho=rho)
    kept = torch.zeros(c)
    for _ in range(draws):
        sel = mode.select(w, torch.zeros(c, dtype=torch.bool), True)
        assert sel.grad_all is False
        assert bool(sel.mask[top].all()), "the top-k must always be kept"
        kept += sel.mask.float()
    freq_kept = kept / draws
    assert torch.equal(freq_kept[top], torch.ones(k))
    others = freq_kept[~top]
    # each other edge kept with probability 1 - rho = 0.3 (sd per edge ~ 0.0084)
    assert others.sub(1 - rho).abs().max().item() < 0.05
    assert abs(others.mean().item() - (1 - rho)) < 0.01


def test_td_draws_differ_between_steps_and_are_seeded():
    w = torch.randn(30, generator=torch.Generator().manual_seed(0))
    mode = make_mode("td", 3, rho=0.5)
    z = torch.zeros(30, dtype=torch.bool)
    torch.manual_seed(7)
    a, b = mode.select(w, z, True).mask, mode.select(w, z, True).mask
    assert not torch.equal(a, b)
    torch.manual_seed(7)
    assert torch.equal(mode.select(w, z, True).mask, a)


def test_td_rho_one_is_exact_topk_and_rho_zero_all():
    torch.manual_seed(0)
    for _ in range(50):
        assert torch.equal(make_mode("td", 3, rho=1.0).select(W, FROZEN, True).mask, mask_of(TOP[3]))
        assert make_mode("td", 3, rho=0.0).select(W, FROZEN, True).mask.all()


@pytest.mark.parametrize("rho", [-0.01, 1.01, 2.0, -1.0])
def test_td_rho_out_of_range(rho):
    with pytest.raises(GraphError, match="rho"):
        make_mode("td", 3, rho=rho)


# ----------------------------------------------------------------------------- registry

def test_registry_names():
    assert set(MODES) == {"dnw", "fixed", "dnw_no_update", "complete", "fine_tune", "lottery", "td", "rigl", "set"}
    for name, cls in MODES.items():
        assert cls.name == name
        mode = make_mode(name, 4)
        assert isinstance(mode, cls) and mode.k == 4


def test_make_mode_unknown_lists_modes():
    with pytest.raises(GraphError) as err:
        make_mode("magic", 3)
    msg = str(err.value)
    assert "magic" in msg
    for name in MODES:
        assert name in msg


def test_repr():
    assert repr(make_mode("dnw", 3)) == "DNW(k=3)"
    assert repr(make_mode("fixed", 7)) == "Fixed(k=7)"


# ----------------------------------------------------------------------------- what a mode says about itself

def test_mode_attributes():
    """The properties the rest of the project reads instead of comparing mode names."""
    facts = {name: (cls.uses_frozen, cls.all_real, cls.needs_source, cls.rewinds, cls.stochastic, cls.updates)
             for name, cls in MODES.items()}
    assert facts == {
        "dnw": (False, False, False, False, False, False),
        "dnw_no_update": (False, False, False, False, False, False),
        "fixed": (True, False, False, False, False, False),
        "complete": (False, True, False, False, False, False),
        "fine_tune": (True, False, True, False, False, False),
        "lottery": (True, False, True, True, False, False),
        "td": (False, False, False, False, True, False),
        "rigl": (True, False, False, False, False, True),
        "set": (True, False, False, False, False, True),
    }
    assert len({cls.label for cls in MODES.values()}) == len(MODES)      # plots tell them apart
    assert STATELESS == ("dnw", "fixed", "dnw_no_update", "complete")


def test_mode_class_and_every_candidate_real():
    assert mode_class("lottery") is Lottery
    with pytest.raises(GraphError, match="unknown mode 'magic'"):
        mode_class("magic")
    assert every_candidate_real("complete") and every_candidate_real("dnw", "complete")
    assert not every_candidate_real("dnw", "random_k") and not every_candidate_real("magic")


def test_mode_options_only_td_rigl_and_set_take_options():
    offered = {"rho": 0.25, "update_every": 7, "drop_fraction": 0.4, "drop_schedule": "constant",
               "drop_until": 0.5, "seed": 3, "total_steps": 40}
    assert make_mode("td", 3, **mode_options("td", offered)).rho == 0.25
    assert all(mode_options(name, offered) == {} for name in MODES if name not in ("td", "rigl", "set"))
    for name in ("rigl", "set"):
        mode = make_mode(name, 3, **mode_options(name, offered))
        assert (mode.update_every, mode.drop_fraction, mode.drop_schedule, mode.drop_until, mode.total_steps,
                mode.seed) == (7, 0.4, "constant", 0.5, 40, 3)
        assert mode.updates_planned() == [7, 14]


# ----------------------------------------------------------------------------- rigl / set: one rewiring

# 8 candidates, 4 real (0..3). Real |w|: 0.5, 0.1, 0.1, 2.0 (1 and 2 tie); candidate 4 is not real,
# so its large weight does not count. |g| of the others: 4: 0.3, 5: 0.7, 6: 0.7 (5 and 6 tie), 7: 0.1.
REAL = mask_of([0, 1, 2, 3])
WR = torch.tensor([0.5, -0.1, 0.1, 2.0, 9.0, 0.0, 0.0, 0.0])
GR = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.3, -0.7, 0.7, 0.1])


@pytest.mark.parametrize("n, kept, grown", [
    (0, [0, 1, 2, 3], []),
    (1, [0, 1, 3], [5]),            # 1 and 2 tie: the lower index stays; 5 and 6 tie: the lower grows
    (2, [0, 3], [5, 6]),
    (3, [3], [5, 6, 4]),
    (4, [], [5, 6, 4, 7]),
])
def test_drop_and_grow_drops_the_smallest_real_and_grows_the_largest_score(n, kept, grown):
    new, fresh = drop_and_grow(REAL, WR, n, GR)
    assert torch.equal(new, mask_of(kept + grown)) and torch.equal(fresh, mask_of(grown))
    assert int(new.sum()) == 4


def test_drop_and_grow_nan_weight_drops_first_nan_score_grows_last():
    w = WR.clone()
    w[3] = float("nan")                                   # the largest real weight, but NaN
    g = GR.clone()
    g[5] = float("nan")                                   # the largest score, but NaN
    new, fresh = drop_and_grow(REAL, w, 1, g)
    assert torch.equal(new, mask_of([0, 1, 2, 6])) and torch.equal(fresh, mask_of([6]))
    new, fresh = drop_and_grow(REAL, w, 4, g)             # even a zero score ranks above the NaN one
    assert torch.equal(new, mask_of([6, 4, 7, 0])) and torch.equal(fresh, mask_of([6, 4, 7]))


def test_drop_and_grow_a_dropped_edge_may_grow_back_and_is_not_grown():
    g = GR.clone()
    g[2] = 5.0                                            # the dropped edge has the largest gradient
    new, fresh = drop_and_grow(REAL, WR, 1, g)
    assert torch.equal(new, REAL) and not fresh.any()


def test_top_scores_ties_and_exclusions():
    s = torch.tensor([1.0, 2.0, 2.0, -float("inf"), 2.0, float("nan")])
    assert top_scores(s, 2).tolist() == [False, True, True, False, False, False]
    assert top_scores(s, 5).tolist() == [True, True, True, False, True, True]
    assert not top_scores(s, 0).any()


def test_cosine_drop_count_per_update_follows_the_schedule():
    """k = 100, drop fraction 0.3, 80 steps, drop until 0.75: T_end = 60, updates every 10 steps."""
    mode = make_mode("rigl", 100, update_every=10, drop_fraction=0.3, drop_schedule="cosine", drop_until=0.75,
                     total_steps=80)
    due = [t for t in range(0, 81) if mode.update_due(t)]
    assert due == [10, 20, 30, 40, 50, 60] and mode.last_update == 60
    counts = [mode.drop_count(t) for t in due]
    assert counts == [27, 22, 15, 7, 2, 0]
    assert counts == [math.floor(100 * 0.3 * (1 + math.cos(math.pi * t / 60)) / 2 + 1e-9) for t in due]


def test_constant_drop_count_and_no_update_after_drop_until():
    mode = make_mode("set", 50, update_every=4, drop_fraction=0.2, drop_schedule="constant", drop_until=0.5,
                     total_steps=30)
    assert [t for t in range(0, 31) if mode.update_due(t)] == [4, 8, 12]     # T_end = 15
    assert {mode.drop_count(t) for t in (4, 8, 12)} == {10}
    assert drop_count(50, 16, 0.2, "constant", 15) == 0
    assert not make_mode("rigl", 5, total_steps=0).updates_planned()       # no run length: never rewires


def test_rigl_grows_by_gradient_set_at_random_seeded():
    rigl, set_ = make_mode("rigl", 4), make_mode("set", 4, seed=3)
    assert torch.equal(rigl.grow_score(GR, GR.shape, 10), GR.abs())
    with pytest.raises(GraphError, match="gradient"):
        rigl.grow_score(None, GR.shape, 10)
    a = set_.grow_score(None, GR.shape, 10, salt=1)
    assert torch.equal(a, make_mode("set", 4, seed=3).grow_score(None, GR.shape, 10, salt=1))   # resumable
    assert not torch.equal(a, set_.grow_score(None, GR.shape, 20, salt=1))                       # a new draw
    assert not torch.equal(a, make_mode("set", 4, seed=4).grow_score(None, GR.shape, 10, salt=1))
    k = make_mode("set", 4, drop_fraction=0.5, total_steps=100, drop_schedule="constant")
    new, fresh = k.rewire(REAL, WR, a, 10)                 # drops 2 by |w| (1, 2), grows 2 of the others at random
    kept = mask_of([0, 3])
    assert int(new.sum()) == 4 and torch.equal(new & kept, kept) and int(fresh.sum()) <= 2
    assert torch.equal(new & ~kept, top_scores(torch.where(kept, -float("inf"), a), 2))


@pytest.mark.parametrize("cls", [RigL, SET])
def test_rewiring_modes_select_the_frozen_set_and_rigl_asks_every_candidate_gradient(cls):
    mode = cls(3)
    for training in (True, False):
        sel = mode.select(W, FROZEN, training)
        assert torch.equal(sel.mask, FROZEN) and sel.grad_all is (cls is RigL)


@pytest.mark.parametrize("options, message", [
    ({"update_every": 0}, "update_every"), ({"drop_fraction": 1.5}, "drop_fraction"),
    ({"drop_schedule": "linear"}, "drop schedule"), ({"drop_until": -0.1}, "drop_until"),
    ({"total_steps": -1}, "total_steps"),
])
def test_rewiring_mode_options_out_of_range(options, message):
    with pytest.raises(GraphError, match=message):
        make_mode("rigl", 3, **options)
