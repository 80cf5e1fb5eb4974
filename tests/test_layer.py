"""Tests for wiring.layer.WiredGraph: real-edge budget, edge swaps, aggregation,
freezing, export and state.

Most checks use the 5-node static graph [2, 2, 1] whose 8 candidates are, in order,
0->2 1->2 0->3 1->3 0->4 1->4 2->4 3->4, with hand-set weights.
"""
from __future__ import annotations

import pytest
import torch

from wiring.graph import GraphError, Wiring, dynamic_graph, static_graph
from wiring.layer import WiredGraph
from wiring.modes import Selection
from wiring.ops import dnw_propagate, topk_mask

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


def g5():
    return static_graph([2, 2, 1])


def set_weights(layer: WiredGraph, values, freeze: bool = True) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(values, dtype=layer.weight.dtype))
    if freeze:
        layer.freeze(topk_mask(layer.weight, layer.k))


def idx(mask: torch.Tensor) -> list[int]:
    return mask.nonzero().flatten().tolist()


def linear_op(level, inputs):
    return (level + 1) * inputs


# ----------------------------------------------------------------------------- budget

def test_construction_attributes():
    layer = WiredGraph(g5(), edges=3, seed=0)
    assert layer.k == 3 and layer.num_candidates == 8 and layer.density == 0.375
    assert layer.mode.name == "dnw" and layer.preset == "random_k"
    assert isinstance(layer.weight, torch.nn.Parameter) and layer.weight.shape == (8,)
    assert torch.equal(layer.frozen_mask, topk_mask(layer.weight, 3))      # initial top-k frozen
    assert torch.equal(layer.edge_index, g5().edge_index)


@pytest.mark.parametrize("edges", [0, 9, -1])
def test_invalid_edges(edges):
    with pytest.raises(GraphError):
        WiredGraph(g5(), edges=edges)


def test_static_exactly_k_through_training():
    torch.manual_seed(0)
    layer = WiredGraph(static_graph([3, 4, 4, 2]), edges=9, seed=1)
    assert int(layer.real_mask().sum()) == 9
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x0 = torch.randn(3, 10)
    target = torch.randn(2, 10)
    sets = []
    for _ in range(8):
        out = layer.run_static(x0, lambda lvl, i: torch.tanh(i))[-1]
        loss = (out - target).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert int(layer.real_mask().sum()) == 9
        assert layer.select().num_real == 9
        sets.append(tuple(idx(layer.real_mask())))
    assert len(set(sets)) > 1                          # the real set did move at lr 0.5


def test_dynamic_exactly_k_through_training():
    torch.manual_seed(0)
    layer = WiredGraph(dynamic_graph(5), edges=6, seed=2)
    assert int(layer.real_mask().sum()) == 6
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(5, 4)
    for _ in range(6):
        sel = layer.select()
        h = x
        for _t in range(3):
            h = torch.tanh(layer.aggregate(h, sel))
        loss = (h - 1).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        assert bool((layer.weight.grad[~sel.mask] != 0).any())     # hallucinated edges learn
        opt.step()
        assert int(layer.real_mask().sum()) == 6


# ----------------------------------------------------------------------------- swaps

def swap_setup(mode):
    layer = WiredGraph(g5(), edges=3, mode=mode, seed=0)
    # real: 0->2, 1->2, 0->3 (nothing reaches the output node 4)
    set_weights(layer, [1.0, 0.9, 0.8, 0.1, 0.05, 0.0, 0.0, 0.0])
    return layer


def sgd_step(layer, lr):
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    out = layer.run_static(torch.ones(2, 1), linear_op)[-1]
    loss = -out.sum()
    opt.zero_grad()
    loss.backward()
    grad = layer.weight.grad.clone()
    opt.step()
    return grad


def test_dnw_edges_swap():
    layer = swap_setup("dnw")
    assert idx(layer.real_mask()) == [0, 1, 2]
    grad = sgd_step(layer, lr=10.0)
    # dL/dI_4 = -3 (node op x3 at level 2); Z_0 = Z_1 = 1, Z_2 = 2 * 1.9, Z_3 = 2 * 0.8
    assert grad.tolist() == pytest.approx([0, 0, 0, 0, -3, -3, -11.4, -4.8])
    assert layer.weight.tolist() == pytest.approx([1.0, 0.9, 0.8, 0.1, 30.05, 30.0, 114.0, 48.0])
    assert idx(layer.real_mask()) == [4, 6, 7]       # three hallucinated edges swapped in


