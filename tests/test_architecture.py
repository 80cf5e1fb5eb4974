"""The floors of the layout (docs/architecture.md): no module imports a floor above its own.

engine -> graph tools -> models -> training -> commands -> viz, with the shared base (errors,
files, cli) under every floor, and viz reading only run folders and GraphML (base, engine,
graph tools). Every import of the project's own modules counts, inside functions too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wiring", "models", "viz")

#: floor of a module, by its longest matching name prefix
FLOORS = {
    "wiring": 0, "wiring.errors": 0, "wiring.files": 0, "wiring.cli": 0, "wiring.lazy": 0,
    "wiring.graph": 1, "wiring.topk": 1, "wiring.modes": 1, "wiring.presets": 1, "wiring.ops": 1,
    "wiring.backends": 1, "wiring.nodeops": 1, "wiring.layer": 1, "wiring.fused": 1, "wiring.sparsify": 1,
    "wiring.io": 2, "wiring.topology": 2, "wiring.picture": 2,
    "models": 3,
    "wiring.train": 4,
    "wiring.export": 5, "wiring.analyze": 5, "wiring.profile": 5, "wiring.compact": 5, "wiring.bench": 5,
    "wiring.bench_inference": 5, "wiring.study": 5,
    "viz": 6,
}
NAMES = ["base", "engine", "graph tools", "models", "training", "commands", "viz"]


def floor(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in FLOORS:
            return FLOORS[".".join(parts[:n])]
    raise KeyError(f"{module} has no floor: add it to FLOORS and docs/architecture.md")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = modules()


def project_imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (``from P import name`` counts P.name when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_every_module_has_a_floor():
    assert [floor(m) for m in MODULES]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_goes_up_a_floor(module):
    own = floor(module)
    up = sorted(m for m in project_imports(MODULES[module]) if floor(m) > own)
    assert not up, f"{module} ({NAMES[own]}) imports {', '.join(f'{m} ({NAMES[floor(m)]})' for m in up)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("viz")))
def test_viz_reads_run_folders_and_graphml_only(module):
    beyond = sorted(m for m in project_imports(MODULES[module]) if not m.startswith("viz") and floor(m) > 2)
    assert not beyond, f"{module} imports {', '.join(beyond)}"


def test_the_floor_checker_sees_an_upward_import(tmp_path):
    fake = tmp_path / "graph.py"
    fake.write_text("def f():\n    from wiring.train.trainer import Trainer\n")
    assert floor("wiring.graph") < max(floor(m) for m in project_imports(fake))
