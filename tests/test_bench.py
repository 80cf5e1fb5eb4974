"""wiring.bench: the dense reference is the same network, and the CLI reports ratios."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from wiring.bench import main, make_models


def test_dense_reference_equals_the_engine_in_outputs_and_edge_gradients():
    engine, reference = make_models(edges=3000, image_size=8, seed=0)
    engine, reference = engine.double(), reference.double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    a, b = engine(x), reference(x)
    assert torch.allclose(a, b, atol=1e-10)
    F.cross_entropy(a, y).backward()
    F.cross_entropy(b, y).backward()
    ei = engine.graph.edge_index
    dense_grad = reference.weight.grad[ei[1], ei[0]]            # the reference's gradient at every candidate
    assert torch.allclose(engine.graph.weight.grad, dense_grad, atol=1e-10)
    assert torch.count_nonzero(dense_grad[~engine.graph.real_mask()]) > 0   # hallucinated edges too


def test_reference_top_k_is_a_full_sort_of_the_same_k_edges():
    engine, reference = make_models(edges=500, image_size=8, seed=1)
    ei = engine.graph.edge_index
    mask = reference.mask()
    assert int(mask.sum()) == 500
    assert torch.equal(mask[ei[1], ei[0]], engine.graph.real_mask())


def test_cli_json(capsys):
    assert main(["--edges", "800", "--batch-size", "4", "--image-size", "8", "--repeats", "2", "--warmup", "0",
                 "--no-memory", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["outputs_agree"] is True and r["edges"] == 800
    assert r["engine_img_s"] > 0 and r["reference_img_s"] > 0
    # the ratio comes from unrounded medians, the step times are rounded to 0.1 ms
    assert r["ratio"] == pytest.approx(r["reference_step_ms"] / r["engine_step_ms"], rel=0.05)


def test_cli_rejects_bad_budget(capsys):
    assert main(["--edges", "0"]) == 2
    assert "--edges" in capsys.readouterr().err
