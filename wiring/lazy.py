"""A module imported on first use: what lets a command's ``--help`` answer without loading PyTorch.

Contract: ``torch = lazy_module("torch")`` at the top of a module binds a stand-in for
``torch`` that imports it the first time one of its attributes is read and from then on reads
every attribute from the real module (one more Python call per read).
It suits the modules the command-line parsers need for their names (mode, preset, backend
and model names), which use torch inside their functions only; a module that uses torch
while it is imported (a class deriving from ``nn.Module``, a tensor at module level) imports
it plainly. Type annotations name ``Tensor`` under ``typing.TYPE_CHECKING``.

>>> import sys
>>> math = lazy_module("math")
>>> math.sqrt(4.0), math.pi > 3
(2.0, True)
>>> lazy_module("json").__name__
'json'
"""
from __future__ import annotations

import importlib
import types
from typing import Any

__all__ = ["LazyModule", "lazy_module"]


class LazyModule(types.ModuleType):
    """A stand-in module that imports the module it names on the first attribute read."""

    def __getattr__(self, attr: str) -> Any:        # every name but the stand-in's own
        real = self.__dict__.get("_lazy_real")
        if real is None:
            real = self.__dict__["_lazy_real"] = importlib.import_module(self.__name__)
        return getattr(real, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r}>"


def lazy_module(name: str) -> types.ModuleType:
    """A :class:`LazyModule` for ``name`` (nothing is imported yet)."""
    return LazyModule(name)
