"""wiring.backends.kernels: the optional C++ kernels equal the PyTorch paths they replace."""
from __future__ import annotations

import pytest
import torch

from wiring import backends, ops
from wiring.backends import kernels
from wiring.graph import dynamic_graph
from wiring.nodeops import NormReLUConv, _FusedNormReLUConv
from wiring.ops import dnw_propagate

needs_native = pytest.mark.skipif(kernels.library() is None, reason="native kernels unavailable: "
                                  + kernels._state.get("reason", ""))


def test_build_reports_why_it_is_off(monkeypatch, tmp_path):
    monkeypatch.setenv("WIRING_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("WIRING_NATIVE", "0")
    assert kernels._build() == (None, "disabled by WIRING_NATIVE=0")
    monkeypatch.setenv("WIRING_NATIVE", "1")
    monkeypatch.setenv("CXX", "no-such-compiler-wiring")
    lib, reason = kernels._build()
    assert lib is None and reason.startswith("no C++ compiler found")
    assert not list(tmp_path.rglob("*.so"))                       # nothing half-built left behind


def test_enabled_needs_cpu_tensors_of_one_float_dtype():
    assert not kernels.enabled()
    assert not kernels.enabled(torch.zeros(2, dtype=torch.int64))
    assert not kernels.enabled(torch.zeros(2), torch.zeros(2, dtype=torch.float64))


@needs_native
def test_build_is_cached_per_source(monkeypatch, tmp_path):
    monkeypatch.setenv("WIRING_CACHE_DIR", str(tmp_path))
    lib, reason = kernels._build()
    assert lib is not None and reason == "loaded"
    built = list((tmp_path / "native").glob("kernels-*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    kernels._build()                                                # second call: loads, no rebuild
    assert built[0].stat().st_mtime_ns == mtime
    assert "on" in kernels.status()


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spmm_hand_built(dtype):
    # 3 targets from 4 sources: row 0 = x0 + 2 x3, row 1 has no edge, row 2 = -x1
    rowptr, col = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 3, 1])
    values = torch.tensor([1.0, 2.0, -1.0], dtype=dtype)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], dtype=dtype)
    assert kernels.spmm(rowptr, col, values, x).tolist() == [[15.0, 18.0], [0.0, 0.0], [-3.0, -4.0]]
    out = torch.ones(3, 2, dtype=dtype)
    kernels.spmm(rowptr, col, values, x, out=out, accumulate=True)
    assert out.tolist() == [[16.0, 19.0], [1.0, 1.0], [-2.0, -3.0]]


@needs_native
def test_spmm_wide_features_match_dense():
    # more features than one cache chunk, a ragged last chunk
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(7, 5, generator=gen, dtype=torch.float64) * (torch.rand(7, 5, generator=gen) < 0.4)
    x = torch.randn(5, 1300, generator=gen, dtype=torch.float64)
    csr = dense.to_sparse_csr()
    out = kernels.spmm(csr.crow_indices(), csr.col_indices(), csr.values(), x)
    torch.testing.assert_close(out, dense @ x, rtol=1e-12, atol=1e-12)


def _unfused(monkeypatch):
    monkeypatch.setattr(kernels, "enabled", lambda *tensors: False)


