"""Per-node operations on node-major feature maps.

A node op maps the inputs ``I`` of ``n`` nodes, node-major ``[n, B*H*W]``, to
their states ``Z = f(I)`` of the same shape, each node with its own parameters
and no mixing between nodes (the mixing is the graph's job). Keeping the layout
node-major means the graph never transposes between aggregation and op.

:class:`NormReLUConv` is the paper's node: a norm (``instance``: per node and
sample over H x W, affine per node; ``batch``: per node over batch and space,
with running statistics), ReLU, then a per-node (depthwise) 3x3 convolution.
On the CPU, the instance-norm variant with a 3x3 stride-1 kernel runs as one fused
native kernel when :mod:`wiring.backends.kernels` loads (same values; PyTorch ops otherwise).

Kernel initialisation (``init``): ``"authors"`` is PyTorch's default of the authors'
``nn.Conv2d(n, n, 3, groups=n)``, ``U(-1/sqrt(f), 1/sqrt(f))`` with the per-group
fan-in ``f = 9`` of a depthwise 3x3 (:func:`depthwise_fan_in`): ``U(-1/3, 1/3)``, std
0.19 for every node count. ``"kaiming"`` (the engine's default, bit-identical to
earlier versions) is ``kaiming_normal_(mode="fan_out")`` as PyTorch computes it for a
``[n, 1, 3, 3]`` weight, fan-out ``9 n`` (it counts all n channels, where a depthwise
output channel sees one): std ``sqrt(2 / (9 n))``, 0.034 for n = 192.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wiring.backends import kernels

INSTANCE_NORM_EPS = 1e-5        # both paths' instance-norm epsilon (F.instance_norm's default)
NODE_INITS = ("authors", "kaiming")


def depthwise_fan_in(weight: Tensor) -> int:
    """The fan-in of one output channel of a depthwise (``groups = channels``) conv
    weight ``[n, 1, kh, kw]``: ``kh * kw`` (one input channel per group).

    >>> depthwise_fan_in(torch.empty(192, 1, 3, 3))
    9
    """
    if weight.dim() != 4 or weight.size(1) != 1:
        raise ValueError(f"a depthwise weight is [n, 1, kh, kw], got {tuple(weight.shape)}")
    return weight.size(2) * weight.size(3)


def init_node_kernels(weight: Tensor, init: str) -> None:
    """Fill a depthwise kernel ``[n, 1, kh, kw]`` in place by ``init`` (see the module doc)."""
    if init == "authors":
        bound = 1.0 / depthwise_fan_in(weight) ** 0.5
        with torch.no_grad():
            weight.uniform_(-bound, bound)
    elif init == "kaiming":
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
    else:
        raise ValueError(f"init must be one of {', '.join(NODE_INITS)}, got {init!r}")


def node_major(maps: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> node-major ``[C, B*H*W]``: one row per channel (node), the
    batch and the positions along it, the layout every node op and aggregation reads.

    >>> node_major(torch.arange(8.0).view(2, 2, 1, 2)).tolist()
    [[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0]]
    """
    return maps.transpose(0, 1).reshape(maps.size(1), -1)


class _FusedNormReLUConv(torch.autograd.Function):
    """Instance norm -> ReLU -> depthwise 3x3 through :mod:`wiring.backends.kernels`'s fused kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, kernel: Tensor, height: int, width: int) -> Tensor:
        y, mean, rstd = kernels.node_forward(x, gamma, beta, kernel, height, width, INSTANCE_NORM_EPS)
        ctx.save_for_backward(x, gamma, beta, kernel, mean, rstd)
        ctx.size = (height, width)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor):
        x, gamma, beta, kernel, mean, rstd = ctx.saved_tensors
        gx, ggamma, gbeta, gkernel = kernels.node_backward(x, gamma, beta, kernel, mean, rstd, grad_y, *ctx.size)
        return gx, ggamma, gbeta, gkernel, None, None


class NormReLUConv(nn.Module):
    """norm -> ReLU -> depthwise 3x3 conv for ``num_nodes`` nodes of ``H x W`` maps.

    >>> op = NormReLUConv(4, 8, 8)
    >>> op(torch.randn(4, 2 * 8 * 8)).shape        # 4 nodes, batch 2
    torch.Size([4, 128])
    """

    def __init__(self, num_nodes: int, height: int, width: int, norm: str = "instance",
                 kernel_size: int = 3, stride: int = 1, init: str = "kaiming") -> None:
        super().__init__()
        if norm not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")
        self.num_nodes, self.height, self.width = num_nodes, height, width
        self.norm, self.stride, self.padding = norm, stride, kernel_size // 2
        if norm == "instance":
            self.norm_weight = nn.Parameter(torch.ones(num_nodes))
            self.norm_bias = nn.Parameter(torch.zeros(num_nodes))
        else:
            self.bn = nn.BatchNorm1d(num_nodes)
        self.conv_weight = nn.Parameter(torch.empty(num_nodes, 1, kernel_size, kernel_size))
        init_node_kernels(self.conv_weight, init)

    @property
    def out_size(self) -> tuple[int, int]:
        h = (self.height + 2 * self.padding - self.conv_weight.size(-1)) // self.stride + 1
        w = (self.width + 2 * self.padding - self.conv_weight.size(-1)) // self.stride + 1
        return h, w

    @property
    def fusable(self) -> bool:
        """Whether this op's shape has a fused native kernel (the tensors decide the rest)."""
        return (self.norm == "instance" and self.stride == 1 and self.conv_weight.shape[-2:] == (3, 3)
                and self.height * self.width > 1)     # instance norm of one pixel is an error either way

    def forward(self, x: Tensor) -> Tensor:
        n, hw = self.num_nodes, self.height * self.width
        if self.fusable and kernels.enabled(x, self.norm_weight, self.conv_weight):
            kernel = self.conv_weight.view(n, 9)
            return _FusedNormReLUConv.apply(x, self.norm_weight, self.norm_bias, kernel, self.height, self.width)
        batch = x.size(1) // hw
        if self.norm == "instance":
            # one "channel" per (node, sample); the node's affine repeated over its samples
            x = F.instance_norm(x.reshape(1, n * batch, hw), weight=self.norm_weight.repeat_interleave(batch),
                                bias=self.norm_bias.repeat_interleave(batch), eps=INSTANCE_NORM_EPS).view(n, -1)
        else:
            x = self.bn(x.reshape(1, n, batch * hw)).view(n, -1)
        x = F.relu(x)
        kernel = self.conv_weight.repeat_interleave(batch, 0)
        y = F.conv2d(x.reshape(1, n * batch, self.height, self.width), kernel,
                     stride=self.stride, padding=self.padding, groups=n * batch)
        return y.reshape(n, -1)
