"""Tests for wiring.sparsify: DNW over the weights of any conv / linear model."""
from __future__ import annotations

import copy
import doctest

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models.resnet
import wiring.sparsify
from models.resnet import resnet_tiny
from wiring.io import read_graphml, to_networkx, write_graphml
from wiring.sparsify import (
    DNWConv2d,
    DNWLinear,
    budget_of,
    channel_graph,
    check_sparse,
    dead_channels,
    densify,
    export_sparse,
    layer_density,
    load_sparse,
    num_real,
    real_masks,
    sparse_layers,
    sparsify,
)
from wiring.topology import dead_nodes

pytestmark = pytest.mark.usefixtures("one_thread")


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


def small(seed: int = 0, **kw) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(**kw)


def total_weights(model) -> int:
    return sum(m.weight.numel() for m in sparse_layers(model).values())


def batch(n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("mode", ["dnw", "dnw_no_update", "fixed"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_exactly_k_real_weights_after_every_step(scope, mode):
    model = sparsify(small(), edges=300, scope=scope, mode=mode)
    budget = budget_of(model)
    assert budget.k == 300 and budget.total == total_weights(model) == 216 + 1152 + 256 + 160
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x, y = batch()
    first = {n: m.clone() for n, m in real_masks(model).items()}
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        assert num_real(model) == 300
        check_sparse(model)
        if scope == "layer":
            assert [int(m.sum()) for m in budget.masks()] == budget.layer_k
    if scope == "layer":   # every layer keeps ~ the same fraction
        assert budget.layer_k == [36, 194, 43, 27]
    if mode == "fixed":
        assert all(torch.equal(first[n], m) for n, m in real_masks(model).items())


def test_layer_scope_shares_are_proportional():
    model = sparsify(small(), density=0.25, scope="layer")
    sizes = budget_of(model).sizes
    for k, n in zip(budget_of(model).layer_k, sizes):
        assert abs(k - 0.25 * n) < 1


def test_global_scope_is_one_topk_over_all_layers():
    model = sparsify(small(), edges=300, scope="global")
    mags = torch.cat([m.weight.detach().abs().flatten() for m in sparse_layers(model).values()])
    threshold = mags.sort(descending=True).values[299]
    for m in sparse_layers(model).values():
        assert torch.equal(m.real_mask(), m.weight.detach().abs() >= threshold)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_budget_computes_topk_once_per_weight_update(scope):
    model = sparsify(small(), density=0.2, scope=scope)
    budget = budget_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    start = budget.recomputes
    for step in range(1, 4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()      # 4 layers, one top-k pass
        model(x)                                     # weights unchanged: cached
        assert budget.recomputes == start + step
        opt.step()
    with torch.no_grad():
        model.fc.weight.mul_(2.0)                    # any in-place change invalidates
    model(x)
    assert budget.recomputes == start + 4


def _reference_grads(model, x, y):
    """Gradient of the loss w.r.t. the masked (effective) weights, by plain autograd."""
    ref = copy.deepcopy(model)
    masks = real_masks(ref)
    densify(ref)
    ref.zero_grad()
    F.cross_entropy(ref(x), y).backward()
    return {n: ref.get_submodule(n).weight.grad for n in masks}, masks


@pytest.mark.parametrize("mode", ["dnw", "dnw_no_update", "fixed"])
def test_gradients_by_mode(mode):
    model = sparsify(small(), density=0.2, mode=mode)
    model.eval()          # same batch-norm statistics in both models
    x, y = batch()
    ref, masks = _reference_grads(model, x, y)
    F.cross_entropy(model(x), y).backward()
    for name, layer in sparse_layers(model).items():
        g, mask = layer.weight.grad, masks[name]
        if mode == "dnw":     # straight-through: the full dense gradient, pruned entries included
            torch.testing.assert_close(g, ref[name])
            assert (g[~mask] != 0).any()
        else:                 # real entries only
            torch.testing.assert_close(g[mask], ref[name][mask])
            assert (g[~mask] == 0).all()


@pytest.mark.parametrize("mode, swaps", [("dnw", True), ("dnw_no_update", False), ("fixed", False)])
def test_pruned_weight_swaps_in_only_with_dnw(mode, swaps):
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.5, 0.1, 0.05]]))
    sparsify(model, edges=2, mode=mode)
    assert model[0].real_mask().flatten().tolist() == [True, True, False, False]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    for _ in range(3):
        opt.zero_grad()
        ((model(x) - 5.0) ** 2).sum().backward()     # only the pruned input 3 matters
        opt.step()
    mask = model[0].real_mask().flatten().tolist()
    assert mask[3] is swaps
    assert sum(mask) == 2


