"""Backend ``torch_sparse``: the real-edge CSR product as ``torch_sparse.matmul`` (PyG's kernels).

A ``torch_sparse.SparseTensor`` built straight from the CSR arrays (sorted, trusted: no
conversion, no checks) times the dense node-major features, with ``reduce="sum"``: one
fused kernel per product on CPU (threaded over rows) and CUDA, no per-edge messages.
Install: ``pip install --no-build-isolation torch-sparse`` after torch (a source build,
about 11 minutes on 2 cores; ``setup.sh --accel``).
"""
from __future__ import annotations

from torch import Tensor

from wiring.backends import OptionalPackage, takes_floating

DEVICES = ("cpu", "cuda")
TAKES = "float32/float64 (and half on CUDA) tensors on the CPU or CUDA"
INSTALL = "pip install --no-build-isolation torch-sparse (after torch; or ./setup.sh --accel)"

_package = OptionalPackage("torch_sparse", INSTALL)


def missing() -> str | None:
    return _package.missing()


def takes(x: Tensor, values: Tensor) -> bool:
    return takes_floating(DEVICES, x, values)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """``out (+)= A x`` for the CSR matrix ``A = (rowptr, col, values)``; see :mod:`wiring.backends`."""
    ts = _package.load()
    matrix = ts.SparseTensor(rowptr=rowptr, col=col, value=values.detach(),
                             sparse_sizes=(rowptr.numel() - 1, x.size(0)), is_sorted=True, trust_data=True)
    # detached: an x that requires grad makes spmm_sum build the transpose (a sort) for its own backward,
    # which the engine does not use (it computes A^T g itself)
    result = ts.matmul(matrix, x.detach(), reduce="sum")
    if out is None:
        return result
    return out.add_(result) if accumulate else out.copy_(result)
