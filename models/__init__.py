"""Networks built on the wiring engine, and the registry the trainer builds them from.

``build_model(name, **options)`` returns an ``nn.Module`` whose learned wirings
are the :class:`wiring.layer.WiredGraph` submodules it contains (found with
``model.modules()``); the trainer needs nothing else of a model.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from models.dynamic import DynamicClassifier, MissingDependency
from models.mobilenet import MobileNetV1, MobileNetV1DNW
from models.tiny import TinyClassifier

__all__ = ["MODELS", "SETTINGS", "build_model", "MissingDependency"]

SETTINGS = ("static", "discrete", "continuous")


def tiny_classifier(setting: str = "static", **options) -> nn.Module:
    """The paper's tiny classifier: static (900 nodes, 325,760 candidates) or dynamic
    (800 nodes, 639,200 candidates: all ordered pairs)."""
    if setting == "static":
        return TinyClassifier(**options)
    return DynamicClassifier(setting=setting, **options)


def micro_classifier(setting: str = "static", **options) -> nn.Module:
    """A narrow version for tests and quick demos: static 66 nodes / 1,712 candidates,
    dynamic 56 nodes / 3,080 candidates."""
    if setting == "static":
        return TinyClassifier(levels=(8, 16, 16, 16), outputs=10, **options)
    return DynamicClassifier(setting=setting, nodes=56, inputs=8, outputs=10, **options)


def mobilenetv1(width: float = 1.0, **options) -> nn.Module:
    """Dense MobileNetV1 x ``width`` (no learned wiring): the baseline."""
    return MobileNetV1(width=width, **options)


def mobilenetv1_dnw(width: float = 1.0, **options) -> nn.Module:
    """MobileNetV1-DNW: each stage's pointwise convolutions are one learned graph with
    k = the dense pointwise weights of MobileNetV1 x ``width`` (see :mod:`models.mobilenet`)."""
    return MobileNetV1DNW(width=width, **options)


def mobilenetv1_dnw_small(width: float = 1.0, **options) -> nn.Module:
    """MobileNetV1-DNW-small: the classifier is a learned graph too."""
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


# ResNet-50 (torchvision's architecture) with DNW over its weights: models/resnet.py.
from models.resnet import resnet50, resnet50_first_dense  # noqa: E402

MODELS.update(resnet50=resnet50, resnet50_first_dense=resnet50_first_dense)
