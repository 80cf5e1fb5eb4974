"""Backend ``torch``: the real-edge CSR product as ``torch.sparse`` CSR times dense.

Needs nothing beyond PyTorch and runs on every device and floating dtype PyTorch's CSR
product supports: the fallback, and the engine's only path before the registry. On CPU
PyTorch's kernel zero-fills and copies its result, which the others avoid.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from wiring.backends import takes_floating

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")

DEVICES = None                     # any device PyTorch runs on
TAKES = "floating-point tensors"


def missing() -> str | None:
    return None


def takes(x: Tensor, values: Tensor) -> bool:
    return takes_floating(DEVICES, x, values)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """``out (+)= A x`` for the CSR matrix ``A = (rowptr, col, values)``; see :mod:`wiring.backends`."""
    matrix = torch.sparse_csr_tensor(rowptr, col, values, (rowptr.numel() - 1, x.size(0)), check_invariants=False)
    result = matrix @ x
    if out is None:
        return result
    return out.add_(result) if accumulate else out.copy_(result)
