"""A whole static graph as one autograd node on the native CPU kernels.

:meth:`WiredGraph.run_static <wiring.layer.WiredGraph.run_static>` runs a static graph
level by level in PyTorch: each level concatenates every earlier level's states, and
autograd sums each state's gradient over the levels that read it. :func:`run_static`
computes the same thing with no concatenation and no gradient sums: all states live in
one preallocated ``[nodes below the output level, F]`` buffer that each level's node op
writes into, and the backward accumulates the gradient to every source in place
(``G[:t0] += A^T g``, the output level's write initialising all of ``G``), which the
reverse level order makes complete before a level's node op needs it. The node ops run on the
native kernels; the real-edge products, forward and to the sources, on the backend that
:mod:`wiring.backends` chooses (``--backend``), like everywhere else in the engine.

The values are those of ``run_static`` with the same selection: forward
``I_l = A_l Z_{<l}``, ``Z_l = op_l(I_l)``; gradients to the level-0 states, every
candidate weight (every candidate's ``<x_u, g_v>`` when the selection's ``grad_all``,
the real ones' otherwise, per :func:`wiring.ops.propagate`) and every node op's
parameters. It applies when :func:`supported` says so: CPU tensors of one float dtype,
the native kernels loaded, every op level a fusable :class:`~wiring.nodeops.NormReLUConv`
and the output level without an op (``None``).

>>> from wiring.graph import static_graph
>>> from wiring.layer import WiredGraph
>>> from wiring.nodeops import NormReLUConv
>>> layer = WiredGraph(static_graph([2, 3, 2]), edges=6, seed=0)
>>> ops = [NormReLUConv(3, 2, 2), None]                 # level 1 runs an op, the outputs none
>>> x0 = torch.randn(2, 3 * 4)                          # 2 input nodes, batch 3 of 2x2 maps
>>> out = run_static(layer, x0, ops) if supported(layer, ops, x0) else layer.run_static(
...     x0, lambda level, inp: inp if level == 2 else ops[0](inp))[-1]
>>> tuple(out.shape)
(2, 12)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from wiring.backends import kernels
from wiring.layer import WiredGraph
from wiring.modes import Selection
from wiring.nodeops import INSTANCE_NORM_EPS, NormReLUConv
from wiring.ops import _real_edges, _real_product, _weight_grad


def supported(layer: WiredGraph, ops: Sequence[NormReLUConv | None], inputs: Tensor) -> bool:
    """Whether :func:`run_static` can run ``layer`` with these per-level ops (levels 1..L)."""
    levels = len(layer.graph.level_sizes) - 1
    if not layer.graph.static or len(ops) != levels or ops[-1] is not None:
        return False
    sizes = layer.graph.level_sizes[1:]
    if any(op is None or not op.fusable or op.num_nodes != n for op, n in zip(ops[:-1], sizes)):
        return False
    if len({(op.height, op.width) for op in ops[:-1]}) > 1:
        return False
    return kernels.enabled(inputs, layer.weight, *_op_params(ops))


def _op_params(ops: Sequence[NormReLUConv | None]) -> list[Tensor]:
    """Each op level's instance-norm scale and shift and conv kernel, in level order."""
    return [p for op in ops[:-1] for p in (op.norm_weight, op.norm_bias, op.conv_weight)]


class _Level:
    """One target level's real edges, found once per forward and kept for the backward."""

    def __init__(self, layer: WiredGraph, level: int, weight: Tensor, mask: Tensor) -> None:
        self.edge_index, self.candidates, self.nodes, self.blocks = layer.level_candidates(level)
        self.rows, self.cols = self.nodes.stop - self.nodes.start, self.nodes.start
        self.real, self.src, self.dst, self.values, self.dense = _real_edges(
            self.edge_index, weight[self.candidates], mask[self.candidates], self.rows, self.cols)

    def forward(self, states: Tensor, out: Tensor) -> None:
        """``out = A states[:t0]``."""
        _real_product(self.dst, self.src, self.values, self.rows, self.cols, states[:self.cols], self.dense, out=out)

    def backward_sources(self, grad: Tensor, grad_states: Tensor, first: bool) -> None:
        """``grad_states[:t0] (+)= A^T grad`` (``=`` when ``first``)."""
        _real_product(self.dst, self.src, self.values, self.rows, self.cols, grad, self.dense, transpose=True,
                      out=grad_states[:self.cols], accumulate=not first)


