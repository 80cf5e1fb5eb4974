"""The DNW operator: real-edge aggregation with gradients to every candidate.

Given node features ``x`` (node-major, ``[num_sources, F]`` with
``F = batch x spatial``), candidate edges ``edge_index`` (``[2, C]``, sorted by
``(target, source)``), one weight per candidate and a boolean ``real_mask``:

* forward: ``out[v] = sum over real (u, v) of w_uv * x[u]`` as one fused
  sparse-dense (CSR) product on the backend :mod:`wiring.backends` chooses, or one
  dense product when most of the rectangle is real. No per-edge message tensor is
  ever built at full width. Targets with no real in-edge get 0.
* backward: ``grad_x[u] = sum over real (u, v) of w_uv * grad_out[v]`` (gradient
  flows *through* real edges only) and

  - ``grad_all=True`` (DNW): ``grad_w[e] = <x[u], grad_out[v]>`` for **every**
    candidate ``e = (u, v)``, real or hallucinated. Per :class:`wiring.graph.Block`
    this is one dense GEMM ``grad_out[targets] @ x[sources].T`` (a reshape when the
    block is complete, a gather when it is mostly full), or a sampled product
    (``torch.sparse.sampled_addmm``) on the candidate pattern when it is sparse;
  - ``grad_all=False``: the same value for real edges, 0 for the others.

This equals a dense weight matrix with a straight-through top-k mask
(:func:`dense_reference`), which the tests hold it against.

Real edges of the DNW rule are :func:`topk_mask`: the ``k`` largest ``|w|``,
exactly ``k``, ties broken towards the lower candidate index.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor

from wiring import backends
from wiring.backends import kernels
from wiring.graph import Block, GraphError
from wiring.modes import STATELESS as MODES
from wiring.modes import make_mode, mode_class
from wiring.topk import HINT_MARGIN, topk_mask  # noqa: F401  (wiring.ops.topk_mask is public)

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")

# A block whose candidates fill at least this fraction of its rectangle gets its
# candidate gradient from one dense GEMM (then a gather); sparser ones use a
# sampled product. Real edges filling this fraction of the rectangle use a dense forward.
DENSE_GRAD_FILL = 0.10
DENSE_FORWARD_FILL = 0.15   # measured: dense wins above ~0.12-0.15 fill on a 2-core AVX-512 CPU


def _rowptr(rows_of: Tensor, rows: int) -> Tensor:
    """CSR row pointers of entries sorted by row (``rows_of``): where each row's run starts.
    A binary search, not ``bincount``, which on CUDA copies its input's maximum to the host.

    >>> _rowptr(torch.tensor([0, 0, 2]), 4).tolist()
    [0, 2, 2, 3, 3]
    """
    return torch.searchsorted(rows_of, torch.arange(rows + 1, device=rows_of.device, dtype=rows_of.dtype))


def _csr(dst: Tensor, src: Tensor, values: Tensor, rows: int, cols: int) -> Tensor:
    return torch.sparse_csr_tensor(_rowptr(dst, rows), src, values, (rows, cols), check_invariants=False)


def _dense(dst: Tensor, src: Tensor, values: Tensor, rows: int, cols: int) -> Tensor:
    mat = values.new_zeros(rows * cols)
    mat[dst * cols + src] = values
    return mat.view(rows, cols)


def _candidate_grad(x: Tensor, g: Tensor, src: Tensor, dst: Tensor, blocks: Sequence[Block]) -> Tensor:
    """``<x[src[e]], g[dst[e]]>`` for every candidate e, block by block (0 outside blocks)."""
    out = g.new_zeros(src.numel())
    for b in blocks:
        c = slice(b.cand_start, b.cand_end)
        gb, xb = g[b.target_start:b.target_end], x[b.source_start:b.source_end]
        if b.complete:
            torch.mm(gb, xb.t(), out=out[c].view(b.target_end - b.target_start, -1))
        elif b.fill >= DENSE_GRAD_FILL:
            dense = torch.mm(gb, xb.t())
            out[c] = dense[dst[c] - b.target_start, src[c] - b.source_start]
        elif kernels.enabled(x, g):
            out[c] = kernels.sampled_dot(src[c], dst[c], x, g)
        else:
            pattern = _csr(dst[c] - b.target_start, src[c] - b.source_start, g.new_zeros(b.cand_end - b.cand_start),
                           b.target_end - b.target_start, b.source_end - b.source_start)
            out[c] = torch.sparse.sampled_addmm(pattern, gb, xb.t(), beta=0.0).values()
    return out


def _weight_grad(x: Tensor, g: Tensor, edge_index: Tensor, real: Tensor, src: Tensor, dst: Tensor,
                 blocks: Sequence[Block], grad_all: bool) -> Tensor:
    """Edge-weight gradient of ``out = A x`` given ``g = dL/dout``: every candidate's
    (``grad_all``) or the real ones' only (``real`` their ids, ``src``/``dst`` their ends)."""
    if grad_all:
        return _candidate_grad(x, g, edge_index[0], edge_index[1], blocks)
    grad_w = g.new_zeros(edge_index.size(1))
    if real.numel() and kernels.enabled(x, g):
        grad_w[real] = kernels.sampled_dot(src, dst, x, g)
    elif real.numel():
        pattern = _csr(dst, src, g.new_zeros(real.numel()), g.size(0), x.size(0))
        grad_w[real] = torch.sparse.sampled_addmm(pattern, g, x.t(), beta=0.0).values()
    return grad_w


