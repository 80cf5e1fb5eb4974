"""The project's packaging files agree with each other and with the README."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

from wiring.train.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
# conda package names that differ from their PyPI names
CONDA_TO_PYPI = {"pytorch": "torch", "pyg": "torch-geometric"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]} | {_name(r) for r in project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    named = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            named |= {_name(r) for r in dep["pip"] if not r.startswith("-e")}
        elif _name(dep) not in ("python", "pip"):
            named.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    assert named == wanted


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "./setup.sh && .venv/bin/python -m pytest -q"
    assert test_command in readme and test_command in ci
    assert "./setup.sh && .venv/bin/python -m wiring.train --graph random_k --edges 12000" in readme


DATA_SHAPES = {"imagenet": (3, 1000, 224), "cifar10": (3, 10, 32)}


def test_every_paper_config_parses_and_builds():
    from types import SimpleNamespace

    from wiring.train.build import build_model
    paths = sorted((ROOT / "configs" / "paper").glob("*.yaml"))
    assert len(paths) >= 20
    built: dict[tuple, int] = {}
    for path in paths:
        cfg = parse_config(["--config", str(path)])
        assert cfg.epochs > 0 and cfg.data in DATA_SHAPES, path
        channels, classes, size = DATA_SHAPES[cfg.data]
        key = (cfg.model, cfg.width, cfg.setting, cfg.mode == "complete", cfg.data)
        if key in built:                                  # same network, other mode or schedule
            continue
        model = build_model(cfg, SimpleNamespace(channels=channels, num_classes=classes, image_size=size))
        built[key] = sum(p.numel() for p in model.parameters())
        del model
    assert len(built) >= 10


def test_study_configs_are_not_training_configs():
    from wiring.study.spec import load_study
    for path in sorted((ROOT / "configs").glob("study_*.yaml")):
        assert load_study(path).cells(), path


def readme_python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [part.split("```", 1)[0] for part in readme.split("```python\n")[1:]]


def test_every_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # examples may write files
    blocks = readme_python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        if "RUN_DIR/" in block:                       # reads a run's files: run on one in its command's tests
            continue
        exec(compile(block, "README.md", "exec"), {})


def test_readme_sparse_example_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in readme_python_blocks() if "sparsify" in b)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    from wiring.sparsify import num_real
    assert scope["real"] == 1382 and (tmp_path / "sparse.pt").is_file()
    model = scope["model"]
    assert num_real(model) == 0                                   # densified in place: plain modules
    assert all(type(m) in (torch.nn.Conv2d, torch.nn.Linear) for m in model if hasattr(m, "weight"))
    nonzero = sum(int(torch.count_nonzero(m.weight)) for m in list(model)[2:5:2])
    assert nonzero == 1382


def test_readme_library_example_results():
    block = next(b for b in readme_python_blocks() if "WiredGraph" in b)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    wired = scope["wired"]
    assert int(wired.real_mask().sum()) == 500
    assert scope["graph_of_real_edges"].num_edges == 500
    assert abs(wired.density - 500 / 7584) < 1e-12


def test_the_native_kernel_source_ships_with_the_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "kernels.cpp" in data["wiring.backends"] and (ROOT / "wiring" / "backends" / "kernels.cpp").is_file()


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="runs ./setup.sh, which updates the .venv it makes: only from that environment")
def test_setup_sh_says_what_it_installs_at_each_step():
    """./setup.sh, run again over its .venv (as the README's commands do): a line per step
    naming what it installs, then what pip installed there, then 'environment ready'."""
    import subprocess

    from wiring import __version__
    proc = subprocess.run(["./setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    steps = [i for i, line in enumerate(lines) if re.match(r"setup\.sh: \[\d/\d\] ", line)]
    assert [lines[i][:15] for i in steps] == ["setup.sh: [1/3]", "setup.sh: [2/3]", "setup.sh: [3/3]"], lines
    assert "pip" in lines[steps[0]] and "PyTorch" in lines[steps[1]] and '".[dev]"' in lines[steps[2]]
    for i in steps:
        assert lines[i + 1].startswith(("  installed: ", "  already installed")), lines
    assert f"wiring-{__version__}" in lines[steps[2] + 1].split()      # an editable install is made again
    assert lines[-1].startswith("environment ready: .venv (torch ")