class _StaticGraph(torch.autograd.Function):
    @staticmethod
    def forward(ctx, layer: WiredGraph, selection: Selection, sizes: tuple[int, int], inputs: Tensor,
                weight: Tensor, *params: Tensor) -> Tensor:
        height, width = sizes
        last = len(layer.graph.level_sizes) - 1
        levels = [_Level(layer, level, weight.detach(), selection.mask) for level in range(1, last + 1)]
        below_output = levels[-1].cols
        states = inputs.new_empty(below_output, inputs.size(1))
        states[:inputs.size(0)] = inputs
        op_inputs, stats = [], []
        for i, lv in enumerate(levels[:-1]):
            gamma, beta, conv = params[3 * i:3 * i + 3]
            op_input = inputs.new_empty(lv.rows, inputs.size(1))
            lv.forward(states, op_input)
            _, mean, rstd = kernels.node_forward(op_input, gamma, beta, conv.view(lv.rows, 9), height, width,
                                                INSTANCE_NORM_EPS, out=states[lv.nodes])
            op_inputs.append(op_input)
            stats += [mean, rstd]
        out = inputs.new_empty(levels[-1].rows, inputs.size(1))
        levels[-1].forward(states, out)
        ctx.save_for_backward(states, *op_inputs, *stats, *params)
        ctx.levels, ctx.sizes, ctx.grad_all, ctx.n_inputs = levels, sizes, selection.grad_all, inputs.size(0)
        ctx.weight_size = weight.numel()
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        levels, (height, width) = ctx.levels, ctx.sizes
        n_ops = len(levels) - 1
        saved = ctx.saved_tensors
        states, op_inputs = saved[0], saved[1:1 + n_ops]
        stats, params = saved[1 + n_ops:1 + 3 * n_ops], saved[1 + 3 * n_ops:]
        grad_states = torch.empty_like(states)
        grad_weight = states.new_zeros(ctx.weight_size)
        grad_params: list[Tensor | None] = [None] * len(params)
        grad = grad_out.contiguous()
        for i in range(len(levels) - 1, -1, -1):
            lv = levels[i]
            if i < n_ops:                                   # the level's states gradient is complete now
                gamma, beta, conv = params[3 * i:3 * i + 3]
                grad, g_gamma, g_beta, g_conv = kernels.node_backward(
                    op_inputs[i], gamma, beta, conv.view(lv.rows, 9), stats[2 * i], stats[2 * i + 1],
                    grad_states[lv.nodes], height, width)
                grad_params[3 * i:3 * i + 3] = [g_gamma, g_beta, g_conv.view_as(conv)]
            lv.backward_sources(grad, grad_states, first=i == len(levels) - 1)
            if ctx.needs_input_grad[4]:
                grad_weight[lv.candidates] = _weight_grad(states[:lv.cols], grad, lv.edge_index, lv.real, lv.src,
                                                          lv.dst, lv.blocks, ctx.grad_all)
        grad_inputs = grad_states[:ctx.n_inputs] if ctx.needs_input_grad[3] else None
        return (None, None, None, grad_inputs, grad_weight if ctx.needs_input_grad[4] else None, *grad_params)


def run_static(layer: WiredGraph, inputs: Tensor, ops: Sequence[NormReLUConv | None],
               selection: Selection | None = None) -> Tensor:
    """The output level's states ``[n_L, F]`` of ``layer`` run on ``inputs`` (level-0
    states) with ``ops[l - 1]`` at level ``l`` (``None`` at the output level)."""
    selection = layer.select() if selection is None else selection
    params = _op_params(ops)
    sizes = (ops[0].height, ops[0].width) if len(ops) > 1 else (1, 1)
    return _StaticGraph.apply(layer, selection, sizes, inputs.contiguous(), layer.weight, *params)