def _real_edges(edge_index: Tensor, weight: Tensor, real_mask: Tensor, rows: int,
                cols: int) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """``(real, src, dst, values, dense)`` of the real candidates: their ids, ends and
    weights, and whether they fill enough of the ``rows x cols`` rectangle for a dense product."""
    real = real_mask.nonzero().flatten()
    src, dst = edge_index[0, real], edge_index[1, real]
    return real, src, dst, weight[real], real.numel() >= DENSE_FORWARD_FILL * rows * cols


def _real_product(dst: Tensor, src: Tensor, values: Tensor, rows: int, cols: int, x: Tensor, dense: bool, *,
                  transpose: bool = False, out: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """``A x`` (``A^T x`` with ``transpose``) for the real edges, ``A`` ``[rows, cols]`` with
    ``A[dst, src] = values`` (edges sorted by ``dst``): a dense product when ``dense``, else the
    CSR product of the backend :mod:`wiring.backends` chooses. The result goes into ``out``
    when given (added to it with ``accumulate``)."""
    if dense:
        mat = _dense(dst, src, values, rows, cols)
        mat = mat.t() if transpose else mat
        if out is None:
            return mat @ x
        return out.addmm_(mat, x) if accumulate else torch.mm(mat, x, out=out)
    if transpose:                                   # the CSR of A^T: edges sorted by source
        order = torch.sort(src, stable=True).indices
        dst, src, values, rows, cols = src[order], dst[order], values[order], cols, rows
    return backends.spmm(_rowptr(dst, rows), src, values, x, out=out, accumulate=accumulate)


class _Propagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, edge_index: Tensor, real_mask: Tensor,
                num_targets: int, blocks: tuple[Block, ...], grad_all: bool) -> Tensor:
        rows, cols = num_targets, x.size(0)
        real, src, dst, values, dense = _real_edges(edge_index, weight, real_mask, rows, cols)
        out = _real_product(dst, src, values, rows, cols, x, dense)
        ctx.save_for_backward(x, edge_index, real, src, dst, values)
        ctx.meta = (rows, cols, dense, blocks, grad_all)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, edge_index, real, src, dst, values = ctx.saved_tensors
        rows, cols, dense, blocks, grad_all = ctx.meta
        g = grad_out.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _real_product(dst, src, values, rows, cols, g, dense, transpose=True)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, g, edge_index, real, src, dst, blocks, grad_all)
        return grad_x, grad_w, None, None, None, None, None


def propagate(x: Tensor, weight: Tensor, edge_index: Tensor, real_mask: Tensor, *,
              num_targets: int, target_offset: int = 0, cand_offset: int = 0,
              blocks: Sequence[Block] | None = None, grad_all: bool = True) -> Tensor:
    """Aggregate ``x`` over the real candidates into ``num_targets`` target rows.

    The building block of every graph: ``edge_index`` ``[2, C]`` must be sorted by
    ``(target, source)``; sources index rows of ``x``; targets lie in
    ``[target_offset, target_offset + num_targets)`` and come out as rows
    ``0..num_targets-1``. ``blocks`` (absolute node ids, candidate ids shifted by
    ``cand_offset``) describe the candidates for the hallucinated gradient; by
    default the whole target x source rectangle is one block.

    >>> x = torch.tensor([[1.0], [2.0], [3.0]])
    >>> ei = torch.tensor([[0, 1, 0, 2], [1, 2, 3, 3]])   # sorted by target
    >>> w = torch.tensor([1.0, 0.5, -1.0, 2.0])
    >>> propagate(x, w, ei, torch.tensor([True, True, False, True]),
    ...           num_targets=3, target_offset=1).flatten().tolist()
    [1.0, 1.0, 6.0]
    """
    local = edge_index
    if target_offset:
        local = torch.stack([edge_index[0], edge_index[1] - target_offset])
    if blocks is None:
        c = edge_index.size(1)
        blocks = (Block(0, num_targets, 0, x.size(0), 0, c, c == num_targets * x.size(0)),)
    elif target_offset or cand_offset:
        blocks = tuple(Block(b.target_start - target_offset, b.target_end - target_offset, b.source_start,
                             b.source_end, b.cand_start - cand_offset, b.cand_end - cand_offset, b.complete)
                       for b in blocks)
    return _Propagate.apply(x, weight, local, real_mask, num_targets, tuple(blocks), grad_all)


