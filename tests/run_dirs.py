"""Small run directories built by hand for the viz and analyze tests (no training)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

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
