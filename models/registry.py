"""The model registry: one ``@register`` per network, and :func:`create_model` to build one by name.

A factory registered with :func:`register` takes the options every model takes
(:data:`COMMON_OPTIONS`: the input shape, the wiring's budget ``edges``, ``mode``,
``preset``, ``seed`` and their options, ``init``, ``candidate_grad_every``) and declares:

* ``budget``: how its real-edge budget k is given. ``"edges"``: by ``edges`` (``--edges``,
  :data:`DEFAULT_EDGES` unless given; None: every candidate real). ``"width"``: by the width
  multiplier (k per graph = the dense weights it replaces); ``edges`` only says None (every
  candidate real) or not, and ``--edges`` does not apply;
* ``options``: the other keyword options it takes (``width``, ``node_width``, ``steps``, ...);
  :func:`create_model` refuses any other with a ``TypeError`` naming it;
* ``settings``: the graph settings it can be built in (``static``, ``discrete``,
  ``continuous``; see :mod:`models.dynamic`); :func:`create_model` refuses another with a
  :class:`~wiring.graph.GraphError`.

Commands never read a factory's signature: ``wiring.train``'s config checks ``--width`` and
``--setting`` against the spec, and :func:`wiring.train.build.build_model` turns a config into
the keyword options. A new network is one module under ``models/`` with one decorated factory,
imported by ``models/__init__.py``.

>>> spec = model_spec("micro")
>>> spec.budget, "steps" in spec.options, spec.settings
('edges', True, ('static', 'discrete', 'continuous'))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from wiring.graph import GraphError

__all__ = ["BUDGETS", "COMMON_OPTIONS", "DEFAULT_EDGES", "MODELS", "SETTINGS", "ModelSpec", "create_model",
           "model_spec", "register"]

#: the default budget k of an ``edges`` model (``--edges``; the paper's tiny classifier)
DEFAULT_EDGES = 12000

#: the graph settings: a feed-forward DAG, a recurrent graph run for ``steps``, a neural ODE
SETTINGS = ("static", "discrete", "continuous")

#: how a model's real-edge budget is given
BUDGETS = ("edges", "width")

#: the options every registered factory takes (a model without a graph accepts and ignores the wiring ones)
COMMON_OPTIONS = ("in_channels", "num_classes", "image_size", "edges", "mode", "preset", "seed", "preset_options",
                  "mode_options", "init", "candidate_grad_every", "setting")


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: its ``factory`` and what it declares (see the module)."""

    name: str
    factory: Callable[..., nn.Module]
    budget: str
    options: tuple[str, ...]
    settings: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The first line of the factory's docstring."""
        return (self.factory.__doc__ or "").strip().splitlines()[0] if self.factory.__doc__ else self.name

    def takes(self, option: str) -> bool:
        """Whether the factory takes ``option``."""
        return option in COMMON_OPTIONS or option in self.options


#: every registered model by name, in registration order
MODELS: dict[str, ModelSpec] = {}


def register(name: str, *, budget: str = "edges", options: tuple[str, ...] = (),
             settings: tuple[str, ...] = ("static",)) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register the factory as model ``name`` (see the module for ``budget``,
    ``options`` and ``settings``); returns the factory unchanged."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if not settings or any(s not in SETTINGS for s in settings):
        raise ValueError(f"settings must be some of {', '.join(SETTINGS)}, got {settings!r}")

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(name, factory, budget, tuple(options), tuple(settings))
        return factory
    return add


def model_spec(name: str) -> ModelSpec:
    """The spec of the model registered as ``name`` (``ValueError`` naming the known ones)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def create_model(name: str, **options: Any) -> nn.Module:
    """The model registered as ``name``, built with ``options`` (common ones, and those it declares).

    >>> m = create_model("tiny", in_channels=1, num_classes=10, image_size=8, edges=500)
    >>> m.graph.k
    500
    """
    spec = model_spec(name)
    setting = options.get("setting", "static")
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {', '.join(SETTINGS)}")
    if setting not in spec.settings:
        raise GraphError(f"model {name} has {' / '.join(spec.settings)} graphs only, not the {setting!r} setting")
    unknown = sorted(o for o in options if not spec.takes(o))
    if unknown:
        raise TypeError(f"model {name} takes no option {', '.join(map(repr, unknown))}")
    return spec.factory(**options)
