"""A small CNN on the offline digits data: DNW vs a fixed mask vs dense.

Three variants of the same network, trained with the same frozen schedule and seeds:

* ``dense``: no :func:`wiring.sparsify.sparsify`;
* ``dnw``: ``sparsify(model, density=D, scope="global", mode="dnw", keep_first_last_dense=True)``,
  the real weights re-chosen as the global top-k of ``|w|`` at every step (straight-through
  gradient to every weight);
* ``fixed``: the same call with ``mode="fixed"``: the real set is the initial top-k of the
  (random) initial weights and never changes; only real weights get a gradient. With
  ``scope="global"`` that initial top-k is far from uniform: PyTorch's default init draws a
  layer's weights from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so the 32->64 convolution
  (fan-in 288) takes ~30% of its weights and the 64->64 one (fan-in 576) ~0.2%;
* ``fixed-layer`` (an extra control, not one of the issue's three): ``mode="fixed"`` with
  ``scope="layer"``, a random mask of exactly the same 10% in every sparsified layer.

The first convolution (1->32, 288 weights) and the classifier (64->10, 640 weights) stay
dense in both sparse variants and are not counted in the budget; the two middle
convolutions (55,296 weights) share one global budget of ``round(D * 55296)`` real weights
(5,530 at D = 0.1). After training the script asserts that exactly that many weights are
real (:func:`wiring.sparsify.num_real` and the exported file), and prints mean +- std of the
final test accuracy per variant, the real-weight counts, the per-layer densities and the
swaps under ``dnw``.

    python experiments/sparse_cnn.py --seeds 0 1 2 --epochs 30 --density 0.1

Runs on one CPU thread (``torch.set_num_threads(1)``); about 10 s per run of 30 epochs on
an idle core. The data split is the digits' fixed stratified split (``seed=0``: 1,437 train
/ 360 test) for every run; a run's seed sets the initial weights and the batch order.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from wiring.train.data import load_dataset
from wiring.sparsify import (budget_of, densify, export_sparse, layer_density, load_sparse, num_real, real_masks,
                             sparsify)
from wiring.train.trainer import Trainer  # noqa: E402

VARIANTS = ("dense", "dnw", "fixed", "fixed-layer")


def build_model(width: int = 32) -> nn.Module:
    """conv 1->w 3x3, conv w->2w 3x3, maxpool 2, conv 2w->2w 3x3 (all padding 1, BN + ReLU,
    no conv bias), global average pool, linear 2w->10."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),                                                    # 8x8 -> 4x4
        nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * w, 10),
    )


def weight_count(model: nn.Module) -> int:
    """Weights of every conv / linear layer (biases and BN not included)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


class StepSwaps:
    """Trainer hook: counts, after every optimizer step, the weights that became real
    (the per-epoch ``swapped`` of the trainer only compares epoch ends)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.previous = {n: m.clone() for n, m in real_masks(model).items()}
        self.total = 0

    def on_step(self, trainer) -> None:
        now = real_masks(self.model)
        self.total += sum(int((now[n] & ~self.previous[n]).sum()) for n in now)
        self.previous = {n: m.clone() for n, m in now.items()}


