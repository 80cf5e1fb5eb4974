"""Every Sphinx-style cross-reference in the code and the docs names something that exists.

A ``:mod:`` / ``:func:`` / ``:class:`` / ``:meth:`` / ``:attr:`` / ``:data:`` / ``:exc:`` reference
in a docstring or comment of ``wiring``, ``models`` or ``viz``, or in ``README.md`` and
``docs/*.md``, must resolve: as a dotted name importable from the repository (a module, then
attributes), relative to the module it is written in (a name it defines or imports), as a method or
attribute of a class of that module (``self.NAME = ...`` counts for an attribute), or as a builtin.
A reference whose module cannot be imported because an optional package is missing is skipped.
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE = re.compile(r":(mod|func|class|meth|attr|data|exc|obj):`~?([A-Za-z_][\w.]*)`")
PACKAGES = ("wiring", "models", "viz")


def sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return files + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def module_of(path: Path) -> str | None:
    if path.suffix != ".py":
        return None
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


class Optional(Exception):
    """The module needs a package this machine does not have."""


def imported(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or name == e.name or name.startswith(e.name + "."):
            return None                 # no such module: the name is an attribute, or nothing
        if e.name.split(".")[0] not in PACKAGES:
            raise Optional(e.name) from e
        raise


def has_attribute(cls: type, name: str) -> bool:
    if hasattr(cls, name):
        return True
    try:
        return re.search(rf"\bself\.{re.escape(name)}\s*[:=]", inspect.getsource(cls)) is not None
    except (OSError, TypeError):
        return False


def dotted(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        obj = imported(".".join(parts[:i]))
        if obj is None:
            continue
        for j, part in enumerate(parts[i:]):
            if hasattr(obj, part):
                obj = getattr(obj, part)
            elif inspect.isclass(obj) and j == len(parts) - i - 1 and has_attribute(obj, part):
                return True
            else:
                return False
        return True
    return False


def resolves(name: str, context: str | None) -> bool:
    if hasattr(builtins, name) or dotted(name):
        return True
    if context is None:
        return False
    if dotted(f"{context}.{name}"):
        return True
    module = imported(context)
    head = name.split(".")[0]
    return module is not None and "." not in name and any(
        inspect.isclass(value) and value.__module__ == module.__name__ and has_attribute(value, head)
        for value in vars(module).values())


def references() -> list[tuple[str, str, str | None]]:
    found = []
    for path in sources():
        context = module_of(path)
        for match in ROLE.finditer(path.read_text(encoding="utf-8")):
            found.append((str(path.relative_to(ROOT)), match.group(2), context))
    return found


def test_there_are_references_to_check() -> None:
    assert len(references()) > 500


def test_every_reference_resolves() -> None:
    broken = []
    for where, name, context in references():
        try:
            if not resolves(name, context):
                broken.append(f"{where}: {name}")
        except Optional:
            continue
    assert not broken, "references to nothing:\n" + "\n".join(broken)


@pytest.mark.parametrize(("name", "context", "expected"), [
    ("wiring.files.atomic_path", None, True),
    ("atomic_path", "wiring.files", True),
    ("atomic_path", "wiring.io.rundir", False),       # not defined or imported there
    ("OSError", None, True),
    ("SparseBudget.recomputes", "wiring.sparsify", True),   # an attribute set in __init__
    ("wiring.files.no_such_function", None, False),
])
def test_the_resolver(name: str, context: str | None, expected: bool) -> None:
    assert resolves(name, context) is expected
