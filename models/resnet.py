"""ResNet-50 (torchvision's architecture, v1.5) and DNW over its weights.

torchvision is not installable here, so the network is written out: the same
modules, names (state-dict keys match ``torchvision.models.resnet50``), shapes and
initialisation. :class:`Bottleneck` puts the stride on its 3x3 convolution (v1.5);
``[3, 4, 6, 3]`` blocks; 25,557,032 parameters at 1000 classes. Convolutions are
``kaiming_normal_(fan_out, relu)`` (``conv_init="fan_in"`` for the NVIDIA recipe the
authors' sparse runs started from), batch norms 1 / 0, and ``zero_init_residual``
zeroes each block's last batch-norm scale.

The registry factories (:func:`resnet50`, :func:`resnet50_first_dense`) build it and,
given ``edges``, make every convolution and the classifier a DNW layer with
:func:`wiring.sparsify.sparsify`: ``edges`` real weights in all, batch norms and
biases dense, as in the DNW paper's sparse ResNet-50.
:func:`resnet_tiny` is the same code at toy width for tests.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from models.registry import register
from wiring.graph import GraphError
from wiring.modes import SPARSE_MODES, every_candidate_real, mode_class
from wiring.sparsify import SCOPES, sparsify

__all__ = ["Bottleneck", "ResNet", "resnet50_dense", "resnet_tiny", "resnet50", "resnet50_first_dense",
           "RESNET50_PARAMETERS", "sparse_budget"]

#: torchvision's ``resnet50()`` parameter count (1000 classes)
RESNET50_PARAMETERS = 25_557_032


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride here: ResNet v1.5) -> 1x1 (expand x4), plus the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet with bottleneck blocks: 7x7/2 stem, 3x3/2 max pool, four
    stages of ``planes`` (x4 out) channels, global average pool, linear classifier."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = 1000, in_channels: int = 3,
                 planes: Sequence[int] = (64, 128, 256, 512), zero_init_residual: bool = False,
                 conv_init: str = "fan_out") -> None:
        super().__init__()
        if conv_init not in ("fan_out", "fan_in"):
            raise ValueError(f"conv_init must be 'fan_out' (torchvision) or 'fan_in', got {conv_init!r}")
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(planes[0], layers[0])
        self.layer2 = self._make_layer(planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode=conv_init, nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50_dense(num_classes: int = 1000, in_channels: int = 3, **options) -> ResNet:
    """torchvision's ``resnet50()`` (untrained)."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, **options)


def resnet_tiny(num_classes: int = 10, in_channels: int = 3, **options) -> ResNet:
    """The same architecture at toy size: one bottleneck per stage, planes 4/8/8/8."""
    return ResNet((1, 1, 1, 1), num_classes=num_classes, in_channels=in_channels, planes=(4, 8, 8, 8), **options)


def sparse_budget(model: nn.Module, density: float, first_dense: bool = False) -> int:
    """``round(density * W)``, W = the weights of every convolution and the classifier
    (without the stem convolution when ``first_dense``): the ``edges`` of a config.

    >>> sparse_budget(resnet50_dense(), 0.1)
    2550291
    """
    weights = sum(m.weight.numel() for n, m in model.named_modules()
                  if type(m) in (nn.Conv2d, nn.Linear) and not (first_dense and n == "conv1"))
    return round(density * weights)


def _build(first_dense: bool, in_channels: int = 3, num_classes: int = 1000, image_size: int | None = None,
           edges: int | None = None, mode: str = "dnw", preset: str = "random_k", seed: int = 0,
           preset_options: dict | None = None, mode_options: dict | None = None, scope: str = "layer",
           zero_init_residual: bool = False, conv_init: str = "fan_out", init: str | None = None,
           candidate_grad_every: int = 1) -> ResNet:
    # ``init`` (the wiring models' --init) does not apply: sparsify keeps the wrapped
    # module's own initialisation (``conv_init``), as the authors' sparse ResNet does.
    # ``candidate_grad_every`` (a WiredGraph knob) neither: sparsified layers have no such skip.
    name = "resnet50_first_dense" if first_dense else "resnet50"
    if preset not in ("random_k", "complete"):
        raise GraphError(f"{name} learns a wiring of individual weights: --graph must be random_k "
                         f"(the initial top-k of random weights) or complete, not {preset!r}")
    if preset_options:
        raise GraphError(f"{name}: preset options {sorted(preset_options)} do not apply")
    if not every_candidate_real(mode) and mode not in SPARSE_MODES:
        raise GraphError(f"{name}: mode {mode!r} is not supported; use one of "
                         f"{', '.join(SPARSE_MODES + ('complete',))}")
    if mode_options and not mode_class(mode).updates:      # rigl / set take their rewiring options
        raise GraphError(f"{name}: mode options {sorted(mode_options)} do not apply")
    if scope not in SCOPES:
        raise GraphError(f"{name}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if image_size is not None and image_size < 32:
        raise GraphError(f"{name} needs images of at least 32x32 (it downsamples 32x), got {image_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet50_dense(num_classes=num_classes, in_channels=in_channels,
                               zero_init_residual=zero_init_residual, conv_init=conv_init)
    if edges is None or every_candidate_real(mode, preset):
        return model
    try:
        return sparsify(model, edges=edges, scope=scope, mode=mode, skip=("conv1",) if first_dense else (),
                        mode_options=mode_options if mode_class(mode).updates else None)
    except ValueError as err:
        raise GraphError(f"{name}: {err}") from None


RESNET_OPTIONS = ("scope", "zero_init_residual", "conv_init")


@register("resnet50", options=RESNET_OPTIONS)
def resnet50(setting: str = "static", **options) -> ResNet:
    """Registry factory: ResNet-50 with ``edges`` real weights (None: dense) over every
    convolution and the classifier, ``mode`` dnw / dnw_no_update / fixed (complete:
    dense). Each layer keeps the same fraction (``scope="layer"``, as the authors'
    code); ``scope="global"`` for one top-k over all layers. Batch norms stay dense."""
    return _build(False, **options)


@register("resnet50_first_dense", options=RESNET_OPTIONS)
def resnet50_first_dense(setting: str = "static", **options) -> ResNet:
    """As :func:`resnet50` with the 7x7 stem convolution dense (the paper's "first
    layer dense" rows); ``edges`` counts the other layers' real weights."""
    return _build(True, **options)
