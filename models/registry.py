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
the keyword options. A new network is one module under ``models/`` with one decorated factory.

The registry is read without importing the networks (so a command's ``--help`` lists the
models without loading PyTorch): :func:`discover` reads each module's source and takes the
``@register(...)`` calls' arguments, which are literals or module-level constants bound to
literals; a factory's module is imported the first time :attr:`ModelSpec.factory` is read,
and its decorator then binds the function (a decorator outside the package, e.g. in a
user's script, registers its model as it runs).

>>> spec = model_spec("micro")
>>> spec.budget, "steps" in spec.options, spec.settings
('edges', True, ('static', 'discrete', 'continuous'))
"""
from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from wiring.graph import GraphError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BUDGETS", "COMMON_OPTIONS", "DEFAULT_EDGES", "MODELS", "SETTINGS", "ModelSpec", "create_model",
           "discover", "model_spec", "register"]

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
    """A registered network: what it declares (see the module), the module that defines its
    factory, and the first line of the factory's docstring."""

    name: str
    module: str
    budget: str
    options: tuple[str, ...]
    settings: tuple[str, ...]
    summary: str = ""

    @property
    def factory(self) -> Callable[..., nn.Module]:
        """The factory (imports its module the first time)."""
        if self.name not in _FACTORIES:
            importlib.import_module(self.module)
        if self.name not in _FACTORIES:
            raise ValueError(f"model {self.name!r}: {self.module} has no @register({self.name!r}) factory")
        return _FACTORIES[self.name]

    def takes(self, option: str) -> bool:
        """Whether the factory takes ``option``."""
        return option in COMMON_OPTIONS or option in self.options


#: every registered model by name, in the order of the modules' names and then of the source
MODELS: dict[str, ModelSpec] = {}

#: the factories bound so far (a module's decorators run when it is imported)
_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def _check(name: str, budget: str, settings: tuple[str, ...]) -> None:
    if budget not in BUDGETS:
        raise ValueError(f"model {name!r}: budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if not settings or any(s not in SETTINGS for s in settings):
        raise ValueError(f"model {name!r}: settings must be some of {', '.join(SETTINGS)}, got {settings!r}")


def register(name: str, *, budget: str = "edges", options: tuple[str, ...] = (),
             settings: tuple[str, ...] = ("static",)) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register the factory as model ``name`` (see the module for ``budget``,
    ``options`` and ``settings``); returns the factory unchanged.

    >>> @register("doc_example", options=("width",))
    ... def doc_example(**options):
    ...     "A model made up for this example."
    >>> model_spec("doc_example").summary, model_spec("doc_example").takes("width")
    ('A model made up for this example.', True)
    >>> del MODELS["doc_example"], _FACTORIES["doc_example"]
    """
    _check(name, budget, tuple(settings))

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        spec = ModelSpec(name, factory.__module__, budget, tuple(options), tuple(settings),
                         _first_line(factory.__doc__))
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} is registered twice")
        known = _add(spec)
        if known is not None and known != spec:
            raise ValueError(f"model {name!r}: {spec.module} declares {spec}, its source was read as {known}")
        _FACTORIES[name] = factory
        return factory
    return add


def _add(spec: ModelSpec) -> ModelSpec | None:
    """Put ``spec`` in :data:`MODELS`; the spec it replaces (read from the same module), if any.
    A name another module registered already is a ``ValueError``."""
    known = MODELS.get(spec.name)
    if known is not None and known.module != spec.module:
        raise ValueError(f"model {spec.name!r} is registered twice ({known.module}, {spec.module})")
    MODELS[spec.name] = spec
    return known


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def _literal(node: ast.expr, constants: dict[str, Any], where: str) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{where}: @register's arguments must be literals or module-level constants "
                         f"bound to literals, got {ast.unparse(node)!r}") from None


def _registrations(source: str, module: str) -> Iterable[ModelSpec]:
    """The :class:`ModelSpec` of every ``@register(...)`` decorator in ``source``."""
    tree = ast.parse(source)
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id == "register"):
                continue
            where = f"{module}.{node.name}"
            name = _literal(deco.args[0], constants, where)
            kw = {k.arg: _literal(k.value, constants, where) for k in deco.keywords}
            spec = ModelSpec(name, module, kw.get("budget", "edges"), tuple(kw.get("options", ())),
                             tuple(kw.get("settings", ("static",))), _first_line(ast.get_docstring(node)))
            _check(spec.name, spec.budget, spec.settings)
            yield spec


def discover(path: Iterable[str], package: str) -> None:
    """Add to :data:`MODELS` the models registered in the modules of ``package`` (its
    ``__path__``), read from their source: nothing is imported."""
    for folder in path:
        for file in sorted(Path(folder).glob("*.py")):
            if file.stem.startswith("_") or file.stem == "registry":
                continue
            for spec in _registrations(file.read_text(encoding="utf-8"), f"{package}.{file.stem}"):
                _add(spec)


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
