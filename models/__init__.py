"""Networks built on the wiring engine, and the registry the trainer builds them from.

``build_model(name, **options)`` returns an ``nn.Module`` whose learned wirings
are the :class:`wiring.layer.WiredGraph` submodules it contains (found with
``model.modules()``); the trainer needs nothing else of a model.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from .tiny import TinyClassifier

MODELS: dict[str, Callable[..., nn.Module]] = {
    # The paper's static tiny classifier: 900 nodes, 325,760 candidates.
    "tiny": TinyClassifier,
    # A narrow version (66 nodes, 1,712 candidates) for tests and quick demos.
    "micro": partial(TinyClassifier, levels=(8, 16, 16, 16), outputs=10),
}


def build_model(name: str, **options) -> nn.Module:
    """The model registered as ``name``, built with ``options``.

    >>> m = build_model("tiny", in_channels=1, num_classes=10, image_size=8, edges=500)
    >>> m.graph.k
    500
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name](**options)
