"""The measuring half of ``bench/gpu_check.sh``: engine vs reference on one device, in one process.

One Python process (CUDA initialised once) runs, on ``--device``:

1. ``wiring.bench.training.run`` at the paper's size (tiny classifier, 900 nodes) with 12,000 and
   16,288 (5%) edges at batch 128 and 512, then the scaled 4,000- and 8,000-node networks
   with 200,000 edges at batch 128 (the CPU scaling table's largest column): engine and
   dense-masked reference img/s, their ratio, and on CUDA the peak memory of one step of
   each (``torch.cuda.max_memory_allocated``) -> ``bench.json`` (one row per size);
2. ``torch.profiler`` over steps of the engine (tiny classifier, 16,288 edges, batch 128):
   the top 10 kernels by their own device time -> ``profile.txt`` and ``profile.json``;
3. the host syncs of one engine training step, counted with
   ``torch.cuda.set_sync_debug_mode("warn")`` (CUDA only), each with the line of the
   project that caused it -> ``syncs.json``.

``--quick`` cuts every size (nodes, edges, batch, repeats) so that the CPU dry run of
``gpu_check.sh`` checks this script end to end in about a minute; the sizes, not the
parts, are what it cuts. Each part writes its file as soon as it is done, so a part that
runs out of time loses only itself.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

from wiring import backends
from wiring.bench import contest, training


def _args(device: str, nodes: int, edges: int, batch: int, repeats: int, warmup: int) -> argparse.Namespace:
    return argparse.Namespace(nodes=nodes, edges=edges, batch_size=batch, image_size=32, repeats=repeats,
                              warmup=warmup, threads=torch.get_num_threads(), seed=0, memory=True, json=True,
                              device=device)


def sizes(quick: bool) -> list[tuple[int, int, int]]:
    """(nodes, edges, batch) of part 1."""
    if quick:
        return [(contest.PAPER_NODES, 12000, 8), (contest.PAPER_NODES, 16288, 16), (400, 5000, 8)]
    return [(contest.PAPER_NODES, 12000, 128), (contest.PAPER_NODES, 16288, 128), (contest.PAPER_NODES, 12000, 512),
            (contest.PAPER_NODES, 16288, 512), (4000, 200000, 128), (8000, 200000, 128)]


def measure(device: str, out: Path, quick: bool, say) -> None:
    rows = []
    for nodes, edges, batch in sizes(quick):
        t = time.perf_counter()
        try:
            args = _args(device, nodes, edges, batch, 3 if quick else 10, 1 if quick else 2)
            args.memory = not (quick and device == "cpu")     # the CPU peaks need 3 fresh processes a row
            row = training.run(args)
        except Exception as err:                          # one size failing (out of memory) keeps the others
            row = {"nodes": nodes, "edges": edges, "batch_size": batch, "error": f"{type(err).__name__}: {err}"}
            traceback.print_exc()
        row["wall_s"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        say(json.dumps(row))
        (out / "bench.json").write_text(json.dumps(rows, indent=1) + "\n")


def profile(device: str, out: Path, quick: bool, say) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    batch, edges = (8, 16288) if quick else (128, 16288)
    args = _args(device, contest.PAPER_NODES, edges, batch, 1, 1)
    dev = torch.device(device)
    engine = contest.make_engine(edges, 32, 0).to(dev)
    x, y = contest.batch(args, dev)
    step = contest.step_fn(engine, x, y)
    for _ in range(3):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    steps = 2 if quick else 5
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    # self time: the kernels themselves, not the operators that launch them
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    table = averages.table(sort_by=key, row_limit=10)
    (out / "profile.txt").write_text(f"{steps} engine training steps, tiny classifier, {edges} edges, batch {batch}, "
                                     f"{device}, {backends.status(dev)}; sorted by {key}\n\n{table}\n")

    def device_us(event) -> float:
        return float(getattr(event, key))
    top = sorted(averages, key=device_us, reverse=True)[:10]
    rows = [{"name": e.key, "calls": e.count, "time_ms_per_step": round(device_us(e) / steps / 1e3, 3)} for e in top]
    (out / "profile.json").write_text(json.dumps(rows, indent=1) + "\n")
    say(f"profile: top kernel {rows[0]['name']} {rows[0]['time_ms_per_step']} ms/step" if rows else "profile: empty")


def syncs(device: str, out: Path, quick: bool, say) -> None:
    dev = torch.device(device)
    if dev.type != "cuda":
        (out / "syncs.json").write_text(json.dumps({"device": device, "note": "sync debug mode needs CUDA"}) + "\n")
        say("syncs: skipped (not CUDA)")
        return
    batch = 8 if quick else 128
    engine = contest.make_engine(16288, 32, 0).to(dev)
    x, y = contest.batch(_args(device, contest.PAPER_NODES, 16288, batch, 1, 1), dev)
    opt = torch.optim.SGD(engine.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.functional.cross_entropy

    def one_step() -> None:                               # a training step without the benchmark's loss.item()
        loss = loss_fn(engine(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    one_step()
    torch.cuda.synchronize()
    sites: collections.Counter = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            one_step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        sites[f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0][:120]}"] += 1
    result = {"device": torch.cuda.get_device_name(dev), "syncs_per_step": sum(sites.values()),
              "sites": dict(sites.most_common())}
    (out / "syncs.json").write_text(json.dumps(result, indent=1) + "\n")
    say(f"syncs: {result['syncs_per_step']} host syncs in one training step")


PARTS = {"measure": measure, "profile": profile, "syncs": syncs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="cut sizes (the CPU dry run)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check.py: error: --device {args.device}: CUDA is not available", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, flush=True)
    failed = 0
    for part in args.parts:
        t = time.perf_counter()
        try:
            PARTS[part](args.device, args.out, args.quick, say)
        except Exception:
            failed += 1
            traceback.print_exc()
        say(f"part {part}: {time.perf_counter() - t:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
