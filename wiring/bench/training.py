"""``python -m wiring.bench``: training throughput of the engine against the authors' formulation.

Full training steps (forward, backward, SGD step) of the static tiny classifier,
run alternately in one process:

* **engine**: :class:`models.tiny.TinyClassifier` as trained by ``wiring.train``
  (node-major features, top-k over the admissible candidates, real edges as a CSR
  product, hallucinated-edge gradients as one GEMM per target level), on the native
  CPU kernels of :mod:`wiring.backends.kernels` where they load;
* **engine on PyTorch ops** (``pytorch`` in ``--json``): the same engine with the native
  kernels off (:func:`wiring.backends.kernels.disabled`), run only when they are on;
* **reference**: the same network computed as the authors did: ``[B, C, H, W]``
  feature maps, a dense weight matrix over all node pairs, masked by a straight-through
  top-k of a *full sort* of its entries (non-admissible pairs pushed to the end), and
  each level's inputs as a dense 1x1 convolution of every earlier level's states.

Both start from the same weights; the first step checks that their losses agree.
The machine may be shared, so the two alternate, each ``--repeats`` times after
warm-up, and the report gives medians, the ratio, the top-k time of each, and the
peak memory of one step of each (``VmHWM`` of a fresh subprocess). ``--json``
prints one line ``{"engine_img_s": ..., "reference_img_s": ..., "ratio": ...}``.

``--backend NAME`` runs the engine on one real-edge product backend (:mod:`wiring.backends`);
``--backend all`` instead races the engine on every installed backend (same weights, same
batch, alternating) at ``--backend-nodes`` x ``--densities`` (default 900 and 4,000 nodes at
1%, 5%, 20%), and writes its Markdown table into ``--table FILE.md`` when given.
``--device cuda`` runs everything on the GPU (peak memory then is
``torch.cuda.max_memory_allocated`` over one step, in process).

``--model mobilenetv1_dnw [--width W]`` races MobileNetV1-DNW against its dense masked formulation
instead (:mod:`wiring.bench.mobilenet`).

``--mode M [M ...]`` instead races the engine in each wiring mode (``dnw fixed rigl set``...) with
the same weights, full training steps as ``wiring.train`` takes them, and reports ms per step and
the ratios to dnw and fixed (:mod:`wiring.bench.modes`; ``--update-every``: the rewiring modes' Delta T).

``--nodes N`` scales the network (:func:`wiring.bench.contest.levels_for`); ``--table FILE.md`` runs a grid of
node and edge counts and writes its Markdown table into ``FILE.md`` between two marker
comments (the rest of the file is kept). ``--inference ...`` hands over to
:mod:`wiring.bench.inference` (eval-mode forwards of the reference, the engine and the
compact model).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from models.mobilenet import check_width
from models.tiny import TinyClassifier
from wiring import backends
from wiring.backends import kernels
from wiring.bench import inference as bench_inference
from wiring.bench.backends import (
    BACKENDS_BEGIN,
    BACKENDS_END,
    backend_grid,
    backend_markdown,
)
from wiring.bench.cli import TABLE_EDGES, TABLE_NODES, TRAINING_PROG, training_parser
from wiring.bench.contest import (
    PAPER_NODES,
    batch,
    candidates_for,
    make_models,
    race,
    step_fn,
    synchronize,
    without_native,
)
from wiring.bench.memory import cuda_peak_mib, peak_memory_mib
from wiring.bench.mobilenet import race_mobilenet
from wiring.bench.modes import mode_rows, modes_table
from wiring.bench.reference import DenseReference
from wiring.cli import run_cli
from wiring.errors import UserError
from wiring.files import atomic_path
from wiring.ops import topk_mask
from wiring.train.allocator import tune_malloc


def topk_time(engine: TinyClassifier, reference: DenseReference, repeats: int = 5) -> tuple[float, float]:
    device = engine.graph.weight.device

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            synchronize(device)
            t = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3
    hint: dict = {}                                     # as the engine's mode keeps it between steps
    return (timed(lambda: topk_mask(engine.graph.weight, engine.graph.k, hint)), timed(reference.mask))


def run(args: argparse.Namespace, peaks_of: Sequence[str] | None = None) -> dict:
    """One row of the benchmark; with ``args.memory``, the peak memory of ``peaks_of``
    (default: every contestant that ran)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    engine, reference = make_models(args.edges, args.image_size, args.seed, args.nodes)
    engine, reference = engine.to(device), reference.to(device)
    x, y = batch(args, device)
    with torch.no_grad():
        engine.eval(), reference.eval()
        agree = torch.allclose(engine(x), reference(x), atol=1e-3, rtol=1e-3)
        engine.train(), reference.train()
    steps = {"engine": step_fn(engine, x, y), "reference": step_fn(reference, x, y)}
    if kernels.library() is not None and device.type == "cpu":     # the engine on PyTorch ops alone, for comparison
        torch_engine = copy.deepcopy(engine)
        steps["pytorch"] = without_native(step_fn(torch_engine, x, y))
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    med = race(steps, args.repeats, progress=not args.json)
    topk_engine, topk_reference = topk_time(engine, reference)
    result = {
        "engine_img_s": round(args.batch_size / med["engine"], 1),
        "reference_img_s": round(args.batch_size / med["reference"], 1),
        "ratio": round(med["reference"] / med["engine"], 3),
        "engine_step_ms": round(med["engine"] * 1e3, 1), "reference_step_ms": round(med["reference"] * 1e3, 1),
        **({"pytorch_img_s": round(args.batch_size / med["pytorch"], 1),
            "pytorch_step_ms": round(med["pytorch"] * 1e3, 1),
            "pytorch_ratio": round(med["reference"] / med["pytorch"], 3)} if "pytorch" in med else {}),
        "engine_topk_ms": round(topk_engine, 2), "reference_topk_ms": round(topk_reference, 2),
        "nodes": args.nodes, "edges": args.edges, "candidates": engine.graph.num_candidates,
        "density": round(args.edges / engine.graph.num_candidates, 5),
        "batch_size": args.batch_size, "image_size": args.image_size, "threads": args.threads,
        "repeats": args.repeats, "outputs_agree": bool(agree), "native": kernels.library() is not None,
        "device": str(device), "backend": backends.resolved(device.type),
    }
    if args.memory:
        for name in steps if peaks_of is None else peaks_of:
            result[f"{name}_peak_mib"] = (cuda_peak_mib(steps[name], device) if device.type == "cuda"
                                          else peak_memory_mib(name, args))
    return result


