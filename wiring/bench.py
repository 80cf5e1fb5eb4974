"""``python -m wiring.bench``: training throughput of the engine against the authors' formulation.

Full training steps (forward, backward, SGD step) of the static tiny classifier,
run alternately in one process:

* **engine**: :class:`models.tiny.TinyClassifier` as trained by ``wiring.train``
  (node-major features, top-k over the admissible candidates, real edges as a CSR
  product, hallucinated-edge gradients as one GEMM per target level);
* **reference**: the same network computed as the authors did: ``[B, C, H, W]``
  feature maps, a dense weight matrix over all node pairs, masked by a straight-through
  top-k of a *full sort* of its entries (non-admissible pairs pushed to the end), and
  each level's inputs as a dense 1x1 convolution of every earlier level's states.

Both start from the same weights; the first step checks that their losses agree.
The machine may be shared, so the two alternate, each ``--repeats`` times after
warm-up, and the report gives medians, the ratio, the top-k time of each, and the
peak memory of one step of each (``VmHWM`` of a fresh subprocess). ``--json``
prints one line ``{"engine_img_s": ..., "reference_img_s": ..., "ratio": ...}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Sequence

import torch

from wiring.cli import ArgumentParser
import torch.nn.functional as F
from torch import Tensor, nn

from models.tiny import TinyClassifier, centre_pool
from wiring.ops import topk_mask


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
        return self.fc(centre_pool(inputs.transpose(0, 1).reshape(inputs.size(1), -1), x.size(0)))


def make_models(edges: int, image_size: int, seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    engine = TinyClassifier(in_channels=3, num_classes=10, image_size=image_size, edges=edges, seed=seed)
    return engine, DenseReference(engine)


def step_fn(model: nn.Module, x: Tensor, y: Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step() -> float:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def topk_time(engine: TinyClassifier, reference: DenseReference, repeats: int = 5) -> tuple[float, float]:
    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3
    return (timed(lambda: topk_mask(engine.graph.weight, engine.graph.k)), timed(reference.mask))


def peak_memory_mib(which: str, args: argparse.Namespace) -> float | None:
    """Peak RSS growth over one training step, in a fresh process (Linux VmHWM)."""
    code = ("import sys, torch; from wiring.bench import _one_step_memory; "
            f"print(_one_step_memory({which!r}, {args.edges}, {args.batch_size}, {args.image_size}, {args.threads}))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def _vm(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return float(line.split()[1]) / 1024
    raise RuntimeError(key)


def _one_step_memory(which: str, edges: int, batch: int, image_size: int, threads: int) -> float:
    torch.set_num_threads(threads)
    engine, reference = make_models(edges, image_size, 0)
    model = engine if which == "engine" else reference
    x, y = torch.randn(batch, 3, image_size, image_size), torch.randint(0, 10, (batch,))
    step = step_fn(model, x, y)
    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                           # reset VmHWM to the current RSS
    before = _vm("VmRSS")
    step()
    return round(_vm("VmHWM") - before, 1)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    engine, reference = make_models(args.edges, args.image_size, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen)
    y = torch.randint(0, 10, (args.batch_size,), generator=gen)
    with torch.no_grad():
        engine.eval(), reference.eval()
        agree = torch.allclose(engine(x), reference(x), atol=1e-3, rtol=1e-3)
        engine.train(), reference.train()
    steps = {"engine": step_fn(engine, x, y), "reference": step_fn(reference, x, y)}
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.repeats):
        for name, fn in (steps.items() if i % 2 == 0 else reversed(steps.items())):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        if not args.json:
            print(f"\rrepeat {i + 1}/{args.repeats}", end="", file=sys.stderr, flush=True)
    if not args.json:
        print("\r", end="", file=sys.stderr)
    med = {name: statistics.median(t) for name, t in times.items()}
    topk_engine, topk_reference = topk_time(engine, reference)
    result = {
        "engine_img_s": round(args.batch_size / med["engine"], 1),
        "reference_img_s": round(args.batch_size / med["reference"], 1),
        "ratio": round(med["reference"] / med["engine"], 3),
        "engine_step_ms": round(med["engine"] * 1e3, 1), "reference_step_ms": round(med["reference"] * 1e3, 1),
        "engine_topk_ms": round(topk_engine, 2), "reference_topk_ms": round(topk_reference, 2),
        "edges": args.edges, "candidates": engine.graph.num_candidates,
        "density": round(args.edges / engine.graph.num_candidates, 5),
        "batch_size": args.batch_size, "image_size": args.image_size, "threads": args.threads,
        "repeats": args.repeats, "outputs_agree": bool(agree),
    }
    if args.memory:
        result["engine_peak_mib"] = peak_memory_mib("engine", args)
        result["reference_peak_mib"] = peak_memory_mib("reference", args)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m wiring.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny",), default="tiny")
    parser.add_argument("--edges", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.edges <= 0 or args.batch_size <= 0 or args.repeats <= 0 or args.threads <= 0:
        print("error: --edges, --batch-size, --repeats and --threads must be positive", file=sys.stderr)
        return 2
    if args.edges > 325_760:
        print("error: --edges is more than the 325760 candidate edges of the tiny classifier", file=sys.stderr)
        return 2
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"static tiny classifier: k = {r['edges']} real edges of {r['candidates']} (density {r['density']:.2%}), "
          f"batch {r['batch_size']} of {r['image_size']}x{r['image_size']}, {r['threads']} threads, "
          f"medians of {r['repeats']} alternating full training steps")
    print(f"  {'':<10} {'images/s':>9} {'step ms':>8} {'top-k ms':>9} {'peak MiB':>9}")
    for name in ("engine", "reference"):
        peak = r.get(f"{name}_peak_mib")
        print(f"  {name:<10} {r[f'{name}_img_s']:>9.1f} {r[f'{name}_step_ms']:>8.1f} {r[f'{name}_topk_ms']:>9.2f} "
              f"{'' if peak is None else f'{peak:>9.1f}'}")
    print(f"  ratio (engine speed-up): {r['ratio']:.2f}x   outputs agree: {r['outputs_agree']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
