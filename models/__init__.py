"""Networks built on the wiring engine, and the registry the trainer builds them from.

``build_model(name, **options)`` returns an ``nn.Module`` whose learned wirings
are the :class:`wiring.layer.WiredGraph` submodules it contains (found with
``model.modules()``); the trainer needs nothing else of a model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from torch import nn

# the networks' modules (and torch) load when a model is built, not with the registry's names
# (the commands' --help reads MODELS and SETTINGS without loading PyTorch)

__all__ = ["MODELS", "SETTINGS", "build_model", "MissingDependency"]


def __getattr__(name: str) -> Any:
    if name == "MissingDependency":
        from models.dynamic import MissingDependency
        return MissingDependency
    raise AttributeError(f"module 'models' has no attribute {name!r}")

SETTINGS = ("static", "discrete", "continuous")


def tiny_classifier(setting: str = "static", **options) -> nn.Module:
    """The paper's tiny classifier: static (900 nodes, 325,760 candidates) or dynamic
    (800 nodes, 639,200 candidates: all ordered pairs)."""
    from models.dynamic import DynamicClassifier
    from models.tiny import TinyClassifier
    if setting == "static":
        return TinyClassifier(**options)
    return DynamicClassifier(setting=setting, **options)


def micro_classifier(setting: str = "static", **options) -> nn.Module:
    """A narrow version for tests and quick demos: static 66 nodes / 1,712 candidates,
    dynamic 56 nodes / 3,080 candidates."""
    from models.dynamic import DynamicClassifier
    from models.tiny import TinyClassifier
    if setting == "static":
        return TinyClassifier(levels=(8, 16, 16, 16), outputs=10, **options)
    return DynamicClassifier(setting=setting, nodes=56, inputs=8, outputs=10, **options)


def mobilenetv1(width: float = 1.0, **options) -> nn.Module:
    """Dense MobileNetV1 x ``width`` (no learned wiring): the baseline."""
    from models.mobilenet import MobileNetV1
    return MobileNetV1(width=width, **options)


def mobilenetv1_dnw(width: float = 1.0, **options) -> nn.Module:
    """MobileNetV1-DNW: each stage's pointwise convolutions are one learned graph with
    k = the dense pointwise weights of MobileNetV1 x ``width`` (see :mod:`models.mobilenet`)."""
    from models.mobilenet import MobileNetV1DNW
    return MobileNetV1DNW(width=width, **options)


def mobilenetv1_dnw_small(width: float = 1.0, **options) -> nn.Module:
    """MobileNetV1-DNW-small: the classifier is a learned graph too."""
    from models.mobilenet import MobileNetV1DNW
    return MobileNetV1DNW(width=width, small=True, **options)


MODELS: dict[str, Callable[..., nn.Module]] = {"tiny": tiny_classifier, "micro": micro_classifier}
MODELS.update(mobilenetv1=mobilenetv1, mobilenetv1_dnw=mobilenetv1_dnw,
              mobilenetv1_dnw_small=mobilenetv1_dnw_small)


def build_model(name: str, **options) -> nn.Module:
    """The model registered as ``name``, built with ``options``.

    >>> m = build_model("tiny", in_channels=1, num_classes=10, image_size=8, edges=500)
    >>> m.graph.k
    500
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    if options.get("setting", "static") not in SETTINGS:
        raise ValueError(f"unknown setting {options['setting']!r}; expected one of {', '.join(SETTINGS)}")
    return MODELS[name](**options)


def resnet50(**options) -> nn.Module:
    """ResNet-50 (torchvision's architecture) with DNW over its weights: :func:`models.resnet.resnet50`."""
    from models.resnet import resnet50 as build
    return build(**options)


def resnet50_first_dense(**options) -> nn.Module:
    """ResNet-50 with DNW over its weights but a dense first layer: :func:`models.resnet.resnet50_first_dense`."""
    from models.resnet import resnet50_first_dense as build
    return build(**options)


MODELS.update(resnet50=resnet50, resnet50_first_dense=resnet50_first_dense)
