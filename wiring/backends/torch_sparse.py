"""Backend ``torch_sparse``: the real-edge CSR product as ``torch_sparse.matmul`` (PyG's kernels).

A ``torch_sparse.SparseTensor`` built straight from the CSR arrays (sorted, trusted: no
conversion, no checks) times the dense node-major features, with ``reduce="sum"``: one
fused kernel per product on CPU (threaded over rows) and CUDA, no per-edge messages.
Install: ``pip install --no-build-isolation torch-sparse`` after torch (a source build,
about 11 minutes on 2 cores; ``setup.sh --accel``).
"""
from __future__ import annotations

from torch import Tensor

DEVICES = ("cpu", "cuda")
TAKES = "float32/float64 (and half on CUDA) tensors on the CPU or CUDA"
INSTALL = "pip install --no-build-isolation torch-sparse (after torch; or ./setup.sh --accel)"

_lib: dict = {}


def _load():
    if "module" not in _lib:
        try:
            import torch_sparse
            _lib["module"], _lib["why"] = torch_sparse, None
        except Exception as err:                     # ImportError, or an OSError from a wheel built for another torch
            _lib["module"], _lib["why"] = None, f"torch_sparse does not import ({type(err).__name__}: " \
                                               f"{(str(err).splitlines() or [''])[0]}); install: {INSTALL}"
    return _lib["module"]


def missing() -> str | None:
    _load()
    return _lib["why"]


def takes(x: Tensor, values: Tensor) -> bool:
    return (x.device.type in DEVICES and x.is_floating_point() and values.dtype == x.dtype
            and values.device == x.device)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """``out (+)= A x`` for the CSR matrix ``A = (rowptr, col, values)``; see :mod:`wiring.backends`."""
    ts = _load()
    matrix = ts.SparseTensor(rowptr=rowptr, col=col, value=values.detach(),
                             sparse_sizes=(rowptr.numel() - 1, x.size(0)), is_sorted=True, trust_data=True)
    # detached: an x that requires grad makes spmm_sum build the transpose (a sort) for its own backward,
    # which the engine does not use (it computes A^T g itself)
    result = ts.matmul(matrix, x.detach(), reduce="sum")
    if out is None:
        return result
    return out.add_(result) if accumulate else out.copy_(result)
