"""Small run directories built by hand for the tests: wiring histories for the viz and
analyze tests (no training), and checkpoints of briefly trained models for the tools that
rebuild a run's model (compact, bench_inference)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from wiring.graph import Wiring, static_graph
from wiring.io import WiringHistory, write_graphml


def make_run(path: Path, *, k: int, steps: Sequence[int], seed: int = 0, history_attrs: dict | None = None,
             initial: bool = True, final: bool = True, final_acc: float | None = None,
             metrics: Sequence[dict] | None = (), config: str | None = None) -> WiringHistory:
    """A run directory over ``static_graph([2, 3, 3, 2])`` (37 candidates): a history of random
    k-edge wirings at ``steps`` (seeded), optionally ``initial.graphml`` (first frame) and
    ``wiring.graphml`` (last frame, with ``test_acc`` when ``final_acc`` is given), the given
    ``metrics`` lines (None: no metrics file) and ``config.yaml`` text."""
    path.mkdir(parents=True, exist_ok=True)
    g = static_graph([2, 3, 3, 2])
    h = WiringHistory(g.edge_index, g.level, g.role,
                      {"static": True, "candidates": g.num_candidates, **(history_attrs or {})})
    gen = torch.Generator().manual_seed(seed)
    for step in steps:
        h.append(step, torch.randperm(g.num_candidates, generator=gen)[:k], torch.randn(k, generator=gen))
    h.save(path / "history.pt")
    if initial:
        write_graphml(h.frame(0), path / "initial.graphml")
    if final:
        last = h.frame(-1)
        attrs = {**last.attrs, **({"test_acc": final_acc} if final_acc is not None else {})}
        write_graphml(Wiring(last.edge_index, last.weight, last.level, last.role, None, attrs),
                      path / "wiring.graphml")
    if metrics is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if config is not None:
        (path / "config.yaml").write_text(config)
    return h


DIGITS_INFO = {"name": "digits", "num_classes": 10, "channels": 1, "image_size": 8, "train_size": 16,
               "test_size": 16}


def checkpoint_run(path: Path, argv: Sequence[str], *,
                   prepare: Callable[[torch.nn.Module], None] | None = None) -> Path:
    """A run directory holding only ``checkpoint.pt`` as ``wiring.train`` writes it (config,
    data_info, model state): the model of ``argv`` (``wiring.train`` flags, data digits) for
    1-channel 8x8 images after 2 SGD steps on random batches (seeded), then ``prepare(model)``
    (e.g. BatchNorm calibration) before saving. Faster than training through the CLI."""
    from wiring.train.checkpoint import save_checkpoint
    from wiring.train.config import parse_config
    from wiring.train.build import build_model

    path.mkdir(parents=True, exist_ok=True)
    cfg = parse_config([*argv, "--data", "digits"])
    torch.manual_seed(0)
    model = build_model(cfg, SimpleNamespace(**DIGITS_INFO))
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    for _ in range(2):
        loss = F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if prepare is not None:
        prepare(model)
    save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict(), "data_info": DIGITS_INFO, "step": 2},
                    path / "checkpoint.pt")
    return path


def make_multi_wiring_run(path: Path, ks: dict[str, int], steps: Sequence[int] = (0, 5, 10)) -> Path:
    """A run directory of a model with several wirings, as the recorder writes one
    (``history-NAME.pt``, ``initial-NAME.graphml``, ``wiring-NAME.graphml``): one small
    :func:`make_run` wiring of ``ks[NAME]`` real edges per NAME, one metrics file."""
    for i, (name, k) in enumerate(ks.items()):
        part = path / f".part-{i}"
        make_run(part, k=k, steps=steps, seed=i, history_attrs={"mode": "dnw", "k": k}, metrics=None)
        for stem, ext in (("history", ".pt"), ("initial", ".graphml"), ("wiring", ".graphml")):
            (part / f"{stem}{ext}").rename(path / f"{stem}-{name}{ext}")
        part.rmdir()
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": steps[-1], "test_acc": 0.5}) + "\n")
    (path / "config.yaml").write_text("model: mobilenetv1_dnw\n")
    return path
