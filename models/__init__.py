"""Networks built on the wiring engine, registered by name (:mod:`models.registry`).

``create_model(name, **options)`` returns an ``nn.Module`` whose learned wirings
are the :class:`wiring.layer.WiredGraph` submodules it contains (found with
``model.modules()``); the trainer needs nothing else of a model. Each network's
module registers its factory with ``@register`` (:func:`models.registry.register`),
declaring its options and how its budget is given. Importing this package imports
every module in it, so :data:`MODELS` lists them all: a new network is one new
module here with one decorated factory, and no other file changes.
"""
from __future__ import annotations

import importlib
import pkgutil

from models.registry import DEFAULT_EDGES, MODELS, SETTINGS, ModelSpec, create_model, model_spec, register
from models.dynamic import MissingDependency

for _module in pkgutil.iter_modules(__path__):       # each registers its factories
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DEFAULT_EDGES", "MODELS", "SETTINGS", "MissingDependency", "ModelSpec", "create_model", "model_spec",
           "register"]
