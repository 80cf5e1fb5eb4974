"""Tests for models: the static tiny classifier (DNW Table 1) and the model registry."""
from __future__ import annotations

import functools

import pytest
import torch

import models.tiny
from models import MODELS, build_model
from models.tiny import GRID, Stem, TinyClassifier, stem_strides
from wiring.graph import static_graph
from wiring.layer import WiredGraph


_cached_graph = functools.lru_cache(maxsize=4)(lambda sizes: static_graph(list(sizes)))


@pytest.fixture(autouse=True)
def shared_graph(monkeypatch):
    """Build the 325,760-candidate NeuralGraph (immutable) once for the whole module."""
    monkeypatch.setattr(models.tiny, "static_graph", lambda sizes: _cached_graph(tuple(sizes)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyClassifier(edges=12000, seed=0)


@pytest.mark.parametrize("size, expected", [(8, (0, 1, 1)), (16, (0, 2, 1)), (28, (2, 2, 2)),
                                            (32, (0, 2, 2)), (64, (0, 2, 2))])
def test_stem_strides(size, expected):
    assert stem_strides(size) == expected


@pytest.mark.parametrize("size", [8, 16, 28, 32, 64])
def test_stem_gives_8x8_maps(size):
    stem = Stem(3, size)
    assert stem(torch.randn(2, 3, size, size)).shape == (2, 32, GRID, GRID)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32])
def test_output_shape(size, channels):
    torch.manual_seed(0)
    m = TinyClassifier(in_channels=channels, num_classes=7, image_size=size, edges=2000)
    out = m(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_graph_size(model):
    g = model.graph
    assert isinstance(g, WiredGraph)
    assert g.graph.num_nodes == 900
    assert g.num_candidates == 325_760
    assert g.graph.level_sizes == [32, 192, 192, 192, 192, 100]
    assert g.graph.static
    assert g.k == 12000 and int(g.real_mask().sum()) == 12000
    assert len(model.node_ops) == 5
    assert [op.num_nodes for op in model.node_ops] == [32, 192, 192, 192, 192]
    assert model.fc.in_features == 100 and model.fc.out_features == 10


def test_edges_none_means_all_candidates():
    m = TinyClassifier(edges=None, image_size=8)
    assert m.graph.k == 325_760
    assert m.graph.density == 1.0
    assert bool(m.graph.real_mask().all())


def test_head_reads_output_nodes_window(model, monkeypatch):
    """Logits depend on the output nodes' maps at positions [2:4, 2:4] of the 8x8 grid only."""
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    graph = model.graph
    original = graph.run_static
    cache, perturb = {}, {}

    def run_static(*args, **kwargs):
        # the graph runs once; later forwards reuse its states (only the head is under test)
        if "states" not in cache:
            cache["states"] = original(*args, **kwargs)
        states = cache["states"]
        if perturb:
            out = states[-1].clone()
            node, sample, r, c = perturb["at"]
            out[node, sample * GRID * GRID + r * GRID + c] += 10.0
            states = states[:-1] + [out]
        return states

    monkeypatch.setattr(graph, "run_static", run_static)
    monkeypatch.setattr(models.tiny.fused, "supported", lambda *args: False)   # the level-by-level path
    with torch.no_grad():
        base = model(x)
        for r in range(GRID):
            for c in range(GRID):
                perturb["at"] = (17, 1, r, c)
                logits = model(x)
                assert torch.equal(logits[0], base[0])             # the other sample never changes
                inside = 2 <= r < 4 and 2 <= c < 4
                if inside:
                    assert not torch.allclose(logits[1], base[1]), (r, c)
                    # 2x2 average: +10 / 4 on feature 17 of the linear head
                    expected = base[1] + 2.5 * model.fc.weight[:, 17]
                    torch.testing.assert_close(logits[1], expected, rtol=1e-5, atol=1e-5)
                else:
                    assert torch.equal(logits[1], base[1]), (r, c)


def test_build_model():
    assert "tiny" in MODELS
    m = build_model("tiny", in_channels=1, num_classes=10, image_size=8, edges=500)
    assert isinstance(m, TinyClassifier) and m.graph.k == 500
    with pytest.raises(ValueError, match="unknown model 'resnet'.*tiny"):
        build_model("resnet")


def test_micro_model():
    m = build_model("micro", in_channels=1, num_classes=10, image_size=8, edges=200)
    assert m.graph.graph.num_nodes == 66
    assert m.graph.num_candidates == 8 * 16 + 24 * 16 + 40 * 16 + 56 * 10
    assert m(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("mode", ["dnw", "fixed"])
def test_sgd_step_updates_hallucinated_edges_under_dnw_only(mode):
    torch.manual_seed(0)
    m = TinyClassifier(in_channels=1, image_size=8, edges=3000, mode=mode, seed=1)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(8, 1, 8, 8)
    y = torch.randint(0, 10, (8,))
    real = m.graph.real_mask()
    before = m.graph.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = m.graph.weight.detach()
    changed = after != before
    assert bool(changed[real].any())                      # real edges learn in both modes
    # stem nodes (0..31) -> output nodes (800..899): both ends always carry a signal
    # (nodes without a real in-edge have state 0, so edges out of them get no gradient)
    src, dst = m.graph.edge_index
    hallucinated_out = ~real & (dst >= 800) & (src < 32)
    assert int(hallucinated_out.sum()) > 3000           # of 32 x 100 candidates
    if mode == "dnw":
        assert bool(changed[hallucinated_out].all())
        assert changed[~real].float().mean().item() > 0.25
    else:
        assert not bool(changed[~real].any())
    assert int(m.graph.real_mask().sum()) == 3000