TABLE_BEGIN = "<!-- scaling table: generated by python -m wiring.bench --table; edits inside are overwritten -->"
TABLE_END = "<!-- end of scaling table -->"


def scaling_table(args: argparse.Namespace, say=lambda line: print(line, file=sys.stderr, flush=True)) -> list[dict]:
    """:func:`run` for every (nodes, edges) of ``args.table_nodes`` x ``args.table_edges``
    that fits (edges <= candidates), in that order."""
    rows = []
    cells = [(n, e) for n in args.table_nodes for e in args.table_edges if e <= candidates_for(n)]
    for i, (nodes, edges) in enumerate(cells, 1):
        say(f"[{i}/{len(cells)}] {nodes} nodes, {edges} edges ...")
        r = run(argparse.Namespace(**{**vars(args), "nodes": nodes, "edges": edges, "json": True}),
                peaks_of=("engine", "reference"))                  # the peaks the table shows
        say(f"    engine {r['engine_step_ms']} ms, reference {r['reference_step_ms']} ms per step: {r['ratio']:.2f}x"
            + (f" (engine on PyTorch ops {r['pytorch_step_ms']} ms)" if "pytorch_step_ms" in r else ""))
        rows.append(r)
    return rows


def table_markdown(rows: list[dict], args: argparse.Namespace) -> str:
    """The scaling table as a Markdown block between :data:`TABLE_BEGIN` and :data:`TABLE_END`."""
    memory = any(r.get("engine_peak_mib") is not None for r in rows)
    pytorch = all("pytorch_step_ms" in r for r in rows)       # the native kernels were on
    command = ("python -m wiring.bench --table FILE.md"
               + (f" --batch-size {args.batch_size}" if args.batch_size != 128 else "")
               + (f" --image-size {args.image_size}" if args.image_size != 32 else "")
               + (f" --warmup {args.warmup}" if args.warmup != 2 else "")
               + (f" --repeats {args.repeats}" if args.repeats != 10 else "")
               + ("" if args.memory else " --no-memory"))
    lines = [TABLE_BEGIN, "",
             f"Static tiny classifier scaled to N nodes (32 inputs, 4 equal op levels, 100 outputs), "
             f"full training steps (forward, backward, SGD) at batch {args.batch_size} of "
             f"{args.image_size}x{args.image_size}, {args.threads} threads, medians of {args.repeats} alternating "
             f"steps after {args.warmup} warm-up; torch {torch.__version__}. Produced by `{command}`.", "",
             "| nodes | candidates | edges (k) | density | engine ms/step | "
             + ("engine on PyTorch ops ms/step | " if pytorch else "") + "reference ms/step | speed-up | "
             + ("speed-up on PyTorch ops | " if pytorch else "")
             + "top-k ms engine / reference |" + (" peak MiB engine / reference |" if memory else ""),
             "|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if pytorch else "")
             + ("---:|" if memory else "")]
    for r in rows:
        line = (f"| {r['nodes']:,} | {r['candidates']:,} | {r['edges']:,} | {r['density']:.3%} | "
                f"{r['engine_step_ms']:,.1f} | " + (f"{r['pytorch_step_ms']:,.1f} | " if pytorch else "")
                + f"{r['reference_step_ms']:,.1f} | {r['ratio']:.2f}x | "
                + (f"{r['pytorch_ratio']:.2f}x | " if pytorch else "")
                + f"{r['engine_topk_ms']:.1f} / {r['reference_topk_ms']:.1f} |")
        if memory:
            e, f = r.get("engine_peak_mib"), r.get("reference_peak_mib")
            line += f" {'?' if e is None else f'{e:,.0f}'} / {'?' if f is None else f'{f:,.0f}'} |"
        lines.append(line)
    lines += ["", TABLE_END]
    return "\n".join(lines)


