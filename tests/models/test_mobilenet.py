"""MobileNetV1 (dense) and MobileNetV1-DNW: shapes, budgets per stage, stage graphs, modes, presets."""
from __future__ import annotations

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from models import MODELS, create_model
from models.mobilenet import (
    STAGES,
    MobileNetV1,
    MobileNetV1DNW,
    channels,
    dense_pointwise_edges,
    split_budget,
    stem_stride,
)
from wiring.graph import GraphError
from wiring.io import to_networkx
from wiring.train.monitor import find_wirings

pytestmark = pytest.mark.usefixtures("one_thread")



SMALL = dict(width=0.03125, node_width=0.0625, num_classes=10, image_size=8)


def dnw(name: str = "mobilenetv1_dnw", **options):
    torch.manual_seed(0)
    return create_model(name, **{**SMALL, **options})


def test_registered_with_width():
    for name in ("mobilenetv1", "mobilenetv1_dnw", "mobilenetv1_dnw_small"):
        assert name in MODELS
    assert {"tiny", "micro"} <= set(MODELS)
    assert isinstance(create_model("mobilenetv1", width=0.25, num_classes=10, image_size=32), MobileNetV1)
    small = dnw("mobilenetv1_dnw_small")
    assert isinstance(small, MobileNetV1DNW) and small.small


@pytest.mark.parametrize("size, channels_in", [(16, 3), (8, 1), (66, 3)])
def test_dense_shapes(size, channels_in):
    m = create_model("mobilenetv1", width=0.25, num_classes=7, image_size=size, in_channels=channels_in,
                    edges=12000, mode="dnw", preset="random_k", seed=0)      # wiring options ignored
    assert m(torch.randn(2, channels_in, size, size)).shape == (2, 7)
    assert m.stem[0].stride == (stem_stride(size),) * 2
    pointwise = [b.pointwise.weight.shape[:2] for b in m.blocks]
    assert len(pointwise) == 13 and pointwise[0] == (16, 8) and pointwise[-1] == (256, 256)
    assert find_wirings(m) == {}


def test_stem_stride_rule():
    assert [stem_stride(s) for s in (8, 32, 64, 65, 224)] == [1, 1, 1, 2, 2]
    assert [channels(c, 0.25) for c in (32, 64, 1024)] == [8, 16, 256]