def mode_selection(mode: str, weight: Tensor, k: int | None, real_mask: Tensor | None) -> tuple[Tensor, bool]:
    """``(real_mask, grad_all)`` for the modes of :func:`dnw_propagate` (:data:`MODES`, the
    :mod:`wiring.modes` modes that need no trained source run and select without chance):
    the mode's training-time :class:`~wiring.modes.Selection`."""
    if mode not in MODES:
        raise GraphError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    cls = mode_class(mode)
    if cls.uses_frozen:
        if real_mask is None or real_mask.dtype != torch.bool or real_mask.shape != weight.shape:
            raise GraphError(f"mode {mode!r} needs real_mask, a bool tensor with one entry per candidate")
    elif k is None and not cls.all_real:
        raise GraphError(f"mode {mode!r} needs k, the number of real edges")
    selection = make_mode(mode, weight.numel() if k is None else k).select(weight, real_mask, True)
    return selection.mask, selection.grad_all


def dnw_propagate(x: Tensor, edge_index: Tensor, edge_weight: Tensor, k: int | None = None,
                  mode: str = "dnw", real_mask: Tensor | None = None) -> Tensor:
    """One DNW aggregation over a whole graph: ``out[v] = sum_{(u,v) real} w_uv x[u]``.

    ``x`` is ``[N, F]``; the output is ``[N, F]``. Real edges per ``mode``:
    ``dnw`` (top-k of ``|w|``, gradient to every candidate), ``dnw_no_update``
    (top-k, gradient to real edges only), ``fixed`` (``real_mask`` given, gradient
    to real edges only), ``complete`` (all candidates real). ``edge_index`` may be
    in any order; ties in ``|w|`` go to the lower position in it.

    >>> x = torch.tensor([[1.0], [2.0], [3.0], [0.0]])
    >>> ei = torch.tensor([[0, 1, 2, 0], [3, 3, 3, 1]])
    >>> w = torch.tensor([1.0, -0.1, 2.0, 0.5], requires_grad=True)
    >>> out = dnw_propagate(x, ei, w, k=2)          # real: 2 -> 3 and 0 -> 3
    >>> out.flatten().tolist()
    [0.0, 0.0, 0.0, 7.0]
    >>> out.sum().backward(); w.grad.tolist()         # every candidate gets <x_u, g_v>
    [1.0, 2.0, 3.0, 1.0]
    """
    if x.dim() != 2:
        raise GraphError(f"x must be node-major [num_nodes, features], got shape {list(x.shape)}")
    if edge_weight.shape != (edge_index.size(1),):
        raise GraphError(f"edge_weight must have shape [{edge_index.size(1)}], got {list(edge_weight.shape)}")
    mask, grad_all = mode_selection(mode, edge_weight, k, real_mask)
    n = x.size(0)
    key = edge_index[1] * n + edge_index[0]
    if key.numel() > 1 and bool((key[1:] < key[:-1]).any()):
        order = torch.argsort(key)
        edge_index, edge_weight, mask = edge_index[:, order], edge_weight[order], mask[order]
    return propagate(x, edge_weight, edge_index, mask, num_targets=n, grad_all=grad_all)


def dense_reference(x: Tensor, edge_index: Tensor, edge_weight: Tensor, real_mask: Tensor,
                    grad_all: bool) -> Tensor:
    """The authors' formulation: a dense ``[N, N]`` matrix, masked in the forward,
    straight-through to the full matrix in the backward when ``grad_all``.
    Slow; the tests and the benchmark compare the engine against it."""
    n = x.size(0)
    full = _dense(edge_index[1], edge_index[0], edge_weight, n, n)
    mask = _dense(edge_index[1], edge_index[0], real_mask.to(edge_weight.dtype), n, n)
    masked = full * mask
    effective = full + (masked - full).detach() if grad_all else masked
    return effective @ x
