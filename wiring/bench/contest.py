"""The contestants of the benchmarks and the alternating timer they race on.

Contract: :func:`make_models` builds the engine (:class:`models.tiny.TinyClassifier` at
``nodes`` nodes, :func:`levels_for`) and the authors' dense formulation
(:class:`wiring.bench.reference.DenseReference`) of the same network from one seed, so both
start from the same weights; :func:`step_fn` is one SGD training step of either;
:func:`race` times several steps alternately, the order reversed every other round, and
reports medians, so a second process on the machine slows all contestants alike.

>>> levels_for(900)
(32, 192, 192, 192, 192)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.tiny import TinyClassifier
from wiring import backends
from wiring.backends import kernels
from wiring.bench.cli import PAPER_NODES  # noqa: F401 - 900, the paper's tiny classifier (re-exported)
from wiring.bench.reference import DenseReference


def race(steps: dict, repeats: int, progress: bool = False) -> dict[str, float]:
    """Median seconds per call of each of ``steps`` (already warmed up): ``repeats`` rounds
    calling all of them, in reverse order on every other round, so a load that comes and
    goes slows every contestant alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(repeats):
        for name, fn in (steps.items() if i % 2 == 0 else reversed(steps.items())):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        if progress and sys.stderr.isatty():
            print(f"\rrepeat {i + 1}/{repeats}", end="", file=sys.stderr, flush=True)
        elif progress:                  # a log: one line per round, never a run-on line of \r
            print(f"repeat {i + 1}/{repeats}", file=sys.stderr, flush=True)
    if progress and sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    return {name: statistics.median(t) for name, t in times.items()}


def levels_for(nodes: int) -> tuple[int, ...]:
    """The tiny classifier's shape scaled to ``nodes`` nodes: 32 inputs, four equal op
    levels (the remainder spread over the first ones), 100 outputs.

    >>> levels_for(900), levels_for(802)
    ((32, 192, 192, 192, 192), (32, 168, 168, 167, 167))
    """
    if nodes < 136:
        raise ValueError(f"a scaled tiny classifier needs at least 136 nodes, got {nodes}")
    m, extra = divmod(nodes - 132, 4)
    return (32,) + tuple(m + (i < extra) for i in range(4))


def make_engine(edges: int, image_size: int, seed: int, nodes: int = PAPER_NODES) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(in_channels=3, num_classes=10, image_size=image_size, edges=edges, seed=seed,
                          levels=levels_for(nodes))


def make_models(edges: int, image_size: int, seed: int, nodes: int = PAPER_NODES) -> tuple[nn.Module, nn.Module]:
    engine = make_engine(edges, image_size, seed, nodes)
    return engine, DenseReference(engine)


def candidates_for(nodes: int) -> int:
    """Candidate edges of the scaled tiny classifier (every lower-to-higher level pair).

    >>> candidates_for(900)
    325760
    """
    sizes = list(levels_for(nodes)) + [100]
    return sum(sizes[i] * sum(sizes[:i]) for i in range(1, len(sizes)))


def step_fn(model: nn.Module, x: Tensor, y: Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step() -> float:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch(args: argparse.Namespace, device: torch.device) -> tuple[Tensor, Tensor]:
    """The benchmark's one batch of random images and labels (the same for every contestant)."""
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen)
    y = torch.randint(0, 10, (args.batch_size,), generator=gen)
    return x.to(device), y.to(device)


def without_native(step):
    def run_step() -> float:
        with kernels.disabled(), backends.using("torch"):
            return step()
    return run_step


def on_backend(name: str, step):
    def run_step() -> float:
        with backends.using(name):
            return step()
    return run_step