def test_fixed_never_swaps_and_hallucinated_get_zero_grad():
    layer = swap_setup("fixed")
    frozen = layer.frozen_mask.clone()
    for _ in range(3):
        before = layer.weight.detach().clone()
        grad = sgd_step(layer, lr=10.0)
        assert torch.equal(grad[~frozen], torch.zeros(5))
        assert torch.equal(layer.weight.detach()[~frozen], before[~frozen])
        assert idx(layer.real_mask()) == [0, 1, 2]


def test_fixed_real_edges_do_learn():
    layer = WiredGraph(g5(), edges=3, mode="fixed", seed=0)
    set_weights(layer, [1.0, 0.1, 0.8, 0.1, 0.05, 0.0, 0.9, 0.0])      # real 0->2, 0->3, 2->4
    grad = sgd_step(layer, lr=0.1)
    # dL/dI_4 = -3; dL/dZ_2 = 0.9 * -3; dL/dI_2 = 2 * -2.7; Z_2 = 2 * 1.0 (1 -> 2 not real)
    assert grad.tolist() == pytest.approx([-5.4, 0, 0, 0, 0, 0, -6.0, 0])
    assert idx(layer.real_mask()) == [0, 2, 6]


def test_dnw_no_update_zero_grad_to_hallucinated_but_recomputes_topk():
    layer = swap_setup("dnw_no_update")
    grad = sgd_step(layer, lr=10.0)
    assert torch.equal(grad, torch.zeros(8))
    with torch.no_grad():
        layer.weight[7] = 5.0
    assert idx(layer.real_mask()) == [0, 1, 7]


# ----------------------------------------------------------------------------- hand computation

def test_run_static_hand_computation_and_gradients():
    layer = WiredGraph(g5(), edges=5, seed=0)
    set_weights(layer, [1.0, -2.0, 0.5, 3.0, 0.25, 4.0, -1.5, 0.1])
    assert idx(layer.real_mask()) == [0, 1, 3, 5, 6]
    x0 = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    states = layer.run_static(x0, linear_op)
    assert [s.tolist() for s in states] == [
        [[1.0, 2.0], [3.0, -1.0]],
        [[-10.0, 8.0], [18.0, -6.0]],        # 2 * (x0 - 2 x1), 2 * (3 x1)
        [[81.0, -48.0]],                     # 3 * (4 x1 - 1.5 Z_2)
    ]
    states[-1].sum().backward()
    # dL/dI_4 = 3; dL/dI_2 = 2 * (-1.5 * 3) = -9; dL/dI_3 = 0 (3 -> 4 not real)
    assert layer.weight.grad.tolist() == pytest.approx([-27.0, -18.0, 0.0, 0.0, 9.0, 6.0, -6.0, 36.0])
    torch.testing.assert_close(x0.grad, torch.tensor([[-9.0, -9.0], [30.0, 30.0]]))


def test_run_static_uses_given_selection():
    layer = WiredGraph(g5(), edges=5, seed=0)
    set_weights(layer, [1.0, -2.0, 0.5, 3.0, 0.25, 4.0, -1.5, 0.1])
    sel = Selection(torch.tensor([False, False, False, False, True, False, False, False]), True)
    out = layer.run_static(torch.tensor([[2.0], [5.0]]), linear_op, selection=sel)[-1]
    assert out.tolist() == [[1.5]]                                      # 3 * 0.25 * 2


def test_run_static_errors():
    layer = WiredGraph(g5(), edges=3)
    with pytest.raises(GraphError, match="2 input node rows"):
        layer.run_static(torch.zeros(3, 4), linear_op)
    dyn = WiredGraph(dynamic_graph(4), edges=3)
    with pytest.raises(GraphError, match="static"):
        dyn.run_static(torch.zeros(4, 2), linear_op)
    with pytest.raises(GraphError, match="level"):
        layer.aggregate(torch.zeros(5, 2), layer.select())


@pytest.mark.parametrize("mode", ["dnw", "dnw_no_update", "fixed", "complete"])
def test_aggregate_dynamic_equals_dnw_propagate(mode):
    g = dynamic_graph(5, inputs=1, outputs=1)
    k = g.num_candidates if mode == "complete" else 7
    layer = WiredGraph(g, edges=k, mode=mode, seed=3).double()
    if mode == "fixed":                               # a frozen set that is not the top-k
        frozen = torch.zeros(g.num_candidates, dtype=torch.bool)
        frozen[torch.randperm(g.num_candidates, generator=torch.Generator().manual_seed(0))[:7]] = True
        layer.freeze(frozen)
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gout = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    xa = x.clone().requires_grad_()
    out = layer.aggregate(xa, layer.select())
    (out * gout).sum().backward()

    xb = x.clone().requires_grad_()
    wb = layer.weight.detach().clone().requires_grad_()
    ref = dnw_propagate(xb, layer.edge_index, wb, k=k, mode=mode,
                        real_mask=layer.frozen_mask if mode == "fixed" else None)
    (ref * gout).sum().backward()

    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.weight.grad, wb.grad, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- modes in the layer