def write_table(path: Path, block: str, begin: str = TABLE_BEGIN, end: str = TABLE_END) -> None:
    """Put ``block`` into ``path``: between the markers of an existing file, else a new file."""
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Performance\n\n" + block + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


PROG = TRAINING_PROG


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m wiring.bench: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--inference"]:                    # the inference benchmark has its own flags
        return bench_inference.main(argv[1:])
    parser = training_parser()
    args = parser.parse_args(argv)
    args.threads = args.threads or torch.get_num_threads()
    tune_malloc()
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise UserError(f"--device: expected cpu or cuda[:N], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    device_type = torch.device(args.device).type
    if args.model == "mobilenetv1_dnw":
        return mobilenet_main(args)
    try:
        names = [n for n in backends.installed() if (d := backends.module(n).DEVICES) is None or device_type in d]
        if args.backend != "all":
            backends.select(args.backend, device_type)
    except backends.BackendError as err:
        raise UserError(str(err)) from None
    if args.backend == "all":
        if min(args.backend_nodes) < 136 or not all(0 < d <= 1 for d in args.densities):
            raise UserError("--backend-nodes must be at least 136 and --densities in (0, 1]")
        if args.table is not None and not args.table.parent.is_dir():
            raise UserError(f"--table: no such folder: {args.table.parent}")
        rows = backend_grid(args, names)
        block = backend_markdown(rows, names, args)
        if args.json:
            print(json.dumps(rows))
        elif args.table is None:
            print(block)
        if args.table is not None:
            write_table(args.table, block, BACKENDS_BEGIN, BACKENDS_END)
            print(f"backend table ({len(rows)} rows) written to {args.table}")
        return 0
    sizes = [args.edges, args.batch_size, args.repeats, args.threads, *args.table_edges]
    if min(sizes) <= 0:
        raise UserError("--edges, --batch-size, --repeats, --threads and --table-edges must be positive")
    if min([args.nodes, *args.table_nodes]) < 136:
        raise UserError("--nodes and --table-nodes must be at least 136 (32 inputs, 4 op levels, 100 outputs)")
    if args.mode is not None:
        if args.update_every < 1:
            raise UserError("--update-every must be at least 1")
        if args.edges > candidates_for(args.nodes):
            raise UserError(f"--edges is more than the {candidates_for(args.nodes)} candidate edges")
        r = mode_rows(args)
        print(json.dumps(r) if args.json else modes_table(r))
        return 0
    if args.table is not None:
        if not args.table.parent.is_dir():
            raise UserError(f"--table: no such folder: {args.table.parent}")
        rows = scaling_table(args)
        if not rows:
            raise UserError("no (nodes, edges) pair of the grid fits: every --table-edges exceeds the candidates")
        write_table(args.table, table_markdown(rows, args))
        print(f"scaling table ({len(rows)} rows) written to {args.table}")
        return 0
    candidates = candidates_for(args.nodes)
    if args.edges > candidates:
        raise UserError(f"--edges is more than the {candidates} candidate edges of the tiny classifier"
                        + (f" at {args.nodes} nodes" if args.nodes != PAPER_NODES else ""))
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"static tiny classifier ({r['nodes']} nodes): k = {r['edges']} real edges of {r['candidates']} "
          f"(density {r['density']:.2%}), "
          f"batch {r['batch_size']} of {r['image_size']}x{r['image_size']}, {r['threads']} threads, "
          f"medians of {r['repeats']} alternating full training steps")
    print(f"  {'':<22} {'images/s':>9} {'step ms':>8} {'top-k ms':>9} {'peak MiB':>9}")
    labels = {"engine": "engine", "pytorch": "engine, PyTorch ops", "reference": "reference"}
    for name, label in labels.items():
        if f"{name}_img_s" not in r:
            continue
        peak = r.get(f"{name}_peak_mib")
        topk = r.get(f"{name}_topk_ms", r["engine_topk_ms"])
        print(f"  {label:<22} {r[f'{name}_img_s']:>9.1f} {r[f'{name}_step_ms']:>8.1f} {topk:>9.2f} "
              f"{'' if peak is None else f'{peak:>9.1f}'}")
    print(f"  ratio (engine speed-up): {r['ratio']:.2f}x"
          + (f"   (PyTorch ops only: {r['pytorch_ratio']:.2f}x)" if "pytorch_ratio" in r else "")
          + f"   outputs agree: {r['outputs_agree']}")
    print(f"  engine: {kernels.status()}, {backends.status(args.device)}")
    return 0


