"""MobileNetV1-DNW in the authors' dense masked formulation, raced against the engine.

Contract: :class:`DenseMobileNetReference` computes the same network as
:class:`models.mobilenet.MobileNetV1DNW` the way the authors' code does: ``[B, C, H, W]``
feature maps; per stage one dense weight matrix over all node pairs, masked by a
straight-through top-k of a *full sort* of its entries (pairs that are no candidate pushed
to the end, k per stage); each level's inputs a dense 1x1 convolution of the concatenated
states of every earlier level of the stage; BN -> ReLU -> depthwise 3x3 as each node op
(the stage's stride on level 0). It starts from a copy of the engine's weights, so both
give the same outputs before the first step (:func:`outputs_agree`). :func:`race_mobilenet`
times full training steps (forward, backward, SGD) of both, alternately
(:func:`wiring.bench.contest.race`), for ``python -m wiring.bench --model mobilenetv1_dnw``.

>>> engine = make_mobilenet(width=0.0625, image_size=16, node_width=0.125)
>>> reference = DenseMobileNetReference(engine)
>>> [int(m.sum()) for m in reference.masks()] == [s.graph.k for s in engine.stages]
True
>>> outputs_agree(engine, reference, torch.randn(2, 3, 16, 16))
True
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.mobilenet import MobileNetV1DNW
from wiring.bench.contest import batch, race, step_fn, synchronize

__all__ = ["DenseMobileNetReference", "make_mobilenet", "outputs_agree", "race_mobilenet"]


def make_mobilenet(width: float = 0.225, image_size: int = 32, seed: int = 0, num_classes: int = 10,
                   node_width: float | None = None) -> MobileNetV1DNW:
    """The engine's MobileNetV1-DNW (mode dnw, the authors' init) for 3-channel inputs."""
    torch.manual_seed(seed)
    return MobileNetV1DNW(in_channels=3, num_classes=num_classes, image_size=image_size, width=width,
                          node_width=node_width, mode="dnw", seed=seed)


def _bn2d(bn: nn.BatchNorm1d) -> nn.BatchNorm2d:
    """A BatchNorm2d with ``bn``'s parameters and statistics (per channel over batch and space)."""
    out = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    out.load_state_dict(bn.state_dict())
    return out


class _Stage(nn.Module):
    def __init__(self, stage) -> None:
        super().__init__()
        layer = stage.graph
        self.k, self.blocks = layer.k, stage.blocks
        self.ptr = list(layer.graph.level_ptr)
        n = layer.graph.num_nodes
        ei = layer.edge_index
        dense = torch.zeros(n, n, dtype=layer.weight.dtype)
        dense[ei[1], ei[0]] = layer.weight.detach()
        self.weight = nn.Parameter(dense)                      # [targets, sources], all pairs
        admissible = torch.zeros(n, n, dtype=torch.bool)
        admissible[ei[1], ei[0]] = True
        self.register_buffer("admissible", admissible)
        self.norms = nn.ModuleList(_bn2d(op.bn) for op in stage.ops)
        self.convs = nn.ParameterList(nn.Parameter(op.conv_weight.detach().clone()) for op in stage.ops)
        self.strides = [op.stride for op in stage.ops]

    def mask(self) -> Tensor:
        """Top-k by a full sort of every entry (non-candidates last), as the authors did."""
        scores = torch.where(self.admissible, self.weight.detach().abs(), torch.full_like(self.weight, -1.0))
        order = torch.sort(scores.flatten(), descending=True, stable=True).indices
        mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
        mask[order[:self.k]] = True
        return mask.view_as(scores)

    def op(self, level: int, x: Tensor) -> Tensor:
        z = F.relu(self.norms[level](x))
        return F.conv2d(z, self.convs[level], stride=self.strides[level], padding=1, groups=z.size(1))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight + (self.weight * self.mask() - self.weight).detach()     # straight-through
        states = [self.op(0, x)]
        for level in range(1, self.blocks + 1):
            kernel = w[self.ptr[level]:self.ptr[level + 1], :self.ptr[level]]
            inputs = F.conv2d(torch.cat(states, 1), kernel[:, :, None, None])
            if level == self.blocks:
                return inputs
            states.append(self.op(level, inputs))
        raise AssertionError("a stage has at least one block")


class DenseMobileNetReference(nn.Module):
    """MobileNetV1-DNW (dense classifier) in the authors' formulation, from ``engine``'s weights."""

    def __init__(self, engine: MobileNetV1DNW) -> None:
        super().__init__()
        if engine.small:
            raise ValueError("the reference covers MobileNetV1-DNW with its dense classifier, not the small variant")
        self.stem = nn.Conv2d(engine.stem.in_channels, engine.stem.out_channels, 3, stride=engine.stem.stride,
                              padding=1, bias=False)
        self.stem.load_state_dict(engine.stem.state_dict())
        self.stages = nn.ModuleList(_Stage(s) for s in engine.stages)
        self.bn = _bn2d(engine.bn)
        self.fc = nn.Linear(engine.fc.in_features, engine.fc.out_features)
        self.fc.load_state_dict(engine.fc.state_dict())

    def masks(self) -> list[Tensor]:
        return [s.mask() for s in self.stages]

    def forward(self, x: Tensor) -> Tensor:
        z = self.stem(x)
        for stage in self.stages:
            z = stage(z)
        return self.fc(F.relu(self.bn(z)).mean((2, 3)))


@torch.no_grad()
def outputs_agree(engine: nn.Module, reference: nn.Module, x: Tensor, tol: float = 1e-3) -> bool:
    """Whether both give the same logits in evaluation mode (their training modes are kept)."""
    modes = engine.training, reference.training
    engine.eval(), reference.eval()
    try:
        return bool(torch.allclose(engine(x), reference(x), atol=tol, rtol=tol))
    finally:
        engine.train(modes[0]), reference.train(modes[1])


def race_mobilenet(args: argparse.Namespace) -> dict:
    """One row: median full training steps of the engine and the reference, alternating.

    ``args``: ``width``, ``image_size``, ``batch_size``, ``seed``, ``threads``, ``warmup``,
    ``repeats``, ``device``, ``json`` (no progress line when true).
    """
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    engine = make_mobilenet(args.width, args.image_size, args.seed).to(device)
    reference = DenseMobileNetReference(engine).to(device)
    x, y = batch(args, device)
    agree = outputs_agree(engine, reference, x)
    steps = {"engine": step_fn(engine, x, y), "reference": step_fn(reference, x, y)}
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    synchronize(device)
    med = race(steps, args.repeats, progress=not args.json)
    layers = [s.graph for s in engine.stages]
    k, candidates = sum(g.k for g in layers), sum(g.num_candidates for g in layers)
    return {"model": "mobilenetv1_dnw", "width": args.width,
            "engine_img_s": round(args.batch_size / med["engine"], 1),
            "reference_img_s": round(args.batch_size / med["reference"], 1),
            "ratio": round(med["reference"] / med["engine"], 3),
            "engine_step_ms": round(med["engine"] * 1e3, 1), "reference_step_ms": round(med["reference"] * 1e3, 1),
            "edges": k, "candidates": candidates, "density": round(k / candidates, 5),
            "batch_size": args.batch_size, "image_size": args.image_size, "threads": args.threads,
            "repeats": args.repeats, "outputs_agree": agree, "device": str(device)}