def test_complete_and_td_in_layer():
    layer = WiredGraph(g5(), edges=8, mode="complete")
    assert layer.real_mask().all()
    td = WiredGraph(static_graph([5, 5, 5]), edges=4, mode="td", mode_options={"rho": 0.5}, seed=0)
    assert td.mode.rho == 0.5
    torch.manual_seed(0)
    td.train()
    assert td.select().num_real > 4
    assert bool(td.select().mask[td.real_mask()].all())
    td.eval()
    assert torch.equal(td.select().mask, topk_mask(td.weight, 4))
    assert int(td.real_mask().sum()) == 4


# ----------------------------------------------------------------------------- freeze

def test_freeze_errors():
    layer = WiredGraph(g5(), edges=3, mode="fixed")
    with pytest.raises(GraphError, match="bool"):
        layer.freeze(torch.ones(8))
    with pytest.raises(GraphError, match=r"\[8\]"):
        layer.freeze(torch.ones(7, dtype=torch.bool))
    with pytest.raises(GraphError, match=r"\[8\]"):
        layer.freeze(torch.ones(1, 8, dtype=torch.bool))
    with pytest.raises(GraphError, match="2 edges, expected k=3"):
        layer.freeze(torch.tensor([True, True] + [False] * 6))
    mask = torch.tensor([False] * 5 + [True] * 3)
    layer.freeze(mask)
    assert torch.equal(layer.real_mask(), mask)
    assert torch.equal(layer.select().mask, mask)


def test_fine_tune_and_lottery_use_frozen():
    for mode in ("fine_tune", "lottery"):
        layer = WiredGraph(g5(), edges=2, mode=mode)
        mask = torch.tensor([False, False, False, True, False, False, False, True])
        layer.freeze(mask)
        assert torch.equal(layer.real_mask(), mask)


# ----------------------------------------------------------------------------- export

def test_wiring_export():
    layer = WiredGraph(g5(), edges=3, mode="dnw", preset="ws", seed=4)
    set_weights(layer, [1.0, -2.0, 0.5, 3.0, 0.25, 4.0, -1.5, 0.1])
    w = layer.wiring(step=7)
    assert isinstance(w, Wiring)
    assert w.num_edges == 3 and w.real is None
    assert w.edge_index.tolist() == [[1, 1, 1], [2, 3, 4]]
    assert w.weight.tolist() == [-2.0, 3.0, 4.0]
    assert w.level.tolist() == [0, 0, 1, 1, 2]
    assert w.role.tolist() == g5().role.tolist()
    assert w.attrs == {"k": 3, "density": 0.375, "candidates": 8, "preset": "ws", "mode": "dnw",
                       "seed": 4, "static": True, "step": 7}
    full = layer.wiring(all_candidates=True)
    assert full.num_edges == 8
    assert full.real.dtype == torch.bool and int(full.real.sum()) == 3
    assert idx(full.real) == [1, 3, 5]
    assert torch.equal(full.weight, layer.weight.detach())
    assert torch.equal(full.real_edges().edge_index, w.edge_index)
    # exported tensors are copies
    full.weight[0] = 99.0
    assert layer.weight[0].item() == 1.0


def test_wiring_roundtrip_through_graphml_preset():
    a = WiredGraph(static_graph([3, 4, 2]), edges=6, seed=5)
    b = WiredGraph(static_graph([3, 4, 2]), edges=6, preset="graphml", seed=9,
                   preset_options={"wiring": a.wiring()})
    assert torch.equal(a.real_mask(), b.real_mask())
    assert torch.equal(a.weight[a.real_mask()], b.weight[b.real_mask()])


# ----------------------------------------------------------------------------- state

def test_state_dict_contents_and_restore():
    a = WiredGraph(g5(), edges=3, seed=0)
    set_weights(a, [1.0, -2.0, 0.5, 3.0, 0.25, 4.0, -1.5, 0.1])
    sd = a.state_dict()
    assert set(sd) == {"weight", "frozen_mask"}
    b = WiredGraph(g5(), edges=3, seed=123)
    assert not torch.equal(b.real_mask(), a.real_mask())
    b.load_state_dict(sd)
    assert torch.equal(b.real_mask(), a.real_mask())
    assert torch.equal(b.weight, a.weight)