def mobilenet_main(args: argparse.Namespace) -> int:
    """``--model mobilenetv1_dnw``: the engine's MobileNetV1-DNW against its dense masked formulation."""
    if min(args.batch_size, args.repeats, args.threads) <= 0:
        raise UserError("--batch-size, --repeats and --threads must be positive")
    if args.mode is not None or args.backend == "all" or args.table is not None:
        raise UserError("--mode, --backend all and --table time the tiny classifier; leave them out with "
                        "--model mobilenetv1_dnw")
    if check_width(args.width, what="--width") > 1:                 # a GraphError (a UserError) below 1/32
        raise UserError(f"--width: the benchmark takes widths up to 1, got {args.width}")
    if args.image_size < 8:
        raise UserError(f"--image-size must be at least 8, got {args.image_size}")
    r = race_mobilenet(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"MobileNetV1-DNW x{r['width']}: k = {r['edges']:,} real edges of {r['candidates']:,} over its 5 stages "
          f"(density {r['density']:.2%}), batch {r['batch_size']} of {r['image_size']}x{r['image_size']}, "
          f"{r['threads']} threads, medians of {r['repeats']} alternating full training steps")
    print(f"  {'':<22} {'images/s':>9} {'step ms':>9}")
    for name in ("engine", "reference"):
        print(f"  {name:<22} {r[f'{name}_img_s']:>9.1f} {r[f'{name}_step_ms']:>9.1f}")
    print(f"  ratio (engine speed-up): {r['ratio']:.2f}x   outputs agree: {r['outputs_agree']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
