"""Networks built on the wiring engine, registered by name (:mod:`models.registry`).

``create_model(name, **options)`` returns an ``nn.Module`` whose learned wirings
are the :class:`wiring.layer.WiredGraph` submodules it contains (found with
``model.modules()``); the trainer needs nothing else of a model. Each network's
module registers its factory with ``@register`` (:func:`models.registry.register`),
declaring its options and how its budget is given; importing this package imports
every such module, so :data:`MODELS` lists them all.
"""
from __future__ import annotations

from models.registry import DEFAULT_EDGES, MODELS, SETTINGS, ModelSpec, create_model, model_spec, register
from models import dynamic, mobilenet, resnet  # noqa: F401  (each registers its factories)
from models.dynamic import MissingDependency

__all__ = ["DEFAULT_EDGES", "MODELS", "SETTINGS", "MissingDependency", "ModelSpec", "create_model", "model_spec",
           "register"]
