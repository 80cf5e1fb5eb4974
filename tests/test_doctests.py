"""Every ``>>>`` example in the packages runs: one doctest sweep over every module of
``wiring``, ``models`` and ``viz`` (the README's Python blocks run in test_packaging).

A module whose import needs an optional package that is not installed is skipped, named;
any other import error fails. Examples run with the module's globals, as ``python -m
doctest`` would, in a fresh working directory.
"""
from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wiring", "models", "viz")
PROJECT = set(PACKAGES)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = [str(ROOT / package)]
        names += [info.name for info in pkgutil.walk_packages(path, prefix=f"{package}.")
                  if not info.name.rsplit(".", 1)[-1].startswith("__")]
    return sorted(names)


MODULES = _modules()


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing and missing not in PROJECT:
            pytest.skip(f"{name} needs the optional package {missing}")
        raise


def _run(tests: list[doctest.DocTest]) -> tuple[int, str]:
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        torch.manual_seed(0)
        runner.run(test, out=out.append)
    return runner.failures, "".join(out)


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name, tmp_path, monkeypatch):
    module = _import(name)
    monkeypatch.chdir(tmp_path)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    failures, report = _run(tests)
    assert failures == 0, report


def test_the_sweep_finds_examples():
    """The sweep is not empty: the engine's modules carry runnable examples."""
    counts = {n: sum(len(t.examples) for t in doctest.DocTestFinder().find(importlib.import_module(n), n))
              for n in ("wiring.graph", "wiring.layer", "wiring.ops", "wiring.modes")}
    assert all(c > 0 for c in counts.values()), counts
