"""``python -m wiring.bench_inference``: inference speed of the static tiny classifier, three ways.

:func:`inference_table` builds, for each density d, a :class:`models.tiny.TinyClassifier`
with ``k = round(d * candidates)`` real edges (its initial ``random_k`` wiring, seeded)
and times eval-mode forwards under ``torch.no_grad`` of

* **reference**: :class:`wiring.bench.reference.DenseReference` of that model, the authors'
  formulation (``[B, C, H, W]`` maps, a dense masked 1x1 convolution over every
  candidate of a level, the real set found by a full sort each forward);
* **engine**: the model itself in eval mode (top-k over the candidates, real edges as a
  CSR or dense product per level, every node computed);
* **compact**: :func:`wiring.compact.extract.compact_model` of it (dead nodes removed, constant
  nodes folded, kept real edges only, see :class:`wiring.compact.CompactTiny`).

The three share one input batch and run alternately in one process (the order reversed
on every other repeat) after one warm-up call each; times are medians over ``repeats``.
Each row is a dict: ``density``, ``edges`` (k), ``candidates``, ``nodes``, ``kept_nodes``,
``dead_nodes``, ``constant_nodes``, ``kept_edges`` (real edges between kept nodes), the
images per second ``reference_img_s``, ``engine_img_s``, ``compact_img_s``, the speed
ratios ``engine_vs_reference`` and ``compact_vs_reference`` (images/s over the
reference's: > 1 is faster) and ``compact_vs_engine``, ``max_diff_engine`` /
``max_diff_compact`` (largest |logit difference| from the reference), ``outputs_agree``
(both within 1e-4 of the largest logit), and the settings (``batch_size``,
``image_size``, ``threads``, ``repeats``, ``source``: ``"random_k"`` or a run
directory). A freshly initialised wiring has few dead nodes; ``runs=`` (``--run``)
adds rows for trained ``wiring.train`` run directories of the static tiny classifier,
whose wirings do have them.

CLI: ``python -m wiring.bench_inference [--densities 0.01 0.05 0.2] [--batch-size 64]
[--image-size 32] [--repeats 10] [--threads N] [--model tiny|micro] [--run RUN_DIR ...]
[--json]`` prints a table, or with ``--json`` one JSON line per row; as an entry point it
first calls :func:`wiring.train.allocator.tune_malloc`. User mistakes exit 2 with one line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import torch
from torch import Tensor

from models.tiny import TinyClassifier
from wiring.bench.cli import DENSITIES, INFERENCE_PROG, inference_parser
from wiring.bench.reference import DenseReference
from wiring.cli import run_cli
from wiring.compact.command import load_run_model, time_alternating
from wiring.compact.extract import compact_model
from wiring.errors import UserError
from wiring.train.allocator import tune_malloc
from wiring.train.build import build_model
from wiring.train.config import Config

NAMES = ("reference", "engine", "compact")


@torch.no_grad()
def compare(engine: TinyClassifier, x: Tensor, repeats: int) -> dict[str, Any]:
    """One row of the table (without the settings) for ``engine`` on batch ``x``."""
    engine.eval()
    reference = DenseReference(engine).eval()
    compact = compact_model(engine)
    models = {"reference": reference, "engine": engine, "compact": compact}
    logits = {name: m(x) for name, m in models.items()}
    scale = max(1.0, float(logits["reference"].abs().max()))
    diff = {name: float((logits[name] - logits["reference"]).abs().max()) for name in ("engine", "compact")}
    med = time_alternating(models, x, repeats)
    speed = {name: x.size(0) / max(med[name], 1e-12) for name in NAMES}
    n = compact.counts
    layer = engine.graph
    return {
        "density": round(layer.k / layer.num_candidates, 5), "edges": layer.k, "candidates": layer.num_candidates,
        "nodes": n["nodes"], "kept_nodes": n["kept"], "dead_nodes": n["dead"], "constant_nodes": n["constant"],
        "kept_edges": n["kept_edges"],
        **{f"{name}_img_s": round(speed[name], 1) for name in NAMES},
        "engine_vs_reference": round(speed["engine"] / speed["reference"], 3),
        "compact_vs_reference": round(speed["compact"] / speed["reference"], 3),
        "compact_vs_engine": round(speed["compact"] / speed["engine"], 3),
        "max_diff_engine": diff["engine"], "max_diff_compact": diff["compact"],
        "outputs_agree": max(diff.values()) <= 1e-4 * scale,
    }


def inference_table(densities: Sequence[float] = DENSITIES, batch: int = 64, image_size: int = 32,
                    repeats: int = 10, *, threads: int | None = None, model: str = "tiny", seed: int = 0,
                    runs: Sequence[str | Path] = ()) -> list[dict[str, Any]]:
    """Rows comparing reference, engine and compact inference (see the module doc): one per
    density (a ``model`` ``tiny`` or ``micro`` of 3-channel ``image_size`` inputs, 10 classes,
    seeded ``random_k`` wiring) and one per trained run directory in ``runs`` (its own input
    shape). ``threads`` sets torch's thread count for the call (restored afterwards)."""
    if model not in ("tiny", "micro"):
        raise ValueError(f"model must be tiny or micro, got {model!r}")
    if batch < 1 or repeats < 1 or image_size < 8 or (threads is not None and threads < 1):
        raise ValueError("batch, repeats and threads must be at least 1, image_size at least 8")
    if any(not 0 < d <= 1 for d in densities):
        raise ValueError(f"densities must lie in (0, 1], got {list(densities)}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    settings = {"batch_size": batch, "threads": torch.get_num_threads(), "repeats": repeats}
    rows = []
    try:
        data = SimpleNamespace(channels=3, num_classes=10, image_size=image_size)
        candidates = build_model(Config(model=model, edges=1), data).graph.num_candidates
        for i, density in enumerate(densities):
            edges = max(1, round(density * candidates))
            torch.manual_seed(seed + i)
            engine = build_model(Config(model=model, edges=edges, seed=seed + i), data)
            x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed + i))
            rows.append({**compare(engine, x, repeats), **settings, "image_size": image_size,
                         "source": "random_k"})
        for run in runs:
            engine = load_run_model(Path(run))
            if not isinstance(engine, TinyClassifier):
                raise ValueError(f"{run}: not a static tiny classifier run ({type(engine).__name__})")
            channels, size = engine.stem.layers[0].in_channels, int(engine.image_size)
            x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))
            rows.append({**compare(engine, x, repeats), **settings, "image_size": size, "source": str(run)})
    finally:
        torch.set_num_threads(previous)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a text table."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    lines = [f"static tiny classifier inference: batch {r0['batch_size']}, {r0['threads']} thread(s), eval mode "
             f"under torch.no_grad, medians of {r0['repeats']} alternating forwards",
             f"  {'density':>8} {'edges':>6} {'kept nodes':>11} {'kept edges':>11} {'reference':>10} "
             f"{'engine':>9} {'compact':>9} {'engine/ref':>11} {'compact/ref':>12} {'agree':>6}  source",
             f"  {'':>8} {'':>6} {'':>11} {'':>11} {'img/s':>10} {'img/s':>9} {'img/s':>9} {'speed':>11} "
             f"{'speed':>12}"]
    for r in rows:
        lines.append(f"  {r['density']:>8.2%} {r['edges']:>6} {r['kept_nodes']:>5}/{r['nodes']:<5} "
                     f"{r['kept_edges']:>5}/{r['edges']:<5} {r['reference_img_s']:>10.1f} {r['engine_img_s']:>9.1f} "
                     f"{r['compact_img_s']:>9.1f} {r['engine_vs_reference']:>10.2f}x {r['compact_vs_reference']:>11.2f}x "
                     f"{str(r['outputs_agree']):>6}  {r['source']}")
    return "\n".join(lines)


PROG = INFERENCE_PROG


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m wiring.bench_inference: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = inference_parser()
    args = parser.parse_args(argv)
    args.threads = args.threads or torch.get_num_threads()
    tune_malloc()                                   # an entry point: freed blocks stay warm (see wiring.train.allocator)
    try:
        rows = inference_table(args.densities, args.batch_size, args.image_size, args.repeats,
                               threads=args.threads, model=args.model, seed=args.seed, runs=args.run)
    except ValueError as err:       # CheckpointError, ConfigError, GraphError, and the models' own refusals
        if isinstance(err, UserError):
            raise
        raise UserError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