def run(variant: str, seed: int, args, train_set, test_set) -> dict:
    torch.manual_seed(seed)
    model = build_model(args.width)
    all_weights = weight_count(model)
    row: dict = {"variant": variant, "seed": seed, "all_weights": all_weights}
    hooks = []
    if variant != "dense":
        mode, scope = ("fixed", "layer") if variant == "fixed-layer" else (variant, args.scope)
        sparsify(model, density=args.density, scope=scope, mode=mode,
                 keep_first_last_dense=not args.sparsify_first_last)
        budget = budget_of(model)
        row.update(k=budget.k, candidates=budget.total,
                   density_start={n: round(d, 4) for n, d in layer_density(model).items()})
        initial = {n: m.clone() for n, m in real_masks(model).items()}
        hooks.append(StepSwaps(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay,
                                nesterov=False)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    trainer = Trainer(model, optimizer, train_set, test_set, epochs=args.epochs, batch_size=args.batch_size,
                      scheduler=scheduler, seed=seed, hooks=hooks)
    start = time.perf_counter()
    history = trainer.fit()
    row.update(test_acc=history[-1]["test_acc"], best_acc=max(h["test_acc"] for h in history),
               train_acc=history[-1]["train_acc"], loss=history[-1]["loss"],
               seconds=round(time.perf_counter() - start, 1))
    if variant == "dense":
        row["real"] = all_weights
        return row
    # exactly the requested number of real weights, in the model and in the exported file
    real = num_real(model)
    assert real == budget.k == round(args.density * budget.total), (real, budget.k, budget.total)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        export_sparse(model, path)
        state = load_sparse(path, include_masks=False)
        payload = torch.load(path, weights_only=True)
        assert payload["k"] == budget.k, (payload["k"], budget.k)
        dense_copy = densify(copy.deepcopy(model))
        dense_copy.load_state_dict(state)
        nonzero = sum(int((m.weight != 0).sum()) for m in dense_copy.modules()
                      if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert nonzero <= real + all_weights - budget.total, nonzero
    final = real_masks(model)
    row.update(real=real, real_all=real + all_weights - budget.total, nonzero_after_densify=nonzero,
               density_end={n: round(d, 4) for n, d in layer_density(model).items()},
               swaps_step=hooks[0].total, swaps_epoch=sum(h["swapped"] for h in history),
               moved=sum(int((final[n] & ~initial[n]).sum()) for n in final))
    if mode == "fixed":
        assert row["swaps_step"] == 0 and row["moved"] == 0, row
    return row


def mean_std(values: list[float], digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):,.{digits}f} +- {std:,.{digits}f}"


def table(rows: list[dict], args) -> str:
    lines = ["| variant | test accuracy % (mean +- std) | per seed | real weights (conv/linear) | "
             "real in the sparsified layers | swaps per step, summed (dnw) | swaps epoch to epoch, summed | "
             "final real set not in the initial one |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in args.variants:
        rs = [r for r in rows if r["variant"] == variant]
        if not rs:
            continue
        accs = [100 * r["test_acc"] for r in rs]
        seeds = ", ".join(f"{a:.2f}" for a in accs)
        if variant == "dense":
            lines.append(f"| dense | {mean_std(accs)} | {seeds} | {rs[0]['real']:,} | - | - | - | - |")
            continue
        r0 = rs[0]
        real = f"{r0['real_all']:,} of {r0['all_weights']:,}"
        sparse = f"{r0['real']:,} of {r0['candidates']:,} (k = {r0['k']:,})"
        if variant == "dnw":
            step = mean_std([r["swaps_step"] for r in rs], 0)
            epoch = mean_std([r["swaps_epoch"] for r in rs], 0)
            moved = mean_std([r["moved"] for r in rs], 0)
        else:
            step = epoch = moved = "0"
        lines.append(f"| {variant} | {mean_std(accs)} | {seeds} | {real} | {sparse} | {step} | {epoch} | {moved} |")
    return "\n".join(lines)


def density_table(rows: list[dict]) -> str:
    sparse_rows = [r for r in rows if r["variant"] != "dense"]
    if not sparse_rows:
        return ""
    layers = list(sparse_rows[0]["density_start"])
    shapes = {n: m for n, m in build_model().named_modules()}
    names = {n: (f"conv{n} {shapes[n].in_channels}->{shapes[n].out_channels}" if isinstance(shapes[n], nn.Conv2d)
                 else f"linear{n} {shapes[n].in_features}->{shapes[n].out_features}") for n in layers}
    lines = ["| variant | seed | " + " | ".join(f"{names[n]}: start -> end" for n in layers) + " |",
             "|---|---|" + "---|" * len(layers)]
    for r in sparse_rows:
        cells = [f"{100 * r['density_start'][n]:.1f}% -> {100 * r['density_end'][n]:.1f}%" for n in layers]
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--density", type=float, default=0.1,
                        help="fraction of the sparsified layers' weights that are real (default 0.1)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="fixed-layer (a uniform 10%% random mask per layer) is an extra control")
    parser.add_argument("--scope", choices=("global", "layer"), default="global",
                        help="scope of dnw and fixed (fixed-layer is always per layer)")
    parser.add_argument("--sparsify-first-last", action="store_true",
                        help="also sparsify the first convolution and the classifier (default: kept dense)")
    # the frozen schedule (tuned once on dense, seed 0: see docs/sparse_cnn.md)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write every run's numbers here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_set, test_set, _ = load_dataset("digits", seed=0)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            row = run(variant, seed, args, train_set, test_set)
            rows.append(row)
            extra = "" if variant == "dense" else (f"  real {row['real']}/{row['candidates']}"
                                                   f"  swaps/step-sum {row['swaps_step']}")
            print(f"{variant:>6} seed {seed}: test {100 * row['test_acc']:.2f}%  (best {100 * row['best_acc']:.2f}%,"
                  f" train {100 * row['train_acc']:.2f}%, loss {row['loss']:.4f}){extra}  {row['seconds']}s",
                  flush=True)

    command = "python experiments/sparse_cnn.py " + " ".join(sys.argv[1:])
    first_last = "sparsified too" if args.sparsify_first_last else "kept dense (outside the budget)"
    header = (f"digits 8x8, {args.epochs} epochs, SGD momentum 0.9, lr {args.lr} cosine, weight decay "
              f"{args.weight_decay}, batch {args.batch_size}; density {args.density}, scope {args.scope}, "
              f"first conv and classifier {first_last}; seeds {' '.join(map(str, args.seeds))}")
    text = f"`{command.strip()}`\n\n{header}\n\n{table(rows, args)}\n\nPer-layer density of the sparse variants:\n\n{density_table(rows)}\n"
    print()
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
