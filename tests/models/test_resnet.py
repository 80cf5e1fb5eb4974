"""Tests for models.resnet: torchvision's ResNet-50 and its DNW-sparse registry entries."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from models import MODELS, create_model
from models.resnet import RESNET50_PARAMETERS, Bottleneck, resnet50_dense, resnet_tiny, sparse_budget
from wiring.graph import GraphError
from wiring.sparsify import budget_of, check_sparse, num_real, sparse_layers
from wiring.train.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = dict(in_channels=3, num_classes=10, image_size=32, mode="dnw", preset="random_k", seed=0,
               preset_options={}, mode_options={})
CONV_WEIGHTS = 23_454_912          # the 53 convolutions of ResNet-50
STEM = 64 * 3 * 7 * 7


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dense():
    torch.manual_seed(0)
    return resnet50_dense()


def test_parameter_count_is_torchvision(dense):
    assert sum(p.numel() for p in dense.parameters()) == RESNET50_PARAMETERS == 25_557_032
    convs = [m for m in dense.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 53 and sum(m.weight.numel() for m in convs) == CONV_WEIGHTS
    assert sum(isinstance(m, Bottleneck) for m in dense.modules()) == 3 + 4 + 6 + 3


def test_torchvision_layout(dense):
    keys = dense.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.num_batches_tracked", "layer4.2.bn3.running_var", "fc.weight", "fc.bias"):
        assert key in keys
    block = dense.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)      # v1.5: stride on the 3x3
    assert block.downsample[0].stride == (2, 2)
    assert dense.fc.in_features == 2048


def test_output_shape_on_64x64(dense):
    dense.eval()
    with torch.no_grad():
        out = dense(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


def test_zero_init_residual():
    net = resnet_tiny(zero_init_residual=True)
    assert all((m.bn3.weight == 0).all() for m in net.modules() if isinstance(m, Bottleneck))
    assert resnet_tiny().layer1[0].bn3.weight.eq(1).all()


def test_registry_builds_a_sparse_resnet50_with_exactly_edges_real_weights():
    edges = 2_000_000
    model = create_model("resnet50", edges=edges, **OPTIONS)
    assert "resnet50" in MODELS and "resnet50_first_dense" in MODELS
    layers = sparse_layers(model)
    assert len(layers) == 54 and "conv1" in layers and "fc" in layers
    budget = budget_of(model)
    assert budget.scope == "layer" and budget.mode == "dnw"
    assert budget.total == CONV_WEIGHTS + 2048 * 10
    assert num_real(model) == edges
    check_sparse(model)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert budget.recomputes == 1          # one top-k pass served the count and the forward


def test_first_dense_and_dense_variants():
    model = create_model("resnet50_first_dense", edges=1000, **OPTIONS)
    assert type(model.conv1) is nn.Conv2d
    assert budget_of(model).total == CONV_WEIGHTS - STEM + 2048 * 10
    dense = create_model("resnet50", edges=None, **OPTIONS)
    assert not sparse_layers(dense)
    same = create_model("resnet50", edges=None, **OPTIONS)
    assert torch.equal(dense.conv1.weight, same.conv1.weight)           # seeded
    complete = create_model("resnet50", **{**OPTIONS, "mode": "complete"}, edges=5)
    assert not sparse_layers(complete)


@pytest.mark.parametrize("change, message", [({"preset": "ws"}, "random_k"), ({"mode": "td"}, "mode 'td'"),
                                             ({"edges": 10 ** 9}, "edges="), ({"image_size": 16}, "at least 32")])
def test_factory_rejects_what_it_cannot_do(change, message):
    with pytest.raises(GraphError, match=message):
        create_model("resnet50", **{**OPTIONS, "edges": 1000, **change})


def test_factory_has_no_width():
    with pytest.raises(TypeError, match="width"):
        create_model("resnet50", edges=None, width=0.5, **OPTIONS)


@pytest.mark.parametrize("name, model, density, first_dense", [
    ("resnet50_sparse90.yaml", "resnet50", 0.1, False),
    ("resnet50_sparse80.yaml", "resnet50", 0.2, False),
    ("resnet50_sparse90_first_dense.yaml", "resnet50_first_dense", 0.1, True),
])
def test_configs(dense, name, model, density, first_dense):
    cfg = parse_config(["--config", str(ROOT / "configs" / "paper" / name)])
    assert cfg.model == model and cfg.data == "imagenet" and cfg.mode == "dnw" and cfg.graph == "random_k"
    assert cfg.edges == sparse_budget(dense, density, first_dense=first_dense)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.schedule) == (100, 256, 0.256, 0.875, "cosine")


def test_budget_numbers(dense):
    assert sparse_budget(dense, 0.1) == 2_550_291
    assert sparse_budget(dense, 0.2) == 5_100_582
    assert sparse_budget(dense, 0.1, first_dense=True) == 2_549_350


def test_a_few_sparse_resnet50_training_steps_at_low_resolution():
    from wiring.sparsify import num_real, real_masks
    torch.manual_seed(0)
    edges = 500_000                                           # about 2% of the 25.5M weights
    model = create_model("resnet50", in_channels=3, num_classes=10, image_size=32, edges=edges, mode="dnw",
                        preset="random_k", seed=0, preset_options={}, mode_options={})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    masks_before = {name: m.clone() for name, m in real_masks(model).items()}
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss) and num_real(model) == edges
    name, mask = next(iter(masks_before.items()))
    layer = dict(model.named_modules())[name]
    assert layer.weight.grad[~mask].abs().sum() > 0          # hallucinated weights get gradient (dnw)