@pytest.mark.parametrize("mode", ["dnw", "dnw_no_update", "fixed"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_densify_gives_identical_outputs(mode, scope):
    model = sparsify(small(), density=0.15, mode=mode, scope=scope).eval()
    x, _ = batch()
    expected = model(x)
    masks = real_masks(model)
    dense = densify(copy.deepcopy(model))
    assert not sparse_layers(dense)
    assert type(dense.conv1) is nn.Conv2d and type(dense.fc) is nn.Linear
    assert "conv1.frozen_mask" not in dense.state_dict()
    assert torch.equal(dense(x), expected)
    for name, mask in masks.items():
        w = dense.get_submodule(name).weight
        assert torch.equal(w != 0, mask)


def make_big(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(16, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))


@pytest.mark.parametrize("mode", ["dnw", "fixed"])
def test_sparse_export_reloads_and_is_smaller(tmp_path, mode):
    model = sparsify(make_big(0), density=0.1, mode=mode)
    x = torch.randn(2, 16, 9, 9)
    expected = model(x)
    size = export_sparse(model, tmp_path / "sparse.pt")
    torch.save(densify(copy.deepcopy(model)).state_dict(), tmp_path / "dense.pt")
    dense_size = (tmp_path / "dense.pt").stat().st_size
    assert size == (tmp_path / "sparse.pt").stat().st_size
    assert size < 0.3 * dense_size
    raw = torch.load(tmp_path / "sparse.pt", weights_only=True)
    entry = raw["sparse"]["0"]
    assert entry["index"].dtype == torch.int32 and raw["k"] == num_real(model)
    assert "0.weight" not in raw["dense"] and "0.bias" in raw["dense"]

    state = load_sparse(tmp_path / "sparse.pt")
    assert list(state) == list(model.state_dict())
    fresh = sparsify(make_big(1), density=0.1, mode=mode)    # other weights, same architecture
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), expected)
    plain = make_big(2)
    plain.load_state_dict(load_sparse(tmp_path / "sparse.pt", include_masks=False))
    assert torch.equal(plain(x), expected)


def test_load_sparse_rejects_other_files(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a sparse export"):
        load_sparse(tmp_path / "x.pt")


def test_skip_keeps_layers_dense():
    model = sparsify(small(), density=0.1, skip=["conv2", lambda name, m: name == "fc"])
    assert set(sparse_layers(model)) == {"conv1", "conv3"}
    assert type(model.conv2) is nn.Conv2d and type(model.fc) is nn.Linear
    assert budget_of(model).total == 216 + 256
    assert num_real(model) == round(0.1 * (216 + 256))
    density = layer_density(model)
    assert density["conv2"] == 1.0 and density["fc"] == 1.0
    assert density["conv1"] < 0.5

    net = sparsify(resnet_tiny(), density=0.2, skip=["*.downsample.*", "layer4"])
    names = set(sparse_layers(net))
    assert not any("downsample" in n or n.startswith("layer4") for n in names)
    assert "layer3.0.conv2" in names
    with pytest.raises(ValueError, match="no module is called 'conv9'"):
        sparsify(small(), density=0.1, skip=["conv9"])


def test_keep_first_last_dense():
    model = sparsify(small(), edges=100, keep_first_last_dense=True)
    assert list(sparse_layers(model)) == ["conv2", "conv3"]
    assert isinstance(model.conv2, DNWConv2d) and type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    assert num_real(model) == 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of"):
        sparsify(small(), density=0.1, edges=10)
    with pytest.raises(ValueError, match="exactly one of"):
        sparsify(small())
    with pytest.raises(ValueError, match="between 1 and the 1784"):
        sparsify(small(), edges=5000)
    with pytest.raises(ValueError, match="density"):
        sparsify(small(), density=1.5)
    with pytest.raises(ValueError, match="unknown sparse mode"):
        sparsify(small(), density=0.1, mode="td")
    with pytest.raises(ValueError, match="unknown scope"):
        sparsify(small(), density=0.1, scope="net")
    model = sparsify(small(), density=0.1)
    with pytest.raises(ValueError, match="already sparsified"):
        sparsify(model, density=0.1)


def test_conversion_keeps_parameters_and_state_keys():
    model = small()
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    sparsify(model, density=0.3)
    assert [id(p) for p in model.parameters()] == params
    assert list(model.state_dict()) == keys
    assert isinstance(model.fc, DNWLinear) and isinstance(model.fc, nn.Linear)
    clone = copy.deepcopy(model)        # the copy gets its own budget over its own layers
    assert budget_of(clone) is not budget_of(model)
    assert budget_of(clone).layers[0] is clone.conv1


def test_dead_channels_and_density():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[5.0, -5.0, 5.0], [0.1, 0.1, -0.1]]))
    sparsify(model, edges=3)
    assert dead_channels(model) == {"0": [1]}
    assert layer_density(model) == {"0": 0.5}
    densify(model)
    assert dead_channels(model) == {"0": [1]}


