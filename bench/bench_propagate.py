"""Benchmark: the engine's level-by-level DNW propagation vs the dense masked reference.

Graph: the static tiny classifier, ``static_graph([32, 192, 192, 192, 192, 100])``
(900 nodes, 325,760 candidates, one complete block per target level). Features:
a batch of ``--batch`` 8x8 maps per node, node-major ``[nodes, batch * 64]``.
At each density d the wiring has ``k = round(d * C)`` real edges.

One timed step = top-k + forward + backward over all levels:

* **engine**: ``topk_mask`` (``torch.topk`` + tie break), then for each target level
  ``l`` ``propagate(cat(states[:l]), weight[c0:c1], edge_index[:, c0:c1], mask[c0:c1],
  num_targets=size_l, target_offset=node_ptr[l], cand_offset=c0, blocks=[block_l],
  grad_all=True)``: a sparse (CSR) forward over the real edges, a sparse backward to
  the features and one dense GEMM per level for every candidate's weight gradient.
* **reference** (the authors' formulation): a full ``torch.sort`` of ``|w|`` for
  the top-k, then per level the dense ``[size_l, prefix]`` weight matrix with a
  straight-through mask (``W + (W * M - W).detach()``, as ``wiring.ops.dense_reference``)
  times the prefix: dense GEMMs over all candidates in forward and backward.

Both use ``torch.relu`` as the node op and ``sum`` of the last level as the loss.
They are run alternately (ABAB, BABA...) after a warm-up step each; medians are
reported. The first warm-up also checks that both give the same output and
gradients (float32, max relative error).

Memory: for each variant and density a fresh subprocess builds the inputs, runs a
tiny step (batch 2) to load code paths, then one full step, and reports its peak
resident set size (the kernel's high-water mark ``VmHWM``, reset just before the
step through ``/proc/self/clear_refs``) minus the RSS just before that step: the
extra host memory one step needs at its peak, allocator effects included.
(``getrusage``'s ``ru_maxrss`` is the same high-water mark but is inherited across
fork/exec, so it cannot be reset in a child.) ``--no-memory`` skips it.

Usage: ``python bench/bench_propagate.py [--repeats 9] [--batch 128]
[--densities 0.01,0.05,0.2] [--threads N] [--json] [--no-memory]``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch

from wiring.graph import static_graph
from wiring.ops import propagate, topk_mask

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")

LEVELS = [32, 192, 192, 192, 192, 100]
SPATIAL = 8 * 8


class Problem:
    """The graph, its per-level slices, the input features and the edge weights."""

    def __init__(self, batch: int, seed: int = 0):
        self.graph = g = static_graph(LEVELS)
        self.C = g.num_candidates
        self.node_ptr = g.level_ptr
        self.cand_ptr = g.candidate_level_ptr
        self.levels = []
        for lvl, block in enumerate(g.blocks, start=1):
            assert block.complete and block.cand_start == self.cand_ptr[lvl]
            c0, c1 = self.cand_ptr[lvl], self.cand_ptr[lvl + 1]
            self.levels.append(dict(size=LEVELS[lvl], t0=self.node_ptr[lvl], c0=c0, c1=c1,
                                    edge_index=g.edge_index[:, c0:c1], block=block))
        gen = torch.Generator().manual_seed(seed)
        self.F = batch * SPATIAL
        self.x0 = torch.randn(LEVELS[0], self.F, generator=gen).requires_grad_()
        # i.i.d. weights, one scale for all levels: the initial top-k is a uniformly
        # random k-edge wiring (a per-level scale would put the whole top-k in one level)
        self.w = torch.randn(self.C, generator=gen).requires_grad_()

    def zero_grad(self) -> None:
        self.x0.grad = None
        self.w.grad = None


def engine_step(p: Problem, k: int) -> tuple[float, torch.Tensor]:
    """Top-k + forward + backward with wiring.ops.propagate; returns (top-k seconds, output)."""
    t = time.perf_counter()
    mask = topk_mask(p.w, k)
    t_topk = time.perf_counter() - t
    states = [p.x0]
    for lv in p.levels:
        c0, c1 = lv["c0"], lv["c1"]
        out = propagate(torch.cat(states), p.w[c0:c1], lv["edge_index"], mask[c0:c1], num_targets=lv["size"],
                        target_offset=lv["t0"], cand_offset=c0, blocks=[lv["block"]], grad_all=True)
        states.append(torch.relu(out))
    states[-1].sum().backward()
    return t_topk, states[-1].detach()


def sort_topk(w: torch.Tensor, k: int) -> torch.Tensor:
    """The authors' top-k: a full sort of |w| (stable: ties to the lower index, like topk_mask)."""
    order = torch.sort(w.detach().abs(), descending=True, stable=True).indices
    mask = torch.zeros(w.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


def reference_step(p: Problem, k: int) -> tuple[float, torch.Tensor]:
    """Top-k by sort + dense straight-through masked matrices, level by level."""
    t = time.perf_counter()
    mask = sort_topk(p.w, k)
    t_topk = time.perf_counter() - t
    states = [p.x0]
    for lv in p.levels:
        c0, c1 = lv["c0"], lv["c1"]
        W = p.w[c0:c1].view(lv["size"], lv["t0"])  # the complete block is the dense matrix W[rows, :prefix]
        M = mask[c0:c1].view(lv["size"], lv["t0"]).to(W.dtype)
        W_eff = W + (W * M - W).detach()  # forward: masked; backward: identity to all of W
        states.append(torch.relu(W_eff @ torch.cat(states)))
    states[-1].sum().backward()
    return t_topk, states[-1].detach()


STEPS = {"engine": engine_step, "reference": reference_step}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check_agreement(p: Problem, k: int) -> float:
    """Run both once; max relative difference over output, grad x0 and grad w."""
    results = []
    for name in ("engine", "reference"):
        p.zero_grad()
        _, out = STEPS[name](p, k)
        results.append((out, p.x0.grad.clone(), p.w.grad.clone()))
    assert torch.equal(topk_mask(p.w, k), sort_topk(p.w, k)), "the two top-k rules disagree"
    assert results[1][0].count_nonzero() > 0, "the last level is all zero: the check would be vacuous"
    return max(rel_err(a, b) for a, b in zip(*results))


def _status_kib(field: str) -> int:
    """A ``Vm*`` field of /proc/self/status in KiB (VmRSS: now, VmHWM: peak RSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_probe(variant: str, batch: int, density: float) -> dict:
    """In a fresh process: peak RSS during one full step minus the RSS just before it.

    The peak is the kernel's high-water mark VmHWM (the quantity getrusage's
    ru_maxrss reports, but per process image: ru_maxrss is inherited from the
    parent across fork/exec, which would hide a child's smaller peak), reset to
    the current RSS just before the step.
    """
    small = Problem(2)
    k = round(density * small.C)
    STEPS[variant](small, k)  # load code paths and thread pools at negligible size
    del small
    p = Problem(batch)
    reset = _reset_peak_rss()
    before = _status_kib("VmRSS")
    hwm_before = _status_kib("VmHWM")
    STEPS[variant](p, k)
    peak = _status_kib("VmHWM")
    return {"variant": variant, "peak_delta_mib": (peak - before) / 1024, "rss_before_mib": before / 1024,
            "valid": reset or peak > hwm_before}


def measure_memory(variant: str, args, density: float) -> float | None:
    cmd = [sys.executable, __file__, "--_memory-probe", variant, "--batch", str(args.batch),
           "--densities", str(density)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
        res = json.loads(out.strip().splitlines()[-1])
        return res["peak_delta_mib"] if res["valid"] else None
    except (subprocess.SubprocessError, ValueError, IndexError) as e:  # report, do not crash the table
        print(f"memory probe failed for {variant}: {e}", file=sys.stderr)
        return None


def bench_density(p: Problem, density: float, args) -> dict:
    k = round(density * p.C)
    err = check_agreement(p, k)  # doubles as the warm-up step of each
    times = {"engine": [], "reference": []}
    topk = {"engine": [], "reference": []}
    for rep in range(args.repeats):
        order = ("engine", "reference") if rep % 2 == 0 else ("reference", "engine")
        for name in order:
            p.zero_grad()
            t = time.perf_counter()
            t_topk, _ = STEPS[name](p, k)
            times[name].append(time.perf_counter() - t)
            topk[name].append(t_topk)
    ms = {n: 1e3 * statistics.median(v) for n, v in times.items()}
    topk_ms = {n: 1e3 * statistics.median(v) for n, v in topk.items()}
    mem = ({n: measure_memory(n, args, density) for n in ("engine", "reference")}
           if args.memory else {"engine": None, "reference": None})
    return {
        "density": density, "k": k, "candidates": p.C, "batch": args.batch, "features": p.F,
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "engine_ms": ms["engine"], "reference_ms": ms["reference"],
        "engine_min_ms": 1e3 * min(times["engine"]), "reference_min_ms": 1e3 * min(times["reference"]),
        "ratio_reference_over_engine": ms["reference"] / ms["engine"],
        "engine_topk_ms": topk_ms["engine"], "reference_topk_ms": topk_ms["reference"],
        "engine_peak_mib": mem["engine"], "reference_peak_mib": mem["reference"],
        "max_rel_diff": err, "loadavg_1min": os.getloadavg()[0],
        "engine_ms_all": [1e3 * t for t in times["engine"]],
        "reference_ms_all": [1e3 * t for t in times["reference"]],
    }


def fmt_mem(v) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def print_table(rows: list[dict]) -> None:
    head = (f"{'density':>7} {'k':>7} | {'engine ms':>9} {'ref ms':>8} {'ref/eng':>7} | {'eng min':>7} {'ref min':>7} | "
            f"{'topk eng':>8} {'sort ref':>8} | {'eng MiB':>7} {'ref MiB':>7} | {'max rel diff':>12}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['density']:>7.2%} {r['k']:>7d} | {r['engine_ms']:>9.1f} {r['reference_ms']:>8.1f} "
              f"{r['ratio_reference_over_engine']:>6.2f}x | {r['engine_min_ms']:>7.1f} {r['reference_min_ms']:>7.1f} | "
              f"{r['engine_topk_ms']:>8.2f} {r['reference_topk_ms']:>8.2f} | "
              f"{fmt_mem(r['engine_peak_mib']):>7} {fmt_mem(r['reference_peak_mib']):>7} | {r['max_rel_diff']:>12.2e}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9, help="timed steps per variant and density (default 9)")
    ap.add_argument("--batch", type=int, default=128, help="batch of 8x8 maps (default 128)")
    ap.add_argument("--densities", default="0.01,0.05,0.2", help="comma-separated fractions of the candidates")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    ap.add_argument("--json", action="store_true", help="print one JSON line per density instead of the table")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    ap.add_argument("--_memory-probe", dest="probe", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    densities = [float(d) for d in args.densities.split(",") if d.strip()]
    if any(not 0 < d <= 1 for d in densities):
        ap.error("densities must be in (0, 1]")
    if args.repeats < 1 or args.batch < 1:
        ap.error("--repeats and --batch must be positive")
    if args.probe:
        print(json.dumps(memory_probe(args.probe, args.batch, densities[0])))
        return

    start = time.perf_counter()
    p = Problem(args.batch)
    if not args.json:
        print(f"static graph {LEVELS}: {p.graph.num_nodes} nodes, {p.C} candidates; features "
              f"{args.batch} x 8 x 8 = {p.F} per node; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; medians of {args.repeats} alternating runs; "
              f"load average {os.getloadavg()[0]:.2f} at start\n")
    rows = []
    for d in densities:
        row = bench_density(p, d, args)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows)
        print("\nms: one top-k + forward + backward over the 5 target levels (median). topk eng = "
              "topk_mask (torch.topk); sort ref = full torch.sort of |w|.\nMiB: peak RSS (VmHWM) of one full "
              "step above the RSS just before it, in a fresh process.\nmax rel diff: engine vs reference, "
              "output and gradients (x0, w), float32.")
        print("min: fastest single run. Other processes on the machine slow both variants alike; "
              "compare the load average.")
        print(f"total {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