@pytest.mark.parametrize("name", ["mobilenetv1_dnw", "mobilenetv1_dnw_small"])
@pytest.mark.parametrize("size, channels_in", [(8, 3), (12, 1)])
def test_dnw_shapes(name, size, channels_in):
    m = dnw(name, image_size=size, in_channels=channels_in)
    out = m(torch.randn(2, channels_in, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert len(find_wirings(m)) == 5 + (name.endswith("small"))


@pytest.mark.parametrize("width", [0.03125, 0.09375])
def test_k_per_stage_is_dense_pointwise_count(width):
    dense = MobileNetV1(width=width, num_classes=10, image_size=8)
    blocks = list(dense.blocks)
    per_stage, start = [], 0
    for _, _, _, count in STAGES:
        per_stage.append(sum(b.pointwise.weight.numel() for b in blocks[start:start + count]))
        start += count
    m = dnw("mobilenetv1_dnw_small", width=width, node_width=0.125)
    assert [s.graph.k for s in m.stages] == per_stage
    assert per_stage == [dense_pointwise_edges(i, o, b, width) for i, o, _, b in STAGES]
    assert m.classifier.graph.k == dense.fc.weight.numel()       # int(1024 d) * classes


def test_default_nodes_are_full_width_and_budget_from_width():
    stages = ((4, 8, 1, 1), (8, 16, 2, 2))
    m = MobileNetV1DNW(width=0.5, stages=stages, num_classes=3, image_size=8)
    assert m.node_width == 1.0
    assert [s.graph.graph.level_sizes for s in m.stages] == [[4, 8], [8, 16, 16]]
    assert [s.graph.k for s in m.stages] == [2 * 4, 4 * 8 + 8 * 8]
    assert [s.graph.num_candidates for s in m.stages] == [32, 16 * 8 + 16 * 24]


def test_stage_graphs_are_dags_with_stage_levels():
    m = dnw()
    for (c_in, c_out, _, blocks), stage in zip(STAGES, m.stages):
        g = stage.graph.graph
        n_in, n_out = channels(c_in, 0.0625), channels(c_out, 0.0625)
        assert g.static and g.level_sizes == [n_in] + [n_out] * blocks
        assert bool((g.level[g.edge_index[0]] < g.level[g.edge_index[1]]).all())
        # skips: a target of the last level has candidates from every earlier level
        last = g.level_ptr[-2]
        sources = g.edge_index[0, g.edge_index[1] == last]
        assert set(g.level[sources].tolist()) == set(range(blocks))
        G = to_networkx(stage.graph.wiring())
        assert nx.is_directed_acyclic_graph(G) and G.number_of_edges() == stage.graph.k


def test_stride_inside_a_stage_states_have_their_level_size():
    m = dnw(image_size=16)
    assert [s.out_size for s in m.stages] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert [s.in_size for s in m.stages] == [(16, 16), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert [s.ops[0].stride for s in m.stages] == [1, 2, 2, 2, 2]
    seen = []
    for stage in m.stages:
        original = stage.graph.run_static

        def spy(inputs, node_op, selection=None, _orig=original, _stage=stage):
            states = _orig(inputs, node_op, selection)
            hw = _stage.out_size[0] * _stage.out_size[1]
            seen.append(all(s.size(1) == 2 * hw for s in states))
            return states
        stage.graph.run_static = spy
    m(torch.randn(2, 3, 16, 16))
    assert seen == [True] * 5
    big = MobileNetV1DNW(width=0.03125, node_width=0.03125, num_classes=5, image_size=224)
    assert big.stem_size == (112, 112)
    assert [s.out_size for s in big.stages] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]


def _train_step(m, size=8):
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 3])
    before = {n: l.weight.detach().clone() for n, l in find_wirings(m).items()}
    m.train()
    loss = F.cross_entropy(m(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    return before


@pytest.mark.parametrize("mode", ["dnw", "fixed", "complete", "dnw_no_update", "td"])
def test_every_mode_trains_a_step(mode):
    options = {"mode_options": {"rho": 0.9}} if mode == "td" else {}
    m = dnw("mobilenetv1_dnw_small", mode=mode, edges=None if mode == "complete" else 0, **options)
    before = _train_step(m)
    for name, layer in find_wirings(m).items():
        layer.check_invariants()
        changed = layer.weight.detach() != before[name]
        real = layer.real_mask()
        if mode == "complete":
            assert bool(real.all())
        else:
            assert int(real.sum()) == layer.k
        if mode == "dnw":                               # hallucinated edges get gradients
            assert bool(changed[~layer.frozen_mask].any())
        if mode == "fixed":                             # only real edges move, real set frozen
            assert not bool(changed[~layer.frozen_mask].any())
            assert torch.equal(real, layer.frozen_mask)


@pytest.mark.parametrize("preset", ["random_k", "er", "ws", "ba", "complete", "graphml"])
def test_every_preset(preset):
    options: dict = {}
    if preset == "graphml":
        source = dnw(seed=3)
        options["preset_options"] = {"wiring": source.stages[2].graph.wiring()}
    m = dnw(preset=preset, edges=None if preset == "complete" else 0, **options)
    _train_step(m)
    if preset == "graphml":
        assert m.stages[2].graph.preset == "graphml" and m.stages[0].graph.preset == "random_k"
        saved = options["preset_options"]["wiring"]
        ei = m.stages[2].graph.edge_index[:, m.stages[2].graph.frozen_mask]
        assert torch.equal(ei, saved.edge_index)


def test_graphml_wiring_that_fits_no_graph():
    from wiring.graph import Wiring
    w = Wiring(torch.tensor([[0], [1]]), torch.tensor([1.0]), torch.tensor([0, 1]), torch.tensor([0, 2]))
    with pytest.raises(GraphError, match="nodes"):
        dnw(preset="graphml", preset_options={"wiring": w})


def test_budget_override_and_all_candidates():
    m = dnw(budget=500)
    ks = [s.graph.k for s in m.stages]
    assert sum(ks) == 500 and min(ks) >= 1
    default = [dense_pointwise_edges(i, o, b, 0.03125) for i, o, _, b in STAGES]
    assert ks == split_budget(500, default, [s.graph.num_candidates for s in m.stages])
    full = dnw(edges=None)
    assert all(bool(s.graph.real_mask().all()) for s in full.stages)
    ignored = dnw(edges=12000)
    assert [s.graph.k for s in ignored.stages] == default


@pytest.mark.parametrize("width", [0, -0.5, float("nan"), 0.01, "wide", True])
def test_bad_width(width):
    with pytest.raises(GraphError, match="width"):
        create_model("mobilenetv1_dnw", width=width, num_classes=10, image_size=16)
    with pytest.raises(GraphError, match="width"):
        create_model("mobilenetv1", width=width, num_classes=10, image_size=16)


def test_bad_options():
    with pytest.raises(GraphError, match="node_width"):
        dnw(width=0.0625, node_width=0.03125)
    with pytest.raises(GraphError, match="static"):
        create_model("mobilenetv1_dnw", setting="discrete", width=0.125)
    with pytest.raises(GraphError, match="built for 8x8"):
        dnw()(torch.randn(1, 3, 16, 16))


def test_trainer_build_passes_width(tmp_path):
    from types import SimpleNamespace

    from wiring.train.config import parse_config
    from wiring.train.build import build_model
    cfg = parse_config(["--model", "mobilenetv1", "--width", "0.25", "--data", "digits"])
    m = build_model(cfg, SimpleNamespace(channels=1, num_classes=10, image_size=8))
    assert isinstance(m, MobileNetV1) and m.width == 0.25
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_trainer_runs_a_dnw_model_and_checks_its_wirings():
    from torch.utils.data import TensorDataset

    from wiring.train.trainer import Trainer
    m = dnw("mobilenetv1_dnw_small", in_channels=1)
    data = TensorDataset(torch.randn(16, 1, 8, 8), torch.arange(16) % 10)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(m, opt, data, data, epochs=1, batch_size=8, debug=True)
    assert set(trainer.wirings) == {f"stages.{i}.graph" for i in range(5)} | {"classifier.graph"}
    history = trainer.fit()
    assert len(history) == 1 and trainer.step == 2


def test_training_steps_at_224_on_fake_data():
    torch.manual_seed(0)
    m = MobileNetV1DNW(width=0.03125, node_width=0.03125, num_classes=5, image_size=224)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(2, 3, 224, 224), torch.tensor([0, 3])
    for _ in range(2):
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        for layer in find_wirings(m).values():
            assert int(layer.real_mask().sum()) == layer.k


def test_trains_an_epoch_on_digits_at_32():
    from wiring.train.data import load_dataset
    from wiring.train.trainer import Trainer
    train_set, test_set, info = load_dataset("digits", image_size=32)
    torch.manual_seed(0)
    m = MobileNetV1DNW(width=0.0625, node_width=0.0625, in_channels=1, num_classes=10, image_size=32)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    history = Trainer(m, opt, train_set, test_set, epochs=1, batch_size=256, debug=True).fit()
    assert history[0]["swapped"] >= 0 and 0.0 <= history[0]["test_acc"] <= 1.0
    assert history[0]["loss"] < 2.5
