"""The model registry: what a factory declares is what every command builds and checks."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from models import DEFAULT_EDGES, MODELS, create_model, model_spec
from models.cost import inference_parameters
from processes import ROOT, process_env
from wiring.graph import GraphError
from wiring.train.build import build_model
from wiring.train.config import WIDTH_BUDGET_MODELS, Config, ConfigError, parse_config

TOY = '''"""A toy network for the registry's test: the micro classifier's stem and a 4-8-10 graph."""
from torch import nn

from models.registry import register
from models.tiny import TinyClassifier


@register("toy")
def toy(**options) -> nn.Module:
    """The toy: a static 4 -> 8 -> 10 graph."""
    return TinyClassifier(levels=(4, 8), outputs=10, **options)
'''


def test_a_new_model_is_one_file_and_one_decorator(tmp_path):
    """docs/architecture.md: a new network is one module under models/ with one decorated
    factory. A copy of the package plus that one file: wiring.train's --model and
    wiring.profile's accept it and build it with the trainer's options."""
    shutil.copytree(ROOT / "models", tmp_path / "models", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "models" / "toy.py").write_text(TOY)
    env = process_env()
    script = ("from wiring.train.config import parse_config\n"
              "cfg = parse_config(['--model', 'toy', '--edges', '30'])\n"
              "print(cfg.model, cfg.edges)")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["toy", "30"]
    done = subprocess.run([sys.executable, "-m", "wiring.profile", "--model", "toy", "--edges", "30", "--image-size",
                           "8", "--classes", "10", "--in-channels", "1", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)
    assert cost["params"] > 30 and cost["macs"] > 0


def test_each_factory_declares_its_budget_and_options():
    assert WIDTH_BUDGET_MODELS == ("mobilenetv1", "mobilenetv1_dnw", "mobilenetv1_dnw_small")
    assert {n for n, s in MODELS.items() if s.budget == "edges"} == {"tiny", "micro", "resnet50",
                                                                     "resnet50_first_dense"}
    assert model_spec("mobilenetv1_dnw").takes("node_width") and not model_spec("tiny").takes("width")
    assert model_spec("tiny").settings == ("static", "discrete", "continuous")
    assert model_spec("resnet50").settings == ("static",)
    assert Config().edges == DEFAULT_EDGES
    with pytest.raises(TypeError, match="model micro takes no option 'node_width'"):
        create_model("micro", node_width=0.5)
    with pytest.raises(GraphError, match="model resnet50 has static graphs only, not the 'discrete' setting"):
        create_model("resnet50", setting="discrete")


@pytest.mark.parametrize("argv, message", [
    (["--model", "tiny", "--width", "0.5"], "--width: model tiny has no width multiplier"),
    (["--model", "resnet50", "--setting", "discrete"],
     "--setting: model resnet50 has static graphs only, not the 'discrete' setting"),
    (["--model", "mobilenetv1_dnw", "--width", "0.25", "--setting", "continuous"],
     "--setting: model mobilenetv1_dnw has static graphs only, not the 'continuous' setting"),
])
def test_config_checks_width_and_setting_against_the_spec(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_config(argv)
    assert str(err.value) == message


def test_train_refuses_a_setting_the_model_lacks_in_one_line(tmp_path):
    """Was a TypeError traceback (``_build() got an unexpected keyword argument 'setting'``),
    after the data set was loaded."""
    done = subprocess.run([sys.executable, "-m", "wiring.train", "--model", "resnet50", "--setting", "discrete",
                           "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "run")],
                          cwd=tmp_path, env=process_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m wiring.train: error: --setting: model resnet50 has static graphs only, not the 'discrete' setting"]
    assert not (tmp_path / "run").exists()


def test_profile_builds_what_train_builds():
    """wiring.profile --model and wiring.train share build_model: the same flags, the same network."""
    from wiring.profile import main as profile_main

    cfg = parse_config(["--model", "micro", "--edges", "90", "--mode", "td", "--seed", "3"])
    model = build_model(cfg, SimpleNamespace(channels=1, num_classes=10, image_size=8))
    assert model.graph.mode.rho == cfg.td_rho and model.graph.k == 90
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert profile_main(["--model", "micro", "--edges", "90", "--mode", "td", "--seed", "3", "--image-size", "8",
                             "--classes", "10", "--in-channels", "1", "--json"]) == 0
    assert json.loads(out.getvalue())["params"] == inference_parameters(model)


def test_the_registry_read_from_source_is_what_the_decorators_register():
    """models reads each module's @register calls from its source (no torch for --help); importing
    the modules runs the decorators, which refuse any spec that differs from the one read."""
    import importlib

    from models import registry
    before = dict(MODELS)
    for spec in before.values():
        importlib.import_module(spec.module)
        assert registry._FACTORIES[spec.name] is spec.factory and spec.factory.__module__ == spec.module
    assert MODELS == before
    assert model_spec("mobilenetv1_dnw").options == ("width", "node_width", "budget")
    assert model_spec("tiny").summary.startswith("The paper's tiny classifier")


def test_a_registration_the_source_reader_cannot_read_is_named(tmp_path):
    from models.registry import _registrations
    source = 'from models.registry import register\n\n@register("x", options=make())\ndef x(**o):\n    pass\n'
    with pytest.raises(ValueError, match=r"pkg.mod.x: @register's arguments must be literals .* got 'make\(\)'"):
        list(_registrations(source, "pkg.mod"))
    source = 'OPTS = ("a",)\n\n@register("y", budget="width", options=OPTS)\ndef y(**o):\n    "Y."\n'
    (spec,) = _registrations(source, "pkg.mod")
    assert (spec.name, spec.module, spec.budget, spec.options, spec.settings, spec.summary) == (
        "y", "pkg.mod", "width", ("a",), ("static",), "Y.")