def test_state_dict_restores_frozen_set_of_fixed_mode():
    a = WiredGraph(g5(), edges=3, mode="fixed", seed=0)
    mask = torch.tensor([True, False, False, False, False, True, False, True])
    a.freeze(mask)
    b = WiredGraph(g5(), edges=3, mode="fixed", seed=7)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.real_mask(), mask)


def test_double_and_to_cpu_move_buffers():
    layer = WiredGraph(g5(), edges=3).double()
    assert layer.weight.dtype == torch.float64
    assert layer.frozen_mask.dtype == torch.bool
    assert layer.edge_index.dtype == torch.long
    out = layer.run_static(torch.ones(2, 3, dtype=torch.float64), linear_op)[-1]
    assert out.dtype == torch.float64
    layer = layer.to("cpu")
    for t in (layer.weight, layer.edge_index, layer.level, layer.role, layer.frozen_mask):
        assert t.device.type == "cpu"
    names = {n for n, _ in layer.named_buffers()}
    assert names == {"edge_index", "level", "role", "frozen_mask", "_level_edges_1", "_level_edges_2"}
    assert layer._level_edges_2.dtype == torch.long and layer._level_edges_2.device.type == "cpu"


@CUDA
def test_cuda_matches_cpu():
    cpu = WiredGraph(static_graph([3, 4, 4, 2]), edges=9, seed=1).double()
    gpu = WiredGraph(static_graph([3, 4, 4, 2]), edges=9, seed=1).double().to("cuda")
    for t in (gpu.weight, gpu.edge_index, gpu.level, gpu.role, gpu.frozen_mask):
        assert t.device.type == "cuda"
    x = torch.randn(3, 5, dtype=torch.float64)
    a = cpu.run_static(x, lambda lvl, i: torch.tanh(i))[-1]
    b = gpu.run_static(x.cuda(), lambda lvl, i: torch.tanh(i))[-1]
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(b.cpu(), a)
    torch.testing.assert_close(gpu.weight.grad.cpu(), cpu.weight.grad)
    assert torch.equal(gpu.real_mask().cpu(), cpu.real_mask())
    assert gpu.wiring().weight.device.type == "cpu"


def test_check_invariants_names_what_is_broken():
    from wiring.graph import static_graph
    layer = WiredGraph(static_graph([2, 2, 1]), edges=3, mode="fixed", seed=0)
    layer.check_invariants()
    layer.frozen_mask[:] = True                       # a corrupted frozen set: 8 real edges, not 3
    with pytest.raises(GraphError, match="8 real edges, expected 3"):
        layer.check_invariants()
    layer = WiredGraph(static_graph([2, 2, 1]), edges=3, seed=0)
    with torch.no_grad():
        layer.weight[0] = float("inf")
    with pytest.raises(GraphError, match="not finite"):
        layer.check_invariants()


def test_candidate_grad_every_n_gives_hallucinated_gradients_on_every_nth_step_only():
    from wiring.graph import static_graph
    layer = WiredGraph(static_graph([3, 4, 2]), edges=5, seed=0, candidate_grad_every=3)
    x = torch.randn(3, 8)
    hallucinated = ~layer.real_mask()
    seen = []
    for _ in range(6):
        layer.weight.grad = None
        layer.run_static(x, lambda level, inputs: torch.tanh(inputs))[-1].square().sum().backward()
        seen.append(bool(layer.weight.grad[hallucinated].abs().sum() > 0))
        assert torch.count_nonzero(layer.weight.grad[~hallucinated]) > 0      # real edges: every step
    assert seen == [True, False, False, True, False, False]
    layer.eval()
    assert layer.select().grad_all                                          # evaluation is untouched


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_candidate_grad_every_must_be_a_positive_integer(every):
    with pytest.raises(GraphError, match="candidate_grad_every"):
        WiredGraph(static_graph([3, 4, 2]), edges=5, candidate_grad_every=every)


def test_edges_none_is_every_candidate():
    layer = WiredGraph(static_graph([3, 4, 2]), edges=None, mode="complete")
    assert layer.k == layer.num_candidates == 3 * 4 + 7 * 2 and layer.density == 1.0
    layer.check_invariants()
    dynamic = WiredGraph(dynamic_graph(5, inputs=2, outputs=1), edges=None)
    assert dynamic.k == dynamic.num_candidates and bool(dynamic.real_mask().all())

