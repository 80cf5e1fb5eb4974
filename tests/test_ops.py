"""Tests for wiring.ops: top-k selection and the DNW propagate operator.

The engine (CSR / dense forward, block-wise hallucinated gradients) is held
against ``dense_reference`` (a dense masked matrix with a straight-through top-k,
the authors' formulation) in float64, and against gradients computed by hand.
"""
from __future__ import annotations

import doctest

import pytest
import torch

import wiring.graph
import wiring.ops
from backend_params import skip_unless_on
from wiring import ops
from wiring.graph import GraphError, dynamic_graph, from_edge_index, static_graph
from wiring.ops import (
    DENSE_FORWARD_FILL,
    DENSE_GRAD_FILL,
    MODES,
    dense_reference,
    dnw_propagate,
    mode_selection,
    propagate,
    topk_mask,
)

DT = torch.float64
RTOL = 1e-6


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """Max abs error within rtol of the expected tensor's scale (relative, robust to zeros)."""
    assert actual.shape == expected.shape
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} * {scale:.3g}"


def reference_topk(weight: torch.Tensor, k: int) -> torch.Tensor:
    """k largest |w|, ties to the lower index, by a plain Python sort."""
    mags = weight.abs().tolist()
    order = sorted(range(len(mags)), key=lambda i: (-mags[i], i))
    mask = torch.zeros(len(mags), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


# ----------------------------------------------------------------------------- topk_mask

def test_topk_mask_exact_count_random():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        c = int(torch.randint(1, 60, (1,), generator=gen))
        k = int(torch.randint(1, c + 1, (1,), generator=gen))
        if trial % 3 == 0:  # many ties: few distinct magnitudes, both signs
            w = (torch.randint(-3, 4, (c,), generator=gen)).to(DT)
        else:
            w = torch.randn(c, generator=gen, dtype=DT)
        mask = topk_mask(w, k)
        assert mask.dtype == torch.bool and mask.shape == w.shape
        assert int(mask.sum()) == k
        assert torch.equal(mask, reference_topk(w, k))
        # every real magnitude >= every hallucinated magnitude
        if k < c:
            assert w.abs()[mask].min() >= w.abs()[~mask].max()


@pytest.mark.parametrize("c", [1, 2, 7, 100])
def test_topk_mask_k1_and_kC(c):
    w = torch.randn(c, generator=torch.Generator().manual_seed(c))
    one = topk_mask(w, 1)
    assert int(one.sum()) == 1 and int(one.nonzero()) == int(w.abs().argmax())
    assert bool(topk_mask(w, c).all())


def test_topk_mask_ties_to_lower_index_exact():
    w = torch.tensor([1.0, -1.0, 1.0, 0.5, -1.0, 2.0])
    assert topk_mask(w, 1).tolist() == [False, False, False, False, False, True]
    assert topk_mask(w, 2).tolist() == [True, False, False, False, False, True]
    assert topk_mask(w, 3).tolist() == [True, True, False, False, False, True]
    assert topk_mask(w, 4).tolist() == [True, True, True, False, False, True]
    assert topk_mask(w, 5).tolist() == [True, True, True, False, True, True]
    # all equal: the first k
    assert topk_mask(torch.full((5,), -0.3), 2).tolist() == [True, True, False, False, False]
    # +0 and -0 tie
    assert topk_mask(torch.tensor([-0.0, 0.0, 0.0]), 2).tolist() == [True, True, False]


def test_topk_mask_deterministic_and_ignores_grad():
    w = torch.randint(-2, 3, (5000,)).to(torch.float32).requires_grad_()
    first = topk_mask(w, 1234)
    for _ in range(5):
        assert torch.equal(topk_mask(w, 1234), first)
    assert not first.requires_grad
    assert torch.equal(first, reference_topk(w.detach(), 1234))


@pytest.mark.parametrize("k, word", [(0, "at least 1"), (6, "more than"), (2.5, "integer")])
def test_topk_mask_bad_k(k, word):
    with pytest.raises(GraphError, match=word):
        topk_mask(torch.randn(5), k)


# ----------------------------------------------------------------------------- helpers for equivalence

def selection(mode: str, w: torch.Tensor, k: int, fixed_mask: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The mask and grad_all the reference should use for a mode (independent of ops.mode_selection)."""
    if mode in ("dnw", "dnw_no_update"):
        return reference_topk(w.detach(), k), mode == "dnw"
    if mode == "fixed":
        return fixed_mask, False
    return torch.ones_like(fixed_mask), True


def engine_and_reference(x0, edge_index, w0, mode, k, fixed_mask, grad_out):
    """(out, grad_x, grad_w) of dnw_propagate and of dense_reference for the same inputs."""
    results = []
    for engine in (True, False):
        x = x0.clone().requires_grad_()
        w = w0.clone().requires_grad_()
        if engine:
            out = dnw_propagate(x, edge_index, w, k=k, mode=mode, real_mask=fixed_mask)
        else:
            mask, grad_all = selection(mode, w0, k, fixed_mask)
            out = dense_reference(x, edge_index, w, mask, grad_all)
        (out * grad_out).sum().backward()
        results.append((out.detach(), x.grad, w.grad))
    return results


def random_fixed_mask(c: int, k: int, gen: torch.Generator) -> torch.Tensor:
    mask = torch.zeros(c, dtype=torch.bool)
    mask[torch.randperm(c, generator=gen)[:k]] = True
    return mask


def case(name: str):
    """(edge_index, num_nodes, weights, ks) for a named graph case."""
    gen = torch.Generator().manual_seed(CASES.index(name) + 100)
    if name == "static":
        g = static_graph([4, 6, 5, 3])
    elif name == "static_big":
        g = static_graph([8, 20, 20, 6])
    elif name == "dynamic":
        g = dynamic_graph(7, inputs=2, outputs=2)
    elif name == "dynamic_self_loops":
        g = dynamic_graph(6, self_loops=True)
    elif name == "capped":
        g = static_graph([12, 8, 8, 4], max_in_degree=3, seed=3)
    elif name == "capped_sparse":
        g = static_graph([40, 6, 3], max_in_degree=2, seed=5)
    elif name == "ties":
        g = static_graph([5, 5, 4])
    elif name == "shuffled":  # candidates in an arbitrary order
        g = static_graph([4, 5, 3])
    else:
        raise KeyError(name)
    c = g.num_candidates
    edge_index = g.edge_index
    if name == "ties":
        w = torch.randint(-2, 3, (c,), generator=gen).to(DT)  # magnitudes 0, 1, 2 only
    else:
        w = torch.randn(c, generator=gen, dtype=DT)
    if name == "shuffled":
        perm = torch.randperm(c, generator=gen)
        edge_index, w = edge_index[:, perm], w[perm]
    ks = sorted({1, 2, max(1, c // 10), c // 2, c - 1, c})
    return edge_index, g.num_nodes, w, ks


CASES = ["static", "static_big", "dynamic", "dynamic_self_loops", "capped", "capped_sparse", "ties", "shuffled"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_dnw_propagate_matches_dense_reference(name, mode, product_backend):
    edge_index, n, w, ks = case(name)
    c = edge_index.size(1)
    gen = torch.Generator().manual_seed(17)
    for k in ks:
        x = torch.randn(n, 5, generator=gen, dtype=DT)
        grad_out = torch.randn(n, 5, generator=gen, dtype=DT)
        fixed = random_fixed_mask(c, k, gen)
        (eo, ex, ew), (ro, rx, rw) = engine_and_reference(x, edge_index, w, mode, k, fixed, grad_out)
        assert_rel_close(eo, ro)
        assert_rel_close(ex, rx)
        assert_rel_close(ew, rw)
        if mode in ("dnw", "dnw_no_update"):
            # top-k real edges are exactly the reference ones (ties to the lower position)
            assert torch.equal(mode_selection(mode, w, k, None)[0], reference_topk(w, k))


def test_nodes_without_real_in_edges_get_zero(product_backend):
    g = static_graph([6, 10, 10, 4])
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(g.num_candidates, generator=gen, dtype=DT)
    k = 5
    mask = topk_mask(w, k)
    x = torch.randn(g.num_nodes, 3, generator=gen, dtype=DT)
    out = dnw_propagate(x, g.edge_index, w, k=k)
    has_in = torch.zeros(g.num_nodes, dtype=torch.bool)
    has_in[g.edge_index[1, mask]] = True
    assert int((~has_in).sum()) >= g.num_nodes - k
    assert bool((out[~has_in] == 0).all())
    assert bool((out[has_in] != 0).all())
    # level 0 (inputs) never receives anything
    assert bool((out[:6] == 0).all())


# ----------------------------------------------------------------------------- lower-level propagate on one level

@pytest.mark.parametrize("sizes, cap", [([4, 5, 6, 3], None), ([10, 6, 7, 3], 3), ([40, 5, 4], 2)])
@pytest.mark.parametrize("grad_all", [True, False])
def test_propagate_one_level_matches_whole_graph(sizes, cap, grad_all, product_backend):
    g = static_graph(sizes, max_in_degree=cap, seed=11)
    gen = torch.Generator().manual_seed(4)
    n, c = g.num_nodes, g.num_candidates
    w0 = torch.randn(c, generator=gen, dtype=DT)
    k = max(1, c // 4)
    mask = topk_mask(w0, k)
    x0 = torch.randn(n, 6, generator=gen, dtype=DT)
    ptr, cptr = g.level_ptr, g.candidate_level_ptr
    for lvl, block in enumerate(g.blocks, start=1):
        t0, t1 = ptr[lvl], ptr[lvl + 1]
        c0, c1 = cptr[lvl], cptr[lvl + 1]
        assert (block.cand_start, block.cand_end, block.target_start) == (c0, c1, t0)
        grad_rows = torch.randn(t1 - t0, 6, generator=gen, dtype=DT)

        x = x0[:t0].clone().requires_grad_()
        w = w0.clone().requires_grad_()
        out = propagate(x, w[c0:c1], g.edge_index[:, c0:c1], mask[c0:c1], num_targets=t1 - t0,
                        target_offset=t0, cand_offset=c0, blocks=[block], grad_all=grad_all)
        (out * grad_rows).sum().backward()

        # the whole graph through the dense reference, gradient only on this level's rows
        xr = x0.clone().requires_grad_()
        wr = w0.clone().requires_grad_()
        ref = dense_reference(xr, g.edge_index, wr, mask, grad_all)
        g_full = torch.zeros(n, 6, dtype=DT)
        g_full[t0:t1] = grad_rows
        (ref * g_full).sum().backward()

        assert_rel_close(out.detach(), ref.detach()[t0:t1])
        assert_rel_close(x.grad, xr.grad[:t0])
        assert_rel_close(w.grad, wr.grad)  # zero outside [c0, c1) on both sides
        assert bool((xr.grad[t0:] == 0).all())

        # and the same through dnw_propagate on the whole graph
        xd = x0.clone().requires_grad_()
        wd = w0.clone().requires_grad_()
        mode = "dnw" if grad_all else "dnw_no_update"
        outd = dnw_propagate(xd, g.edge_index, wd, k=k, mode=mode)
        (outd * g_full).sum().backward()
        assert_rel_close(out.detach(), outd.detach()[t0:t1])
        assert_rel_close(x.grad, xd.grad[:t0])
        assert_rel_close(w.grad, wd.grad)


def test_propagate_default_block_and_offsets_doc_case(product_backend):
    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=DT, requires_grad=True)
    ei = torch.tensor([[0, 1, 0, 2], [1, 2, 3, 3]])
    w = torch.tensor([1.0, 0.5, -1.0, 2.0], dtype=DT, requires_grad=True)
    real = torch.tensor([True, True, False, True])
    out = propagate(x, w, ei, real, num_targets=3, target_offset=1)
    assert out.flatten().tolist() == [1.0, 1.0, 6.0]
    out.backward(torch.tensor([[1.0], [10.0], [100.0]], dtype=DT))
    # grad_w[e] = x[u] * g[v - 1] for every candidate, hallucinated 0 -> 3 included
    assert w.grad.tolist() == [1.0, 20.0, 100.0, 300.0]
    # grad_x[u] = sum over real (u, v) of w g
    assert x.grad.flatten().tolist() == [1.0, 5.0, 200.0]


# ----------------------------------------------------------------------------- the three gradient paths and two forward paths

class Spy:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def run_whole_graph_with_blocks(g, k, grad_all, gen):
    """propagate over the whole static graph with the graph's own blocks, vs the dense reference."""
    n, c = g.num_nodes, g.num_candidates
    w0 = torch.randn(c, generator=gen, dtype=DT)
    mask = topk_mask(w0, k)
    x0 = torch.randn(n, 4, generator=gen, dtype=DT)
    grad_out = torch.randn(n, 4, generator=gen, dtype=DT)
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    out = propagate(x, w, g.edge_index, mask, num_targets=n, blocks=g.blocks, grad_all=grad_all)
    (out * grad_out).sum().backward()
    xr, wr = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    ref = dense_reference(xr, g.edge_index, wr, mask, grad_all)
    (ref * grad_out).sum().backward()
    assert_rel_close(out.detach(), ref.detach())
    assert_rel_close(x.grad, xr.grad)
    assert_rel_close(w.grad, wr.grad)
    return mask, w.grad


@pytest.mark.parametrize("path", ["complete", "gather", "sampled"])
def test_candidate_grad_paths(path, monkeypatch):
    if path == "complete":
        g = static_graph([3, 4, 2])
        assert all(b.complete for b in g.blocks)
    elif path == "gather":
        g = static_graph([6, 5, 4], max_in_degree=4, seed=1)
        assert all(not b.complete and b.fill >= DENSE_GRAD_FILL for b in g.blocks)
    else:
        g = static_graph([40, 6, 3], max_in_degree=2, seed=1)
        assert all(b.fill < DENSE_GRAD_FILL for b in g.blocks)
    sampled = Spy(torch.sparse.sampled_addmm)
    mm = Spy(torch.mm)
    monkeypatch.setattr(ops.kernels, "enabled", lambda *tensors: False)    # the PyTorch paths
    monkeypatch.setattr(torch.sparse, "sampled_addmm", sampled)
    monkeypatch.setattr(torch, "mm", mm)
    mask, grad_w = run_whole_graph_with_blocks(g, max(1, g.num_candidates // 5), True, torch.Generator().manual_seed(9))
    if path == "sampled":
        assert sampled.calls == len(g.blocks) and mm.calls == 0
    else:
        assert sampled.calls == 0 and mm.calls == len(g.blocks)
    # hallucinated edges got a real gradient
    assert bool((grad_w[~mask] != 0).all())


def test_candidate_grad_mixed_blocks_one_graph(product_backend):
    # level 1 complete (4 <= 4 sources), level 2 gather, level 3 sampled
    g = static_graph([4, 30, 20, 50], max_in_degree=4, seed=2)
    kinds = [b.complete for b in g.blocks], [round(b.fill, 3) for b in g.blocks]
    assert kinds[0] == [True, False, False], kinds
    assert g.blocks[1].fill >= DENSE_GRAD_FILL > g.blocks[2].fill, kinds
    run_whole_graph_with_blocks(g, 40, True, torch.Generator().manual_seed(1))
    run_whole_graph_with_blocks(g, 40, False, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("k_fraction, dense", [(0.05, False), (0.9, True)])
def test_forward_paths_csr_and_dense(k_fraction, dense, monkeypatch):
    g = dynamic_graph(8, self_loops=True)
    n, c = g.num_nodes, g.num_candidates
    k = max(1, round(k_fraction * c))
    assert (k >= DENSE_FORWARD_FILL * n * n) == dense
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(c, generator=gen, dtype=DT)
    x0 = torch.randn(n, 3, generator=gen, dtype=DT)
    grad_out = torch.randn(n, 3, generator=gen, dtype=DT)
    spy_dense, spy_csr = Spy(ops._dense), Spy(ops.backends.spmm)
    monkeypatch.setattr(ops.kernels, "enabled", lambda *tensors: False)    # the PyTorch CSR path
    monkeypatch.setattr(ops, "_dense", spy_dense)
    monkeypatch.setattr(ops.backends, "spmm", spy_csr)
    for mode in MODES:
        fixed = random_fixed_mask(c, k, gen)
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        spy_dense.calls = spy_csr.calls = 0
        out = dnw_propagate(x, g.edge_index, w, k=k, mode=mode, real_mask=fixed)
        if mode != "complete":
            assert (spy_dense.calls, spy_csr.calls) == ((1, 0) if dense else (0, 1)), mode
        (out * grad_out).sum().backward()
        mask, grad_all = selection(mode, w0, k, fixed)
        xr, wr = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        ref = dense_reference(xr, g.edge_index, wr, mask, grad_all)
        (ref * grad_out).sum().backward()
        assert_rel_close(out.detach(), ref.detach())
        assert_rel_close(x.grad, xr.grad)
        assert_rel_close(w.grad, wr.grad)


# ----------------------------------------------------------------------------- gradcheck and the hand-computed DNW gradient

def tiny_graph():
    g = static_graph([2, 3, 2])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(g.num_nodes, 3, generator=gen, dtype=DT)
    # well-separated magnitudes, so a finite-difference step never changes the top-k
    w = torch.linspace(0.1, 2.0, g.num_candidates, dtype=DT)
    w = w[torch.randperm(g.num_candidates, generator=gen)] * torch.where(torch.rand(g.num_candidates, generator=gen) < 0.5, -1.0, 1.0).to(DT)
    return g, x, w


@pytest.mark.parametrize("mode", ["complete", "fixed", "dnw_no_update"])
def test_gradcheck_where_locally_differentiable(mode):
    g, x, w = tiny_graph()
    k = 6
    fixed = random_fixed_mask(g.num_candidates, k, torch.Generator().manual_seed(1))

    def fn(xx, ww):
        return dnw_propagate(xx, g.edge_index, ww, k=k, mode=mode, real_mask=fixed)

    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(), w.clone().requires_grad_()), eps=1e-6,
                                    atol=1e-7, rtol=1e-6)


def test_dnw_is_not_the_derivative_of_its_forward():
    # For mode "dnw" gradcheck must disagree: the forward reads only the top-k edges,
    # so its true derivative w.r.t. a hallucinated weight is 0 (locally the mask is
    # constant), while DNW's backward is the straight-through estimator, which gives
    # every hallucinated edge <x_u, g_v>. That is the point of the method (it lets a
    # hallucinated edge grow and swap in), not a bug; the x gradient still matches.
    g, x, w = tiny_graph()
    k = 6

    def fn_w(ww):
        return dnw_propagate(x, g.edge_index, ww, k=k, mode="dnw")

    def fn_x(xx):
        return dnw_propagate(xx, g.edge_index, w, k=k, mode="dnw")

    assert not torch.autograd.gradcheck(fn_w, (w.clone().requires_grad_(),), eps=1e-6, atol=1e-7,
                                        raise_exception=False)
    assert torch.autograd.gradcheck(fn_x, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-7)


# A 4-node static graph: inputs 0, 1 (level 0), hidden 2 (level 1), output 3 (level 2).
# Candidates, sorted by (target, source): 0->2, 1->2, 0->3, 1->3, 2->3.
FOUR_EI = torch.tensor([[0, 1, 0, 1, 2], [2, 2, 3, 3, 3]])
FOUR_W = [2.0, -0.1, 0.3, -1.5, 1.0]
FOUR_X = [[1.0, 2.0], [3.0, -1.0], [0.5, 2.0], [4.0, 4.0]]
FOUR_G = [[7.0, 7.0], [7.0, 7.0], [1.0, -1.0], [2.0, 0.5]]


def four_node(mode, k, fixed=None):
    g = from_edge_index(FOUR_EI, level=[0, 0, 1, 2])
    assert torch.equal(g.edge_index, FOUR_EI)
    x = torch.tensor(FOUR_X, dtype=DT, requires_grad=True)
    w = torch.tensor(FOUR_W, dtype=DT, requires_grad=True)
    out = dnw_propagate(x, g.edge_index, w, k=k, mode=mode, real_mask=fixed)
    out.backward(torch.tensor(FOUR_G, dtype=DT))
    return out.detach(), x.grad, w.grad


def test_dnw_gradient_by_hand_on_four_nodes(product_backend):
    out, gx, gw = four_node("dnw", 3)  # real: 0->2 (2.0), 1->3 (-1.5), 2->3 (1.0)
    # out[2] = 2 x0; out[3] = -1.5 x1 + x2; inputs get nothing
    assert out.tolist() == [[0, 0], [0, 0], [2.0, 4.0], [-4.0, 3.5]]
    # dL/dw_e = <x_u, g_v> for every candidate:
    # 0->2: 1*1 + 2*-1 = -1;   1->2 (hallucinated): 3*1 + -1*-1 = 4
    # 0->3 (hallucinated): 1*2 + 2*0.5 = 3;   1->3: 3*2 + -1*0.5 = 5.5;   2->3: 0.5*2 + 2*0.5 = 2
    assert gw.tolist() == [-1.0, 4.0, 3.0, 5.5, 2.0]
    # dL/dx_u = sum over real (u, v) of w_uv g_v: x0 <- 2 g2, x1 <- -1.5 g3, x2 <- g3, x3 <- 0
    assert gx.tolist() == [[2.0, -2.0], [-3.0, -0.75], [2.0, 0.5], [0.0, 0.0]]


def test_no_hallucinated_gradient_in_dnw_no_update_and_fixed():
    _, gx_dnw, gw_dnw = four_node("dnw", 3)
    _, gx_nu, gw_nu = four_node("dnw_no_update", 3)
    fixed = torch.tensor([True, False, False, True, True])  # the same real set as the top-3
    _, gx_fx, gw_fx = four_node("fixed", 3, fixed)
    assert gw_nu.tolist() == [-1.0, 0.0, 0.0, 5.5, 2.0]
    assert gw_fx.tolist() == [-1.0, 0.0, 0.0, 5.5, 2.0]
    assert torch.equal(gx_dnw, gx_nu) and torch.equal(gx_dnw, gx_fx)
    # complete: every edge real, every edge gets <x_u, g_v>
    out, gx, gw = four_node("complete", None)
    assert gw.tolist() == [-1.0, 4.0, 3.0, 5.5, 2.0]
    assert out[3].tolist() == pytest.approx([0.3 * 1 - 1.5 * 3 + 0.5, 0.3 * 2 + 1.5 + 2.0], rel=1e-12)


@pytest.mark.parametrize("name", ["static", "dynamic", "capped_sparse"])
def test_hallucinated_gradient_nonzero_only_for_dnw(name):
    edge_index, n, w0, _ = case(name)
    c = edge_index.size(1)
    k = max(1, c // 5)
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(n, 4, generator=gen, dtype=DT)
    grad_out = torch.randn(n, 4, generator=gen, dtype=DT)
    mask = topk_mask(w0, k)
    # targets that are inputs of a static graph have g_v relevant only if they receive candidates;
    # restrict the check to hallucinated candidates (every candidate target receives edges)
    for mode, fixed in (("dnw", None), ("dnw_no_update", None), ("fixed", mask)):
        w = w0.clone().requires_grad_()
        (dnw_propagate(x0, edge_index, w, k=k, mode=mode, real_mask=fixed) * grad_out).sum().backward()
        hallucinated = w.grad[~mask]
        if mode == "dnw":
            assert bool((hallucinated != 0).all())
        else:
            assert bool((hallucinated == 0).all())  # exactly zero
        assert bool((w.grad[mask] != 0).all())


def test_gradient_does_not_flow_through_hallucinated_edges(product_backend):
    # top-2 of the four-node graph: 0->2 and 1->3; node 2's only out-edge (2->3) is hallucinated
    x = torch.tensor(FOUR_X, dtype=DT, requires_grad=True)
    w = torch.tensor(FOUR_W, dtype=DT, requires_grad=True)
    out = dnw_propagate(x, FOUR_EI, w, k=2)
    out.backward(torch.tensor(FOUR_G, dtype=DT))
    assert x.grad[2].tolist() == [0.0, 0.0]  # nothing flows back through 2->3
    assert w.grad[4].item() == 0.5 * 2 + 2.0 * 0.5  # but 2->3 itself gets <x2, g3>
    x2 = torch.tensor(FOUR_X, dtype=DT)
    x2[2] = torch.tensor([-100.0, 55.0])
    assert torch.equal(dnw_propagate(x2, FOUR_EI, w.detach(), k=2), out.detach())


@pytest.mark.parametrize("name", ["static_big", "dynamic_self_loops"])
def test_hallucinated_sources_do_not_change_output_random(name):
    edge_index, n, w, _ = case(name)
    k = max(1, edge_index.size(1) // 20)
    mask = topk_mask(w, k)
    has_real_out = torch.zeros(n, dtype=torch.bool)
    has_real_out[edge_index[0, mask]] = True
    silent = (~has_real_out).nonzero().flatten()
    assert silent.numel() > 0
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(n, 3, generator=gen, dtype=DT, requires_grad=True)
    out = dnw_propagate(x, edge_index, w, k=k)
    out.backward(torch.randn(n, 3, generator=gen, dtype=DT))
    assert bool((x.grad[silent] == 0).all())
    assert bool((x.grad[has_real_out] != 0).any())
    x2 = x.detach().clone()
    x2[silent] = torch.randn(silent.numel(), 3, generator=gen, dtype=DT) * 1000
    assert torch.equal(dnw_propagate(x2, edge_index, w, k=k), out.detach())


# ----------------------------------------------------------------------------- argument errors

def test_mode_selection_errors():
    w = torch.randn(6)
    with pytest.raises(GraphError, match="needs k"):
        mode_selection("dnw", w, None, None)
    with pytest.raises(GraphError, match="needs real_mask"):
        mode_selection("fixed", w, None, None)
    with pytest.raises(GraphError, match="needs real_mask"):
        mode_selection("fixed", w, None, torch.ones(6))  # not bool
    with pytest.raises(GraphError, match="needs real_mask"):
        mode_selection("fixed", w, None, torch.ones(5, dtype=torch.bool))
    with pytest.raises(GraphError, match="unknown mode"):
        mode_selection("lottery", w, 3, None)
    mask, grad_all = mode_selection("complete", w, None, None)
    assert bool(mask.all()) and grad_all
    assert mode_selection("dnw", w, 2, None)[1] is True
    assert mode_selection("dnw_no_update", w, 2, None)[1] is False


def test_dnw_propagate_shape_errors():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(GraphError, match="node-major"):
        dnw_propagate(torch.randn(3), ei, torch.randn(2), k=1)
    with pytest.raises(GraphError, match="edge_weight must have shape"):
        dnw_propagate(torch.randn(3, 2), ei, torch.randn(3), k=1)
    with pytest.raises(GraphError, match="more than"):
        dnw_propagate(torch.randn(3, 2), ei, torch.randn(2), k=3)


# ----------------------------------------------------------------------------- doctests

@pytest.mark.parametrize("module", [wiring.graph, wiring.ops])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# ----------------------------------------------------------------------------- CUDA (skipped without a GPU)

@CUDA
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["static", "dynamic", "capped_sparse", "ties"])
def test_cuda_matches_dense_reference(name, mode, product_backend):
    skip_unless_on("cuda", product_backend)
    edge_index, n, w0, ks = case(name)
    dev = torch.device("cuda")
    c = edge_index.size(1)
    gen = torch.Generator().manual_seed(3)
    for k in ks:
        x0 = torch.randn(n, 5, generator=gen, dtype=DT)
        grad_out = torch.randn(n, 5, generator=gen, dtype=DT)
        fixed = random_fixed_mask(c, k, gen)
        _, (ro, rx, rw) = engine_and_reference(x0, edge_index, w0, mode, k, fixed, grad_out)
        x = x0.to(dev).requires_grad_()
        w = w0.to(dev).requires_grad_()
        out = dnw_propagate(x, edge_index.to(dev), w, k=k, mode=mode, real_mask=fixed.to(dev))
        (out * grad_out.to(dev)).sum().backward()
        assert_rel_close(out.detach().cpu(), ro)
        assert_rel_close(x.grad.cpu(), rx)
        assert_rel_close(w.grad.cpu(), rw)


@CUDA
def test_cuda_topk_mask_matches_cpu():
    w = torch.randint(-3, 4, (10_000,)).float()
    for k in (1, 17, 5000, 9999, 10_000):
        assert torch.equal(topk_mask(w.cuda(), k).cpu(), topk_mask(w, k))


@CUDA
def test_cuda_propagate_one_level_blocks(product_backend):
    skip_unless_on("cuda", product_backend)
    g = static_graph([10, 6, 7, 3], max_in_degree=3, seed=11)
    for grad_all in (True, False):
        gen = torch.Generator().manual_seed(0)
        run = run_whole_graph_with_blocks(g, 8, grad_all, gen)  # CPU result as the oracle
        gen = torch.Generator().manual_seed(0)
        n, c = g.num_nodes, g.num_candidates
        w0 = torch.randn(c, generator=gen, dtype=DT)
        mask = topk_mask(w0, 8)
        x0 = torch.randn(n, 4, generator=gen, dtype=DT)
        grad_out = torch.randn(n, 4, generator=gen, dtype=DT)
        x, w = x0.cuda().requires_grad_(), w0.cuda().requires_grad_()
        out = propagate(x, w, g.edge_index.cuda(), mask.cuda(), num_targets=n, blocks=g.blocks, grad_all=grad_all)
        (out * grad_out.cuda()).sum().backward()
        assert_rel_close(w.grad.cpu(), run[1])


def test_topk_mask_nan_ranks_last_and_keeps_exactly_k():
    w = torch.tensor([float("nan"), 1.0, 2.0, float("nan")])
    assert topk_mask(w, 1).tolist() == [False, False, True, False]
    assert topk_mask(w, 3).tolist() == [True, True, True, False]


def test_candidates_outside_the_given_blocks_get_zero_gradient():
    g = static_graph([2, 2, 1])
    w = torch.randn(8, requires_grad=True)
    x = torch.randn(5, 3)
    out = propagate(x, w, g.edge_index, torch.ones(8, dtype=torch.bool), num_targets=5, blocks=g.blocks[:1])
    out.sum().backward()
    assert torch.count_nonzero(w.grad[4:]) == 0 and torch.count_nonzero(w.grad[:4]) > 0


@pytest.mark.parametrize("scale", [1.0, 1.3, 0.5, 0.01])
def test_topk_hint_gives_the_same_mask_as_a_full_search(scale):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5000, generator=gen)
    w[::7] = 0.25                                        # many ties at one magnitude
    hint: dict = {}
    for k in (1, 37, 714, 2500, 4999):
        for step in range(4):                            # slow drift, then a jump by `scale`
            w = w + 0.01 * torch.randn(5000, generator=gen) if step < 3 else w * scale
            assert torch.equal(topk_mask(w, k, hint), topk_mask(w, k)), (k, step)
            assert int(topk_mask(w, k, hint).sum()) == k
    assert float(hint["threshold"]) > 0


def test_topk_hint_pool_too_small_falls_back_and_nan_ranks_last():
    hint = {"threshold": torch.tensor(100.0)}            # nothing is that large: the pool is empty
    w = torch.tensor([0.3, float("nan"), -0.9, 0.3, 0.1])
    assert topk_mask(w, 2, hint).tolist() == [True, False, True, False, False]
    assert float(hint["threshold"]) == pytest.approx(0.3)
    assert topk_mask(w, 4, hint).tolist() == [True, False, True, True, True]
