"""wiring.backends: the registry of real-edge product backends and each backend's CSR product.

Every installed backend computes the same product on hand-built CSR matrices (empty rows,
no edges at all, ``out`` / ``accumulate``, feature chunks); the registry resolves names,
``$WIRING_BACKEND`` and ``auto`` as documented, and refuses what cannot run with one
:class:`BackendError`. The equivalence of whole propagations with the dense
straight-through reference, per backend, is in test_ops / test_fused / test_properties
(fixture ``product_backend``).
"""
from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend_params import skip_unless_on
from wiring import backends
from wiring.backends import BackendError, kernels

ROOT = Path(__file__).resolve().parents[2]
DT = torch.float64
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]

# 3 targets from 4 sources: row 0 = x0 + 2 x3, row 1 has no edge, row 2 = -x1
ROWPTR, COL = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 3, 1])
VALUES = [1.0, 2.0, -1.0]
X = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]


def installed_backend(name: str):
    why = backends.missing(name)
    if why is not None:
        pytest.skip(f"backend {name}: {why}")
    return backends.module(name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", backends.NAMES)
def test_hand_built_product_empty_row_out_and_accumulate(name, dtype, device):
    backend = installed_backend(name)
    skip_unless_on(device, name)
    values, x = torch.tensor(VALUES, dtype=dtype, device=device), torch.tensor(X, dtype=dtype, device=device)
    rowptr, col = ROWPTR.to(device), COL.to(device)
    assert backend.takes(x, values)
    assert backend.spmm(rowptr, col, values, x).tolist() == [[15.0, 18.0], [0.0, 0.0], [-3.0, -4.0]]
    out = torch.full((3, 2), 5.0, dtype=dtype, device=device)
    assert backend.spmm(rowptr, col, values, x, out=out) is out
    assert out.tolist() == [[15.0, 18.0], [0.0, 0.0], [-3.0, -4.0]]
    out = torch.ones(3, 2, dtype=dtype, device=device)
    backend.spmm(rowptr, col, values, x, out=out, accumulate=True)
    assert out.tolist() == [[16.0, 19.0], [1.0, 1.0], [-2.0, -3.0]]


@pytest.mark.parametrize("name", backends.NAMES)
def test_no_edges_gives_zero_rows(name):
    backend = installed_backend(name)
    x = torch.tensor(X, dtype=DT)
    empty = torch.zeros(0, dtype=torch.long)
    assert backend.spmm(torch.zeros(3, dtype=torch.long), empty, empty.to(DT), x).tolist() == [[0.0, 0.0]] * 2
    out = torch.full((2, 2), 7.0, dtype=DT)
    backend.spmm(torch.zeros(3, dtype=torch.long), empty, empty.to(DT), x, out=out, accumulate=True)
    assert out.tolist() == [[7.0, 7.0]] * 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", backends.NAMES)
def test_random_product_equals_dense_matmul_with_repeated_sources(name, device):
    backend = installed_backend(name)
    skip_unless_on(device, name)
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(9, 7, generator=gen, dtype=DT) * (torch.rand(9, 7, generator=gen) < 0.3)
    dense[4] = 0                                                    # an empty row inside
    csr = dense.to_sparse_csr()
    x = torch.randn(7, 1300, generator=gen, dtype=DT)               # wider than one chunk of native's
    out = backend.spmm(*(t.to(device) for t in (csr.crow_indices(), csr.col_indices(), csr.values(), x)))
    torch.testing.assert_close(out.cpu(), dense @ x, rtol=1e-12, atol=1e-12)


@CUDA
def test_cuda_tiny_classifier_step_equals_the_cpu(product_backend):
    """The whole model on CUDA (level by level: the fused graph is CPU-only) on each backend
    gives the CPU's logits and gradients (float64)."""
    skip_unless_on("cuda", product_backend)
    from models.tiny import TinyClassifier
    torch.manual_seed(0)
    model = TinyClassifier(image_size=8, edges=60, levels=(8, 6, 6, 6), outputs=5).double()
    x, y = torch.randn(3, 3, 8, 8, dtype=DT), torch.tensor([0, 4, 7])

    def grads(m, device):
        m.zero_grad()
        logits = m(x.to(device))
        torch.nn.functional.cross_entropy(logits, y.to(device)).backward()
        return {"logits": logits.detach().cpu(), **{n: p.grad.cpu() for n, p in m.named_parameters()}}
    with backends.using("torch"):
        cpu = grads(model, "cpu")
    gpu = grads(model.cuda(), "cuda")
    for name in cpu:
        torch.testing.assert_close(gpu[name], cpu[name], rtol=1e-9, atol=1e-11, msg=name)


def test_torch_scatter_builds_messages_in_bounded_feature_chunks(monkeypatch):
    backend = installed_backend("torch_scatter")
    gen = torch.Generator().manual_seed(1)
    dense = torch.randn(6, 5, generator=gen, dtype=DT) * (torch.rand(6, 5, generator=gen) < 0.5)
    csr = dense.to_sparse_csr()
    edges = csr.values().numel()
    x = torch.randn(5, 101, generator=gen, dtype=DT)
    sizes = []
    real = torch.index_select
    monkeypatch.setattr(backend, "CHUNK_ELEMENTS", 4 * edges)       # 4 feature columns at a time
    monkeypatch.setattr(backend.torch, "index_select",
                        lambda t, dim, index: sizes.append(t.size(1)) or real(t, dim, index))
    out = torch.ones(6, 101, dtype=DT)
    backend.spmm(csr.crow_indices(), csr.col_indices(), csr.values(), x, out=out, accumulate=True)
    torch.testing.assert_close(out, 1 + dense @ x, rtol=1e-12, atol=1e-12)
    assert sizes == [4] * 25 + [1] and max(sizes) * edges <= backend.CHUNK_ELEMENTS
    assert backend.chunk_features(edges, 101) == 4


# ----------------------------------------------------------------------------- the registry

def test_names_auto_table_and_its_provenance():
    assert backends.CHOICES == ("auto", "native", "torch", "torch_sparse", "torch_scatter")
    assert set(backends.AUTO) == set(backends.MEASURED) >= {"cpu", "cuda"}
    for device_type, order in backends.AUTO.items():
        assert set(order) <= set(backends.NAMES) and "torch" in order, device_type
        for name in order:                                           # auto never picks what cannot run there
            devices = backends.module(name).DEVICES
            assert devices is None or device_type in devices, (device_type, name)
    assert "torch" in backends.installed()


def test_auto_takes_the_first_installed_backend_of_the_table(monkeypatch):
    monkeypatch.delenv(backends.ENV, raising=False)
    with backends.using("auto"):
        first = next(n for n in backends.AUTO["cpu"] if backends.missing(n) is None)
        assert backends.resolved("cpu") == first
        x, values = torch.zeros(2, 3), torch.zeros(1)
        assert backends.choose(x, values) is backends.module(first if first != "native" or kernels.enabled(x)
                                                             else "torch")
        with kernels.disabled():                                      # switched off: auto skips it
            assert backends.resolved("cpu") != "native"
            assert backends.choose(x, values) is not backends.module("native")
        # float16 on the CPU: native does not take it, auto moves on to one that does
        assert backends.choose(x.half(), values.half()) is not backends.module("native")


def test_a_named_backend_that_cannot_run_is_one_error_not_a_fallback():
    x, values = torch.zeros(2, 3), torch.zeros(1)
    with pytest.raises(BackendError, match="unknown backend 'cusparse'"):
        backends.module("cusparse")
    with pytest.raises(BackendError, match="runs on cpu tensors only, not cuda"):
        backends.select("native", "cuda")
    with kernels.disabled(), backends.using("native"):
        with pytest.raises(BackendError, match="'native' not available: switched off"):
            backends.choose(x, values)
    if kernels.library() is not None:
        with backends.using("native"), pytest.raises(BackendError, match="takes float32/float64 CPU tensors"):
            backends.choose(x.half(), values.half())


def test_environment_variable_and_select(monkeypatch):
    had = dict(backends._state)
    try:
        backends._state.pop("selected", None)
        monkeypatch.setenv(backends.ENV, "torch")
        assert backends.requested() == "torch" and backends.status() == "product backend torch"
        monkeypatch.setenv(backends.ENV, "fastest")
        with pytest.raises(BackendError, match="WIRING_BACKEND: unknown backend 'fastest'"):
            backends.requested()
        assert backends.select("torch", "cpu") == "torch"            # a selection wins over the environment
        assert backends.requested() == "torch"
        assert backends.select("auto", "cpu") == backends.resolved("cpu")
        with backends.using("torch"):
            assert backends.requested() == "torch"
        assert backends.requested() == "auto"
    finally:
        backends._state.clear()
        backends._state.update(had)


def test_a_missing_package_names_its_install_line():
    for name in ("torch_sparse", "torch_scatter"):
        why = backends.missing(name)
        if why is not None:
            assert "pip install --no-build-isolation" in why and "setup.sh --accel" in why
            with pytest.raises(BackendError, match="not available"):
                backends.select(name, "cpu")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **env})


def test_train_refuses_a_backend_that_cannot_run_with_exit_2(tmp_path):
    result = _cli("-m", "wiring.train", "--backend", "native", "--epochs", "1", "--out", str(tmp_path / "run"),
                  WIRING_NATIVE="0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "backend 'native' not available" in result.stderr
    assert not (tmp_path / "run").exists()                          # nothing half-written
    result = _cli("-m", "wiring.train", "--backend", "fastest")
    assert result.returncode == 2 and "--backend" in result.stderr


def test_doctests():
    import wiring.backends.torch_scatter as scatter
    assert doctest.testmod(backends).failed == 0
    assert doctest.testmod(scatter).failed == 0
