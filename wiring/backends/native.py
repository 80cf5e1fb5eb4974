"""Backend ``native``: the real-edge CSR product on the C++ kernels of :mod:`wiring.backends.kernels`.

For CPU tensors of float32 or float64 where the kernels load (a C++ compiler is all it
needs; ``WIRING_NATIVE=0`` or :func:`wiring.backends.kernels.disabled` switch them off). Fused,
register-tiled rows in feature chunks that stay in cache: no per-edge messages and no
zero-fill plus copy of the result.
"""
from __future__ import annotations

from torch import Tensor

from wiring.backends import kernels

DEVICES = ("cpu",)
TAKES = "float32/float64 CPU tensors"


def missing() -> str | None:
    """Why the kernels cannot run here (no compiler, a failed build, switched off), or None."""
    if kernels._state.get("off"):
        return "switched off (wiring.backends.kernels.disabled())"
    if kernels.library() is None:
        return kernels.status().removeprefix("native CPU kernels off: ")
    return None


def takes(x: Tensor, values: Tensor) -> bool:
    return kernels.enabled(x, values)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """``out (+)= A x`` for the CSR matrix ``A = (rowptr, col, values)``; see :mod:`wiring.backends`."""
    return kernels.spmm(rowptr, col, values, x, out=out, accumulate=accumulate)