def test_channel_graph_of_a_chain(tmp_path):
    model = sparsify(small(), density=0.2)
    w = channel_graph(model, torch.zeros(1, 3, 8, 8))
    # nodes: 3 inputs, then each layer's output channels, chained
    assert w.num_nodes == 3 + 8 + 16 + 16 + 10
    assert w.level.tolist() == [0] * 3 + [1] * 8 + [2] * 16 + [3] * 16 + [4] * 10
    assert w.role.tolist() == [0] * 3 + [1] * 40 + [2] * 10
    conv2 = model.conv2
    mask, weight = conv2.real_mask(), conv2.weight.detach()
    pairs = sorted(map(tuple, mask.flatten(2).any(2).nonzero().tolist()))     # (out, in) with a real weight
    got = sorted((v - 11, u - 3) for u, v in w.edge_index.t().tolist() if 3 <= u < 11 and 11 <= v < 27)
    assert got == pairs
    o, i = pairs[0]
    e = ((w.edge_index[0] == 3 + i) & (w.edge_index[1] == 11 + o)).nonzero().item()
    assert w.weight[e].item() == pytest.approx(float((weight[o, i] * mask[o, i]).abs().sum()))
    assert w.attrs["k"] == num_real(model) and w.num_edges == sum(
        int(m.real_mask().flatten(2).any(2).sum()) if m.weight.dim() == 4 else int(m.real_mask().sum())
        for m in sparse_layers(model).values())
    write_graphml(w, tmp_path / "g.graphml")
    back = read_graphml(tmp_path / "g.graphml")
    assert back.num_nodes == w.num_nodes and back.num_edges == w.num_edges


def test_channel_graph_of_a_resnet_follows_the_residual_sums():
    net = sparsify(resnet_tiny(), density=0.3, keep_first_last_dense=True).eval()
    w = channel_graph(net)
    outs = [16, 32, 32, 32]                       # block outputs; one sum group each
    # stem 4; per block conv1 (planes), conv2 (planes), conv3 (4 planes), downsample (4 planes); fc 10
    layer_out = 4 + sum(p + p + 4 * p + 4 * p for p in (4, 8, 8, 8)) + 10
    assert w.num_nodes == 3 + layer_out + sum(outs)
    assert w.attrs["identity_edges"] == 2 * sum(outs)          # conv3 and downsample into each sum
    assert w.attrs["layers"] == 1 + 4 * 4 + 1
    G = to_networkx(w)
    assert sum(1 for _, r in G.nodes(data="role") if r == "output") == 10
    assert sum(1 for _, r in G.nodes(data="role") if r == "input") == 3
    assert nx.is_directed_acyclic_graph(G)
    assert not dead_nodes(G) or dead_nodes(G) <= set(G.nodes)
    assert w.level.max().item() == 1 + 4 * 4 + 1     # stem, (conv1, conv2, conv3, sum) x 4, fc


def test_doctests():
    assert doctest.testmod(wiring.sparsify).failed == 0
    assert doctest.testmod(models.resnet).failed == 0


def test_default_scope_is_per_layer():
    model = sparsify(small(), density=0.2)
    layers = sparse_layers(model).values()
    for m in layers:              # every layer keeps its own 20% (largest remainder), none is emptied
        assert abs(int(m.real_mask().sum()) - 0.2 * m.weight.numel()) < 1
