"""The paper's static tiny classifier (DNW Table 1) built on the wiring engine.

stem -> graph -> head, as in the DNW paper's CIFAR-10 experiments:

* stem: conv3x3 (C_in -> 16, stride s1) -> BN -> ReLU -> depthwise conv3x3
  (stride s2) -> conv1x1 (16 -> 32) -> BN. The strides adapt to the input so the
  graph always runs on 8x8 maps: 32x32 -> s1 = s2 = 2 (the paper), 16x16 -> 2, 1,
  8x8 -> 1, 1. Sides that are not a multiple of 8 (28x28) are zero-padded up to
  the next one first; larger inputs (64, 224) end with an adaptive average pool.
* graph: a static :class:`~wiring.layer.WiredGraph` on levels ``[32, 192, 192,
  192, 192]`` of op nodes plus an output level of 100 nodes (900 nodes, 325,760
  candidates). The 32 input nodes are the stem's channels; every op node runs
  InstanceNorm (affine) -> ReLU -> depthwise 3x3; output nodes only sum their
  real in-edges.
* head: the output nodes' centre 3x3 positions -> 2x2 average pool (which keeps
  the top-left 2x2 of that window, as the authors' code does) -> linear 100 -> classes.

Node features are node-major ``[nodes, batch*8*8]`` from the stem to the head.

Initialisation (``init``, ``--init``): ``"authors"`` (the default) is what the
authors' code gets from PyTorch's module defaults. Their graph is one dense 800x800
1x1 convolution, so every candidate edge weight is ``U(-1/sqrt(800), 1/sqrt(800))``
(+-0.035, std 0.020): the bound of the dense formulation's fan-in, the 800 nodes that
send edges (:func:`wiring.presets.fan_in`; the ``micro`` model's 56). Their node
kernels are ``nn.Conv2d(n, n, 3, groups=n)``'s default, fan-in 9: ``U(-1/3, 1/3)``
(std 0.19) on every level. ``"kaiming"`` is this engine's earlier init: edges
normal with std ``sqrt(2 / mean candidate fan-in)`` (0.073 here) and node kernels
``kaiming_normal_(fan_out)`` with std ``sqrt(2 / (9 n))`` (0.034 on a 192-node
level). The stem, the head and the norms are PyTorch's defaults under both.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from models.registry import DEFAULT_EDGES
from wiring import fused
from wiring.graph import static_graph
from wiring.layer import WiredGraph
from wiring.nodeops import NormReLUConv, node_major

GRID = 8


def stem_strides(image_size: int) -> tuple[int, int, int]:
    """``(padding, stride1, stride2)`` taking ``image_size`` to 8x8 (or more, then pooled).

    >>> stem_strides(32), stem_strides(8), stem_strides(28)
    ((0, 2, 2), (0, 1, 1), (2, 2, 2))
    """
    padded = math.ceil(image_size / GRID) * GRID
    total = padded // GRID
    s1 = 2 if total >= 2 else 1
    s2 = 2 if total >= 4 else 1
    return (padded - image_size) // 2, s1, s2


class Stem(nn.Module):
    def __init__(self, in_channels: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        self.pad, s1, s2 = stem_strides(image_size)
        half = width // 2
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, half, 3, stride=s1, padding=1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride=s2, padding=1, groups=half),
            nn.Conv2d(half, width, 1), nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        x = self.layers(x)
        if x.size(-1) != GRID:
            x = F.adaptive_avg_pool2d(x, GRID)
        return x


def centre_pool(states: Tensor, batch: int) -> Tensor:
    """The head's pooling: ``[nodes, batch*8*8]`` node-major states -> ``[batch, nodes]``,
    averaging the top-left 2x2 of the centre 3x3 window (the authors' AvgPool2d(2)
    on that window)."""
    maps = states.view(states.size(0), batch, GRID, GRID)
    centre = GRID // 2 - 1
    kept = maps[:, :, centre - 1:centre + 1, centre - 1:centre + 1]    # AvgPool2d(2)'s one window
    return kept.mean((2, 3)).t()


class TinyClassifier(nn.Module):
    """Stem -> learned static graph on 8x8 maps -> output-node head."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 edges: int | None = DEFAULT_EDGES, mode: str = "dnw", preset: str = "random_k", seed: int = 0,
                 levels: tuple[int, ...] = (32, 192, 192, 192, 192), outputs: int = 100,
                 preset_options: dict | None = None, mode_options: dict | None = None,
                 init: str = "authors", candidate_grad_every: int = 1) -> None:
        super().__init__()
        self.stem = Stem(in_channels, image_size, levels[0])
        graph = static_graph(list(levels) + [outputs])
        self.graph = WiredGraph(graph, edges, mode, preset, seed, preset_options, mode_options, init=init,
                                candidate_grad_every=candidate_grad_every)      # edges None: every candidate
        self.node_ops = nn.ModuleList(NormReLUConv(n, GRID, GRID, init=init) for n in levels)
        self.fc = nn.Linear(outputs, num_classes)
        self.outputs = outputs

    def forward(self, x: Tensor) -> Tensor:
        z = self.node_ops[0](node_major(self.stem(x)))              # [32, B*64]
        last = len(self.node_ops)
        ops = [*self.node_ops[1:], None]                            # levels 1..last; outputs run no op
        if fused.supported(self.graph, ops, z):                     # native CPU kernels: same values
            out = fused.run_static(self.graph, z, ops)
        else:
            out = self.graph.run_static(z, lambda level, inputs: inputs if level == last
                                        else self.node_ops[level](inputs))[-1]
        return self.fc(centre_pool(out, x.size(0)))                 # out: [100, B*64]