@needs_native
@pytest.mark.parametrize("height, width", [(8, 8), (5, 7), (1, 2)])
def test_fused_node_op_equals_pytorch(monkeypatch, height, width):
    torch.manual_seed(0)
    op = NormReLUConv(4, height, width).double()
    with torch.no_grad():
        op.norm_weight.uniform_(0.5, 1.5)
        op.norm_bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 3 * height * width, dtype=torch.float64)
    grad = torch.randn_like(x)

    def run():
        op.zero_grad()
        xi = x.clone().requires_grad_()
        y = op(xi)
        y.backward(grad)
        return [y.detach(), xi.grad, op.norm_weight.grad, op.norm_bias.grad, op.conv_weight.grad]

    fused = run()
    with monkeypatch.context() as m:
        _unfused(m)
        reference = run()
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@needs_native
def test_fused_node_op_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(2, 2 * 12, dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(2, dtype=torch.float64).add(0.5).requires_grad_()
    beta = torch.randn(2, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: _FusedNormReLUConv.apply(*t, 3, 4), (x, gamma, beta, kernel))


@needs_native
@pytest.mark.parametrize("features", [5, 64, 1300])                 # a tail only, one tile, chunks + tail
def test_sampled_dot_equals_gathered_dense_products(features):
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(6, features, generator=gen, dtype=torch.float64)
    b = torch.randn(4, features, generator=gen, dtype=torch.float64)
    ia, ib = torch.tensor([0, 5, 5, 2, 0]), torch.tensor([3, 3, 0, 1, 1])
    torch.testing.assert_close(kernels.sampled_dot(ia, ib, a, b), (a @ b.t())[ia, ib], rtol=1e-12, atol=1e-12)
    assert kernels.sampled_dot(ia[:0], ib[:0], a, b).numel() == 0
    with pytest.raises(ValueError, match="outside"):
        kernels.sampled_dot(torch.tensor([6]), torch.tensor([0]), a, b)


@needs_native
@pytest.mark.parametrize("mode", ["dnw", "dnw_no_update"])          # every candidate / real edges only
def test_propagate_native_equals_pytorch_csr(monkeypatch, mode):
    g = dynamic_graph(10, self_loops=False)
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(g.num_candidates, generator=gen, dtype=torch.float64)
    x0 = torch.randn(10, 700, generator=gen, dtype=torch.float64)
    grad = torch.randn(10, 700, generator=gen, dtype=torch.float64)

    def run():
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = dnw_propagate(x, g.edge_index, w, k=9, mode=mode)    # 10% of 90: the CSR path
        out.backward(grad)
        return out.detach(), x.grad, w.grad

    calls = []
    real_spmm = kernels.spmm
    monkeypatch.setattr(ops.kernels, "spmm", lambda *a, **kw: calls.append(1) or real_spmm(*a, **kw))
    with backends.using("native"):
        fused = run()
    assert len(calls) == 2                                          # forward and gradient to the sources
    with monkeypatch.context() as m, backends.using("torch"):
        _unfused(m)
        reference = run()
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_doctests():
    import doctest
    assert doctest.testmod(kernels).failed == 0


def _torch_topk(weight: torch.Tensor, k: int) -> torch.Tensor:
    with kernels.disabled():
        return ops.topk_mask(weight, k)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_topk_mask_hand_built(dtype):
    # |w| = 0.1 2 0.5 2 0.5 NaN: the top 3 are the two 2s and the first 0.5 (ties: lower index)
    w = torch.tensor([0.1, -2.0, 0.5, 2.0, 0.5, float("nan")], dtype=dtype)
    mask, threshold = kernels.topk_mask(w, 3)
    assert mask.tolist() == [False, True, True, True, False, False] and threshold == 0.5
    mask, threshold = kernels.topk_mask(w, 6)                    # NaN ranks last but fills the budget
    assert mask.all() and threshold == -1.0


@needs_native
@pytest.mark.parametrize("floor", [0.0, 0.5, 1.0, 3.0])          # a pool of all, some, too few, none
def test_topk_mask_equals_the_torch_path_with_ties_and_nan(floor):
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(5000, generator=gen).mul(4).round().div(4)  # many exact ties
    w[::97] = float("nan")
    for k in (1, 17, 2500, 4999):
        mask, threshold = kernels.topk_mask(w, k, floor)
        reference = _torch_topk(w, k)
        assert int(mask.sum()) == k and torch.equal(mask, reference), (k, floor)


@needs_native
def test_ops_topk_mask_with_a_hint_takes_the_native_path_and_keeps_the_mask():
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(3000, generator=gen)
    hint: dict = {}
    first = ops.topk_mask(w, 300, hint)
    assert isinstance(hint["threshold"], float)
    drifted = w + 0.05 * torch.randn(3000, generator=gen)
    assert torch.equal(ops.topk_mask(drifted, 300, hint), _torch_topk(drifted, 300))
    assert torch.equal(first, _torch_topk(w, 300))


@needs_native
def test_wrappers_refuse_what_would_read_out_of_bounds():
    x = torch.zeros(3, 4)
    rowptr, col, values = torch.tensor([0, 1, 2]), torch.tensor([0, 2]), torch.ones(2)
    assert kernels.spmm(rowptr, col, values, x).shape == (2, 4)
    with pytest.raises(ValueError, match="column index"):
        kernels.spmm(rowptr, torch.tensor([0, 3]), values, x)
    with pytest.raises(ValueError, match="rowptr"):
        kernels.spmm(torch.tensor([0, 1, 3]), col, values, x)
    with pytest.raises(ValueError, match="out must be"):
        kernels.spmm(rowptr, col, values, x, out=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="one dtype"):
        kernels.spmm(rowptr, col, values.double(), x)
    gamma, beta, kernel = torch.ones(3), torch.zeros(3), torch.zeros(3, 9)
    with pytest.raises(ValueError, match="batch"):
        kernels.node_forward(torch.zeros(3, 10), gamma, beta, kernel, 2, 2)
    with pytest.raises(ValueError, match="kernel shape"):
        kernels.node_forward(torch.zeros(3, 8), gamma, beta, torch.zeros(3, 3, 3), 2, 2)
    with pytest.raises(ValueError, match="k must be"):
        kernels.topk_mask(torch.ones(4), 5)
