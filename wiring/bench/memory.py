"""Peak memory of one training step of a benchmark contestant.

Contract: on the CPU, :func:`peak_memory_mib` runs one step in a fresh subprocess and reads
its ``VmHWM`` (the process's resident high-water mark, so nothing of the parent counts); on
CUDA, :func:`cuda_peak_mib` is ``torch.cuda.max_memory_allocated`` over one step, in process.
None where it cannot be measured (no ``/proc``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import torch

from wiring.bench.contest import PAPER_NODES, make_models, step_fn, synchronize, without_native


def peak_memory_mib(which: str, args: argparse.Namespace) -> float | None:
    """Peak RSS growth over one training step, in a fresh process (Linux VmHWM)."""
    code = ("import sys, torch; from wiring.bench.memory import one_step_memory; "
            f"print(one_step_memory({which!r}, {args.edges}, {args.batch_size}, {args.image_size}, {args.threads}, "
            f"{args.nodes}))")
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


def one_step_memory(which: str, edges: int, batch: int, image_size: int, threads: int,
                     nodes: int = PAPER_NODES) -> float:
    torch.set_num_threads(threads)
    engine, reference = make_models(edges, image_size, 0, nodes)
    model = reference if which == "reference" else engine
    x, y = torch.randn(batch, 3, image_size, image_size), torch.randint(0, 10, (batch,))
    step = step_fn(model, x, y)
    if which == "pytorch":
        step = without_native(step)
    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                           # reset VmHWM to the current RSS
    before = _vm("VmRSS")
    step()
    return round(_vm("VmHWM") - before, 1)


def cuda_peak_mib(step, device: torch.device) -> float:
    """Peak CUDA memory allocated over one training step beyond what was allocated before it
    (``torch.cuda.max_memory_allocated``; in process: the caching allocator counts tensors)."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    synchronize(device)
    return round((torch.cuda.max_memory_allocated(device) - before) / 2**20, 1)
