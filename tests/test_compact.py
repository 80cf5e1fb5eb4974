"""wiring.compact: the standalone inference model equals the training model in eval mode."""
from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import models
from models import build_model
from wiring.compact import compact_model, load_compact, main, save_compact
from wiring.export import main as export_main
from wiring.profile import main as profile_main
from wiring.profile import profile_model

pytestmark = pytest.mark.usefixtures("one_thread")



ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=0.03125, node_width=0.0625, num_classes=10, image_size=8)


def trained(name: str = "mobilenetv1_dnw", steps: int = 3, **options):
    """A small model after a few SGD steps (so BN statistics and the wiring moved), in eval mode."""
    torch.manual_seed(0)
    m = build_model(name, **{**TINY, **options})
    opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    m.train()
    for _ in range(steps):
        x = torch.randn(8, 3, TINY["image_size"], TINY["image_size"], generator=gen)
        loss = F.cross_entropy(m(x), torch.arange(8) % 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    calibrate(m, 3)
    return m.eval()


@torch.no_grad()
def calibrate(m, channels: int, size: int = 8) -> None:
    """BatchNorm running statistics as the average of a few batches (so eval-mode activations
    stay of order one and a 1e-5 tolerance is meaningful)."""
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    m.train()
    gen = torch.Generator().manual_seed(5)
    for _ in range(4):
        m(torch.randn(8, channels, size, size, generator=gen))
    for bn in bns:
        bn.momentum = 0.1
    m.eval()


def batch(n: int = 4, size: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name, mode", [("mobilenetv1_dnw", "dnw"), ("mobilenetv1_dnw_small", "dnw"),
                                        ("mobilenetv1_dnw_small", "fixed"), ("mobilenetv1_dnw", "td")])
def test_compact_equals_training_model_in_eval_mode(name, mode):
    m = trained(name, mode=mode)
    c = compact_model(m)
    x = batch()
    with torch.no_grad():
        expected, got = m(x), c(x)
    assert got.shape == expected.shape == (4, 10)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    total = sum(p.numel() for p in m.parameters())
    assert c.num_parameters() < total
    assert c.num_parameters() == profile_model(m)["params"]


def test_compact_of_complete_graphs():
    m = trained(edges=None, mode="complete", steps=1)
    c = compact_model(m)
    with torch.no_grad():
        assert torch.allclose(c(batch()), m(batch()), atol=1e-5, rtol=1e-5)


def hand_model():
    """The hand-made network of test_profile.py: stage-2 nodes 2 and 4 are dead."""
    from models.mobilenet import MobileNetV1DNW

    torch.manual_seed(0)
    m = MobileNetV1DNW(width=1.0, stages=((2, 3, 1, 1), (3, 2, 2, 2)), in_channels=1, num_classes=2,
                       image_size=8)
    layer = m.stages[1].graph
    ei = layer.edge_index.t().tolist()
    weight = torch.full((layer.num_candidates,), 0.01)
    for u, v in [(0, 3), (1, 3), (2, 4), (0, 4), (1, 4), (0, 5), (1, 5), (3, 5), (0, 6), (3, 6)]:
        weight[ei.index([u, v])] = 1.0 if (u + v) % 2 else -1.0
    with torch.no_grad():
        layer.weight.copy_(weight)
    return m


def test_hand_made_dead_nodes_are_removed():
    m = hand_model()
    with torch.no_grad():                       # non-trivial BN statistics
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    m.eval()
    c = compact_model(m)
    assert [s["level_sizes"] for s in c.stage_meta] == [[2, 2], [2, 1, 2]]
    assert c.stem_weight.shape == (2, 1, 3, 3)
    assert c.num_parameters() == profile_model(m)["params"] == 94
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(c(x), m(x), atol=1e-5, rtol=1e-5)


def test_save_and_load_standalone(tmp_path):
    m = trained("mobilenetv1_dnw_small", steps=1)
    path = tmp_path / "model.pt"
    save_compact(compact_model(m), path)
    x = batch(2)
    torch.save({"x": x, "y": m(x).detach()}, tmp_path / "io.pt")
    loaded = load_compact(path)
    with torch.no_grad():
        assert torch.allclose(loaded(x), m(x), atol=1e-5, rtol=1e-5)
    # the loader needs nothing of this project: load wiring/compact.py as a lone file with the
    # project's packages blocked
    script = f"""
import importlib.abc, importlib.util, sys, torch
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("models", "wiring", "networkx", "yaml"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location("compact_alone", {str(ROOT / "wiring" / "compact.py")!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
model = mod.load_compact({str(path)!r})
io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
with torch.no_grad():
    assert torch.allclose(model(io["x"]), io["y"], atol=1e-5, rtol=1e-5)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_module_imports_only_torch_at_top_level():
    tree = ast.parse((ROOT / "wiring" / "compact.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    assert top <= {"__future__", "argparse", "functools", "statistics", "sys", "threading", "time", "pathlib",
                   "typing", "torch"}


def test_unsupported_model():
    with pytest.raises(ValueError, match="MobileNetV1-DNW models .* and the static tiny classifier"):
        compact_model(build_model("mobilenetv1", width=0.25, num_classes=10, image_size=8))


# ----------------------------------------------------------------------------- from a run directory

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as wiring.train leaves it (config, data_info, model state), written
    directly to keep the test fast; the registry gets narrow nodes for the time of the module."""
    from types import SimpleNamespace

    from wiring.checkpoint import save_checkpoint
    from wiring.config import parse_config
    from wiring.train import build

    out = tmp_path_factory.mktemp("compact") / "run"
    out.mkdir()
    cfg = parse_config(["--model", "mobilenetv1_dnw_small", "--width", "0.03125", "--data", "digits"])
    info = {"name": "digits", "num_classes": 10, "channels": 1, "image_size": 8, "train_size": 16,
            "test_size": 16}
    small_nodes = functools.partial(models.mobilenetv1_dnw_small, node_width=0.0625)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(models.MODELS, "mobilenetv1_dnw_small", small_nodes)
        torch.manual_seed(0)
        m = build(cfg, SimpleNamespace(**info))
        opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
        for _ in range(2):
            loss = F.cross_entropy(m(torch.randn(8, 1, 8, 8)), torch.arange(8))
            opt.zero_grad()
            loss.backward()
            opt.step()
        calibrate(m, 1)
        save_checkpoint({"model": m.state_dict(), "config": cfg.to_dict(), "data_info": info, "step": 2},
                        out / "checkpoint.pt")
        yield out


def test_cli_compacts_a_run(run_dir, capsys):
    out = run_dir / "small.pt"
    assert main([str(run_dir), "-o", str(out), "--repeats", "2", "--batch", "4"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert str(out) in text and "max |logit difference|" in text and "x\n" in text
    assert captured.err == ""
    model = load_compact(out)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_export_style_flag_and_profile_of_the_run(run_dir, capsys):
    assert export_main([str(run_dir), "--compact"]) == 0
    assert (run_dir / "compact.pt").is_file()
    capsys.readouterr()
    assert profile_main(["--run", str(run_dir), "--json"]) == 0
    import json
    params = json.loads(capsys.readouterr().out)["params"]
    assert params == load_compact(run_dir / "compact.pt").num_parameters()


def test_cli_user_mistakes_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing" in err
