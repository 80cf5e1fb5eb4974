"""Networks built on the wiring engine, registered by name (:mod:`models.registry`).

``create_model(name, **options)`` returns an ``nn.Module`` whose learned wirings
are the :class:`wiring.layer.WiredGraph` submodules it contains (found with
``model.modules()``); the trainer needs nothing else of a model. Each network's
module registers its factory with ``@register`` (:func:`models.registry.register`),
declaring its options and how its budget is given. Importing this package reads
every module's registrations from its source (:func:`models.registry.discover`), so
:data:`MODELS` lists them all without loading PyTorch (a command's ``--help`` lists
the models); a network's module is imported when it is built. A new network is one
new module here with one decorated factory, and no other file changes.
"""
from __future__ import annotations

from typing import Any

from models.registry import DEFAULT_EDGES, MODELS, SETTINGS, ModelSpec, create_model, discover, model_spec, register

discover(__path__, __name__)


def __getattr__(name: str) -> Any:
    if name == "MissingDependency":         # loads the dynamic networks (and torch) when asked for
        from models.dynamic import MissingDependency
        return MissingDependency
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = ["DEFAULT_EDGES", "MODELS", "SETTINGS", "MissingDependency", "ModelSpec", "create_model", "model_spec",
           "register"]
