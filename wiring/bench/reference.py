"""The authors' dense masked formulation of the tiny classifier, shared by the benchmarks.

:class:`DenseReference` computes the same network as :class:`models.tiny.TinyClassifier`
the way the authors did: ``[B, C, H, W]`` feature maps, a dense weight matrix over all
node pairs, masked by a straight-through top-k of a *full sort* of its entries
(non-admissible pairs pushed to the end), and each level's inputs as a dense 1x1
convolution of every earlier level's states. It starts from the engine's weights, so
both give the same loss on the first step. :mod:`wiring.bench` (training) and
:mod:`wiring.bench.inference` (inference) both race against it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.tiny import TinyClassifier, centre_pool
from wiring.nodeops import node_major


class DenseReference(nn.Module):
    """The tiny classifier in the authors' dense masked formulation, sharing ``engine``'s weights."""

    def __init__(self, engine: TinyClassifier) -> None:
        super().__init__()
        self.stem, self.fc = engine.stem, engine.fc
        graph = engine.graph.graph
        self.k = engine.graph.k
        self.sizes = graph.level_sizes                     # op levels ..., outputs
        self.ptr = graph.level_ptr
        n = graph.num_nodes
        ei = engine.graph.edge_index
        dense = torch.zeros(n, n)
        dense[ei[1], ei[0]] = engine.graph.weight.detach()
        self.weight = nn.Parameter(dense)                  # [targets, sources], all pairs
        admissible = torch.zeros(n, n, dtype=torch.bool)
        admissible[ei[1], ei[0]] = True
        self.register_buffer("admissible", admissible)
        self.norms = nn.ModuleList()
        self.convs = nn.ParameterList()
        for op in engine.node_ops:
            norm = nn.InstanceNorm2d(op.num_nodes, affine=True)
            norm.weight.data.copy_(op.norm_weight.detach())
            norm.bias.data.copy_(op.norm_bias.detach())
            self.norms.append(norm)
            self.convs.append(nn.Parameter(op.conv_weight.detach().clone()))

    def mask(self) -> Tensor:
        """Top-k by a full sort of every entry, as the authors did (inadmissible ones last)."""
        scores = torch.where(self.admissible, self.weight.detach().abs(), torch.full_like(self.weight, -1.0))
        order = torch.sort(scores.flatten(), descending=True, stable=True).indices
        mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
        mask[order[:self.k]] = True
        return mask.view_as(scores)

    def forward(self, x: Tensor) -> Tensor:
        mask = self.mask()
        w = self.weight + (self.weight * mask - self.weight).detach()     # straight-through
        inputs = self.stem(x)                                             # level 0's inputs
        states: list[Tensor] = []
        last = len(self.sizes) - 1
        for level in range(last + 1):
            if level:
                kernel = w[self.ptr[level]:self.ptr[level + 1], :self.ptr[level]]
                inputs = F.conv2d(torch.cat(states, 1), kernel[:, :, None, None])
            if level == last:
                break
            z = F.relu(self.norms[level](inputs))
            states.append(F.conv2d(z, self.convs[level], padding=1, groups=z.size(1)))
        return self.fc(centre_pool(node_major(inputs), x.size(0)))
