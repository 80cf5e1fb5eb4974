"""Tests for models: the static tiny classifier (DNW Table 1) and the model registry."""
from __future__ import annotations

import functools

import pytest
import torch

import models.tiny
from models import MODELS, create_model
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
    m = create_model("tiny", in_channels=1, num_classes=10, image_size=8, edges=500)
    assert isinstance(m, TinyClassifier) and m.graph.k == 500
    with pytest.raises(ValueError, match="unknown model 'resnet'.*tiny"):
        create_model("resnet")


def test_micro_model():
    m = create_model("micro", in_channels=1, num_classes=10, image_size=8, edges=200)
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


# ----------------------------------------------------------------------------- initialisation

def _uniform_std(bound: float) -> float:
    return bound / 3 ** 0.5


def _check_uniform(w: torch.Tensor, bound: float, rel: float) -> None:
    """``w`` looks like U(-bound, bound): inside the bound, reaching it, std bound/sqrt(3)."""
    w = w.detach().flatten()
    assert float(w.abs().max()) <= bound * (1 + 1e-6)
    assert float(w.abs().max()) > bound * 0.95
    assert float(w.std()) == pytest.approx(_uniform_std(bound), rel=rel)


def test_authors_initial_scales_tiny_static():
    """The authors' code (PyTorch defaults): edges U(+-1/sqrt(800)) from the dense 800x800 1x1
    conv, std 0.0204; node kernels nn.Conv2d(n, n, 3, groups=n): U(+-1/3), std 0.192, every level."""
    torch.manual_seed(0)
    m = TinyClassifier(in_channels=1, image_size=28, edges=32000, seed=0)      # default init = authors
    bound = 1 / 800 ** 0.5
    _check_uniform(m.graph.weight, bound, rel=0.01)
    assert float(m.graph.weight.detach().std()) == pytest.approx(0.0204, abs=2e-4)
    for level, op in zip([32, 192, 192, 192, 192], m.node_ops):
        assert op.conv_weight.shape == (level, 1, 3, 3)
        _check_uniform(op.conv_weight, 1 / 3, rel=0.12 if level == 32 else 0.06)
    # the real set is the top-k of |w|: 32,000 edges, all above the 32,000th magnitude
    assert int(m.graph.real_mask().sum()) == 32000


def test_kaiming_initial_scales_tiny_static():
    """--init kaiming (the engine's earlier init): edges normal std sqrt(2 / mean fan-in),
    0.073; node kernels std sqrt(2 / (9 n)), 0.034 on a 192-node level."""
    torch.manual_seed(0)
    m = TinyClassifier(in_channels=1, image_size=28, edges=32000, seed=0, init="kaiming")
    fan = 325760 / (4 * 192 + 100)                       # mean candidate in-edges of a receiving node
    assert float(m.graph.weight.detach().std()) == pytest.approx((2 / fan) ** 0.5, rel=0.01)
    assert float(m.graph.weight.detach().std()) == pytest.approx(0.073, abs=1e-3)
    for level, op in zip([32, 192, 192, 192, 192], m.node_ops):
        assert float(op.conv_weight.detach().std()) == pytest.approx((2 / (9 * level)) ** 0.5, rel=0.12)


def test_authors_initial_scales_dynamic_and_micro():
    """Dynamic graphs: the authors' one dense nodes x nodes conv, U(+-1/sqrt(nodes)); micro's
    static graph: 56 sending nodes, U(+-1/sqrt(56))."""
    torch.manual_seed(0)
    d = create_model("tiny", setting="discrete", in_channels=1, image_size=8, edges=12000)
    _check_uniform(d.graph.weight, 1 / 800 ** 0.5, rel=0.01)
    _check_uniform(d.node_op.conv_weight, 1 / 3, rel=0.03)
    micro = create_model("micro", in_channels=1, image_size=8, edges=300)
    _check_uniform(micro.graph.weight, 1 / 56 ** 0.5, rel=0.05)


def test_authors_initial_scales_mobilenet_per_stage():
    """MobileNetV1-DNW: each stage's dense pointwise formulation sends from
    c_in + (blocks - 1) c_out channels, so its edges are U(+-1/sqrt of that); kernels U(+-1/3)."""
    from models.mobilenet import STAGES, channels
    torch.manual_seed(0)
    m = create_model("mobilenetv1_dnw_small", width=0.0625, node_width=0.125, num_classes=10, image_size=16)
    for stage, (c_in, c_out, _, blocks) in zip(m.stages, STAGES):
        n_in, n_out = channels(c_in, 0.125), channels(c_out, 0.125)
        w = stage.graph.weight.detach()
        bound = 1 / (n_in + (blocks - 1) * n_out) ** 0.5
        assert float(w.abs().max()) <= bound * (1 + 1e-6) and float(w.abs().max()) > 0.9 * bound
        for op in stage.ops:
            assert float(op.conv_weight.detach().abs().max()) <= 1 / 3 + 1e-7
    w = m.classifier.graph.weight.detach()
    assert float(w.abs().max()) <= 1 / channels(1024, 0.125) ** 0.5 * (1 + 1e-6)


@pytest.mark.parametrize("preset", ["er", "ws", "ba"])
def test_authors_init_keeps_structured_presets_on_top(preset):
    """ER / WS / BA under the authors' init: the same U(+-b) magnitudes as random_k, moved so
    the preset's edges are the largest (the initial real set)."""
    from wiring.presets import initial_weights
    g = _cached_graph((8, 16, 16, 16, 10))
    ref = initial_weights("random_k", g, 200, seed=1, init="authors")
    w = initial_weights(preset, g, 200, seed=1, init="authors")
    assert torch.equal(w.abs().sort().values, ref.abs().sort().values)
    assert float(w.abs().max()) <= 1 / 56 ** 0.5


def test_init_kaiming_is_the_previous_default_bit_for_bit():
    """--init kaiming draws exactly what the engine drew before the authors' init: the edge
    weights seeded normal x init_std and kaiming_normal_(fan_out) node kernels from torch's RNG."""
    import math

    from wiring.presets import init_std
    torch.manual_seed(0)
    m = TinyClassifier(in_channels=1, image_size=28, edges=2000, seed=3, init="kaiming")
    g = m.graph.graph
    expected = torch.randn(g.num_candidates, generator=torch.Generator().manual_seed(3)) * init_std(g)
    assert torch.equal(m.graph.weight.detach(), expected)
    torch.manual_seed(0)
    Stem(1, 28, 32)                                     # the stem draws first, as in the model
    for n, op in zip([32, 192, 192, 192, 192], m.node_ops):
        ref = torch.empty(n, 1, 3, 3)
        torch.nn.init.kaiming_normal_(ref, mode="fan_out", nonlinearity="relu")
        assert torch.equal(op.conv_weight.detach(), ref)
    assert math.isclose(init_std(g), (2 / (325760 / 868)) ** 0.5)
