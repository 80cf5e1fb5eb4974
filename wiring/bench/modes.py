"""``python -m wiring.bench --mode M [M ...]``: the training cost per step of wiring modes, side by side.

Contract: :func:`mode_rows` builds the static tiny classifier once per mode from one seed (the
same weights, the same initial real set, the same batch) and races full training steps as
``wiring.train`` takes them (forward, backward, the wiring monitor's growth scores, the SGD
step, the monitor's update), alternating the modes (:func:`wiring.bench.contest.race`), so a
load on the machine slows them all alike. One timed call is a cycle of ``update_every``
steps, which holds exactly one update of a rewiring mode (``rigl``, ``set``: its candidate
gradient and its drop-and-grow), so the cost per step is amortised as in training; the
rewiring modes run with ``drop_until`` past the benchmark (every cycle updates) and their
other defaults. :func:`modes_table` prints ms per step and the ratios to ``dnw`` and ``fixed``.
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wiring.bench.cli import BENCH_MODES  # noqa: F401 - re-exported: the --mode choices
from wiring.bench.contest import batch, levels_for, make_engine, race
from wiring.modes import mode_class
from wiring.train.monitor import WiringMonitor


def training_cycle(model: nn.Module, x: Tensor, y: Tensor, steps: int):
    """A function running ``steps`` training steps of ``model`` as the trainer does (the
    wiring monitor's calls included); returns the last loss."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    monitor = WiringMonitor(model)
    taken = [0]

    def cycle() -> float:
        loss = torch.zeros(())
        for _ in range(steps):
            taken[0] += 1
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            monitor.after_backward(taken[0])
            opt.step()
            monitor.after_step(taken[0], opt)
        return loss.item()
    return cycle


def mode_engine(mode: str, args: argparse.Namespace) -> nn.Module:
    """The tiny classifier of ``args`` in ``mode`` (from ``args.seed``: every mode the same weights)."""
    engine = make_engine(args.edges, args.image_size, args.seed, args.nodes)
    options = {}
    if mode_class(mode).updates:         # every cycle holds one update: drop_until past the benchmark
        options = {"update_every": args.update_every, "total_steps": 10 ** 9}
    if mode == "dnw" and not options:
        return engine
    built = type(engine)(in_channels=3, num_classes=10, image_size=args.image_size,
                         edges=None if mode_class(mode).all_real else args.edges, mode=mode, seed=args.seed,
                         levels=levels_for(args.nodes), mode_options=options)
    built.load_state_dict(copy.deepcopy(engine.state_dict()))           # the same weights and real set
    return built


def mode_rows(args: argparse.Namespace) -> dict:
    """ms per training step of each of ``args.mode`` (amortised over cycles of
    ``args.update_every`` steps), raced alternately, and the ratios to dnw and fixed."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = batch(args, device)
    cycles = {}
    for mode in args.mode:
        model = mode_engine(mode, args).to(device).train()
        cycles[mode] = training_cycle(model, x, y, args.update_every)
    for _ in range(max(args.warmup, 1)):
        for fn in cycles.values():
            fn()
    med = race(cycles, args.repeats, progress=not args.json)
    ms = {mode: med[mode] / args.update_every * 1e3 for mode in args.mode}
    out = {"step_ms": {m: round(v, 2) for m, v in ms.items()}, "update_every": args.update_every,
           "edges": args.edges, "nodes": args.nodes, "batch_size": args.batch_size, "image_size": args.image_size,
           "threads": args.threads, "repeats": args.repeats, "device": str(device)}
    for base in ("dnw", "fixed"):
        if base in ms:
            out[f"ratio_to_{base}"] = {m: round(v / ms[base], 3) for m, v in ms.items()}
    return out


def modes_table(r: dict) -> str:
    """The text report of :func:`mode_rows`."""
    bases = [b for b in ("dnw", "fixed") if f"ratio_to_{b}" in r]
    lines = [f"static tiny classifier ({r['nodes']} nodes), k = {r['edges']:,}, batch {r['batch_size']} of "
             f"{r['image_size']}x{r['image_size']}, {r['threads']} threads: full training steps in cycles of "
             f"{r['update_every']} (one rewiring of rigl / set each), medians of {r['repeats']} alternating cycles",
             f"  {'mode':<16} {'ms/step':>8}" + "".join(f" {'x ' + b:>9}" for b in bases)]
    for mode, ms in r["step_ms"].items():
        lines.append(f"  {mode:<16} {ms:>8.2f}" + "".join(f" {r[f'ratio_to_{b}'][mode]:>9.3f}" for b in bases))
    return "\n".join(lines)
