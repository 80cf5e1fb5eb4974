"""Backend ``torch_scatter``: the real-edge product as ``torch_scatter.segment_csr`` over messages.

The product in message-passing form: gather each real edge's source features, scale them
by the edge's weight (the messages, target-sorted because the edges are), and sum each
target's run of messages with ``segment_csr`` (deterministic, no atomics). One message per
edge at full width is what the engine never builds (``E x F``: 400 MB per level at the
paper's size), so the messages exist only in **feature chunks**: ``E x f`` with
``f = max(1, CHUNK_ELEMENTS // E)`` columns at a time, at most
``max(CHUNK_ELEMENTS, E)`` elements (16 MiB of float32), and each chunk's sums go
straight into their columns of the result. The chunks need no device-to-host copy.
Install: ``pip install --no-build-isolation torch-scatter`` after torch (``setup.sh --accel``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from wiring.backends import OptionalPackage, takes_floating

DEVICES = ("cpu", "cuda")
TAKES = "floating-point tensors on the CPU or CUDA"
INSTALL = "pip install --no-build-isolation torch-scatter (after torch; or ./setup.sh --accel)"
CHUNK_ELEMENTS = 1 << 22          # messages held at once: 4 Mi elements (16 MiB of float32)

_package = OptionalPackage("torch_scatter", INSTALL)


def missing() -> str | None:
    return _package.missing()


def takes(x: Tensor, values: Tensor) -> bool:
    return takes_floating(DEVICES, x, values)


def chunk_features(edges: int, features: int) -> int:
    """Feature columns per chunk of messages (``edges x that <= max(CHUNK_ELEMENTS, edges)``).

    >>> chunk_features(3000, 32768), chunk_features(10, 64), chunk_features(10**7, 64)
    (1398, 64, 1)
    """
    return max(1, min(features, CHUNK_ELEMENTS // max(edges, 1)))


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """``out (+)= A x`` for the CSR matrix ``A = (rowptr, col, values)``; see :mod:`wiring.backends`."""
    segment_csr = _package.load().segment_csr
    rows, features, edges = rowptr.numel() - 1, x.size(1), col.numel()
    step = chunk_features(edges, features)
    weights = values.unsqueeze(1)
    if out is None and edges and step == features:                       # one chunk: the sums are the result
        return segment_csr(torch.index_select(x, 0, col).mul_(weights), rowptr, reduce="sum")
    if out is None:
        out = x.new_empty(rows, features)
        accumulate = False
    if edges == 0 or features == 0:
        return out if accumulate else out.zero_()
    for f0 in range(0, features, step):
        width = min(step, features - f0)
        messages = torch.index_select(x.narrow(1, f0, width), 0, col).mul_(weights)    # [E, width]
        sums = segment_csr(messages, rowptr, reduce="sum")                             # [rows, width]
        target = out.narrow(1, f0, width)
        target.add_(sums) if accumulate else target.copy_(sums)
    return out
