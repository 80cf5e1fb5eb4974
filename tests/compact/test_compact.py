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
from models import create_model
from run_dirs import checkpoint_run
from wiring.compact import load_compact
from wiring.compact.command import main
from wiring.compact.extract import compact_model, save_compact
from wiring.export import main as export_main
from wiring.profile import main as profile_main
from wiring.profile import profile_model

pytestmark = pytest.mark.usefixtures("one_thread")



ROOT = Path(__file__).resolve().parents[2]
TINY = dict(width=0.03125, node_width=0.0625, num_classes=10, image_size=8)


def trained(name: str = "mobilenetv1_dnw", steps: int = 3, **options):
    """A small model after a few SGD steps (so BN statistics and the wiring moved), in eval mode."""
    torch.manual_seed(0)
    m = create_model(name, **{**TINY, **options})
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
    t = tiny_trained("micro", edges=300)
    save_compact(compact_model(t), tmp_path / "tiny.pt")
    with torch.no_grad():
        torch.save({"x": x, "y": m(x), "y_tiny": t(x)}, tmp_path / "io.pt")
    loaded = load_compact(path)
    with torch.no_grad():
        assert torch.allclose(loaded(x), m(x), atol=1e-5, rtol=1e-5)
    # the loader needs nothing of this project: load wiring/compact/runtime.py as a lone file with the
    # project's packages blocked
    script = f"""
import importlib.abc, importlib.util, sys, torch
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("models", "wiring", "networkx", "yaml"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location("compact_alone", {str(ROOT / "wiring" / "compact" / "runtime.py")!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
model = mod.load_compact({str(path)!r})
io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
tiny = mod.load_compact({str(tmp_path / "tiny.pt")!r})
assert type(tiny).__name__ == "CompactTiny"
with torch.no_grad():
    assert torch.allclose(model(io["x"]), io["y"], atol=1e-5, rtol=1e-5)
    assert torch.allclose(tiny(io["x"]), io["y_tiny"], atol=1e-5, rtol=1e-5)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_module_imports_only_torch_at_top_level():
    tree = ast.parse((ROOT / "wiring" / "compact" / "runtime.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    assert top <= {"__future__", "argparse", "functools", "os", "statistics", "sys", "tempfile", "threading",
                   "time", "pathlib", "typing", "torch"}


def test_save_is_atomic_an_error_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import wiring.compact.extract as compact_mod
    model = compact_model(create_model("micro", in_channels=1, num_classes=10, image_size=8, edges=100))
    path = tmp_path / "model.pt"
    save_compact(model, path)
    before = path.read_bytes()

    def broken(obj, f):
        f.write(b"half of a file")
        raise OSError("disk full")
    monkeypatch.setattr(compact_mod.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_compact(model, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    monkeypatch.undo()
    assert load_compact(path)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_unsupported_model():
    with pytest.raises(ValueError, match="MobileNetV1-DNW models .* and the static tiny classifier"):
        compact_model(create_model("mobilenetv1", width=0.25, num_classes=10, image_size=8))


# ----------------------------------------------------------------------------- the static tiny classifier

def tiny_trained(name: str = "micro", steps: int = 2, image_size: int = 8, in_channels: int = 3,
                 **options) -> torch.nn.Module:
    """A tiny classifier after a few SGD steps (the wiring, the node ops and the stem moved; the
    norms' biases are then non-zero, so constant nodes compute non-zero maps), BatchNorm
    statistics calibrated, in eval mode."""
    torch.manual_seed(0)
    m = create_model(name, **{"num_classes": 10, "image_size": image_size, "in_channels": in_channels,
                             **options})
    opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    m.train()
    for _ in range(steps):
        x = torch.randn(8, in_channels, image_size, image_size, generator=gen)
        loss = F.cross_entropy(m(x), torch.arange(8) % 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    calibrate(m, in_channels, image_size)
    return m.eval()


def check_counts(m, c) -> None:
    """The compact model's node and edge counts agree with the training model's wiring."""
    from wiring.profile import live_nodes

    n = c.counts
    assert n["nodes"] == m.graph.graph.num_nodes == n["kept"] + n["dead"] + n["constant"]
    assert n["dead"] == int((~live_nodes(m.graph)).sum())
    assert n["edges"] == int(m.graph.real_mask().sum())
    assert c.num_nodes() == n["kept"] == sum(c.level_sizes)
    assert c.num_edges() == n["kept_edges"] <= n["edges"]


@pytest.mark.parametrize("name, mode, edges, image_size, in_channels", [
    ("micro", "dnw", 300, 8, 3), ("micro", "fixed", 120, 28, 1), ("micro", "complete", None, 16, 3),
    ("micro", "td", 60, 8, 3), ("micro", "dnw", 17, 8, 3), ("micro", "dnw", 3, 8, 3),
    ("tiny", "dnw", 3000, 32, 3)])
def test_compact_tiny_equals_training_model_in_eval_mode(name, mode, edges, image_size, in_channels):
    m = tiny_trained(name, steps=2 if name == "micro" else 1, image_size=image_size, in_channels=in_channels,
                     mode=mode, edges=edges)
    c = compact_model(m)
    assert type(c).__name__ == "CompactTiny" and c.meta["image_size"] == image_size
    x = batch(3, image_size)[:, :in_channels]
    with torch.no_grad():
        expected, got = m(x), c(x)
    assert got.shape == expected.shape == (3, 10)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    check_counts(m, c)
    assert c.num_parameters() < sum(p.numel() for p in m.parameters())


def test_compact_tiny_removes_dead_nodes_of_a_sparse_wiring():
    """At ~0.5% density many nodes of the tiny classifier have no path to an output or from an input."""
    m = tiny_trained("tiny", steps=0, image_size=8, edges=1500)
    with torch.no_grad():                      # non-zero biases: constant nodes emit non-zero maps
        for op in m.node_ops:
            op.norm_bias.uniform_(0.1, 0.5)
    c = compact_model(m)
    check_counts(m, c)
    n = c.counts
    assert n["dead"] > 100 and n["constant"] > 100 and n["kept"] < 600
    assert any(getattr(c, f"const{l}").numel() for l in range(1, 5))
    with torch.no_grad():
        assert torch.allclose(c(batch(2)), m(batch(2)), atol=1e-5, rtol=1e-5)


def hand_tiny():
    """A tiny classifier on levels [2, 3, 3] + 2 outputs (nodes 0-1 | 2-4 | 5-7 | 8-9) with 11 real edges:
    node 3 is dead (no out-edge), 4 and 7 are constant (no input reaches them) but reach the outputs."""
    from models.tiny import TinyClassifier

    torch.manual_seed(0)
    m = TinyClassifier(in_channels=1, num_classes=3, image_size=8, edges=11, levels=(2, 3, 3), outputs=2)
    layer = m.graph
    ei = layer.edge_index.t().tolist()
    weight = torch.full((layer.num_candidates,), 0.01)
    edges = [(0, 2), (1, 2), (1, 3), (2, 5), (2, 6), (4, 5), (4, 7), (5, 8), (6, 9), (7, 9), (0, 9)]
    for u, v in edges:
        weight[ei.index([u, v])] = 1.0 if (u + v) % 2 else -1.0
    with torch.no_grad():
        layer.weight.copy_(weight)
        for op in m.node_ops:
            op.norm_weight.uniform_(0.5, 1.5)
            op.norm_bias.uniform_(0.2, 0.6)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_hand_made_tiny_dead_and_constant_nodes():
    m = hand_tiny()
    c = compact_model(m)
    assert c.counts == {"nodes": 10, "dead": 1, "constant": 2, "kept": 7, "edges": 11, "kept_edges": 7}
    assert c.level_sizes == [2, 1, 2, 2]
    assert c.stem_pw_weight.shape == (2, 1)
    assert c.const1.numel() == 0                      # node 2's sources are inputs
    assert c.const2.shape == (2, 64)                  # node 5 gets node 4's constant map, node 6 nothing
    assert bool(c.const2[0].abs().sum() > 0) and bool(c.const2[1].eq(0).all())
    # stem 9+1+9+1+2+2, node ops 2*11+11+2*11, 7 edges, 2*64 constants, head 3*2+3
    assert c.num_parameters() == 24 + 55 + 7 + 128 + 9
    # the inference network as wiring.train / profile / compact print it (models.cost): the trained
    # stem (30, BatchNorm unfolded), the 7 live node ops, the 10 real edges into live nodes, the head
    assert profile_model(m, in_channels=1, image_size=8)["params"] == 30 + 7 * 11 + 10 + 9
    check_counts(m, c)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(c(x), m(x), atol=1e-5, rtol=1e-5)
        # the constant nodes matter: with node 4's map left out the logits differ
        c.const2.zero_()
        assert not torch.allclose(c(x), m(x), atol=1e-3)


def test_compact_tiny_dense_and_sparse_edges_agree():
    m = tiny_trained("micro", edges=400)
    from wiring.compact.extract import tiny_state
    from wiring.compact.runtime import CompactTiny

    state = tiny_state(m)
    dense, sparse = CompactTiny(state, dense_fill=0.0).eval(), CompactTiny(state, dense_fill=2.0).eval()
    x = batch(3)
    with torch.no_grad():
        a, b = dense(x), sparse(x)
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5) and torch.allclose(a, m(x), atol=1e-5, rtol=1e-5)
    layouts = {str(e.layout) for e in dense._plan(x.device, x.dtype)["edges"] if e is not None}
    assert layouts == {"torch.strided"}
    layouts = {str(e.layout) for e in sparse._plan(x.device, x.dtype)["edges"] if e is not None}
    assert layouts == {"torch.sparse_csr"}


def test_compact_tiny_reuses_its_buffers_safely():
    m = tiny_trained("micro", edges=300)
    c = compact_model(m)
    x3, x5 = batch(3), batch(5)
    with torch.no_grad():
        first = c(x3)
        kept = first.clone()
        c(x5)
        again = c(x3)
        assert torch.equal(first, kept) and torch.equal(again, first)       # outputs are not work buffers
        assert torch.allclose(c(x5), m(x5), atol=1e-5, rtol=1e-5)
        with torch.inference_mode():
            assert torch.allclose(c(x3), first, atol=1e-6)
    assert torch.allclose(c(x3), first, atol=1e-6)                            # grad mode, plain input
    with pytest.raises(RuntimeError, match="inference-only"):
        c(x3.clone().requires_grad_())


def test_compact_tiny_round_trip_with_weights_only(tmp_path):
    m = hand_tiny()
    c = compact_model(m)
    save_compact(c, tmp_path / "tiny.pt")
    state = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert state["format"] == "wiring-compact-tiny" and state["version"] == 1
    assert state["counts"]["kept"] == 7 and state["level_sizes"] == [2, 1, 2, 2]
    loaded = load_compact(tmp_path / "tiny.pt")
    assert type(loaded).__name__ == "CompactTiny" and not loaded.training
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), c(x))


def test_load_compact_refuses_other_files(tmp_path):
    torch.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a compact model"):
        load_compact(tmp_path / "x.pt")


# ----------------------------------------------------------------------------- from a run directory

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as wiring.train leaves it (config, data_info, model state), written
    directly to keep the test fast; the registry gets narrow nodes for the time of the module."""
    factory = models.MODELS["mobilenetv1_dnw_small"].factory        # imports the module, binds the factory
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(models.registry._FACTORIES, "mobilenetv1_dnw_small", functools.partial(factory, node_width=0.0625))
        yield checkpoint_run(tmp_path_factory.mktemp("compact") / "run",
                             ["--model", "mobilenetv1_dnw_small", "--width", "0.03125"],
                             prepare=lambda m: calibrate(m, 1))


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
    assert err.startswith("python -m wiring.compact: error: ") and err.count("\n") == 1 and "missing" in err


@pytest.fixture(scope="module")
def micro_run_dir(tmp_path_factory):
    """A static micro classifier's run directory (digits, 8x8, one channel), written directly."""
    return checkpoint_run(tmp_path_factory.mktemp("compact_micro") / "run", ["--model", "micro", "--edges", "200"],
                          prepare=lambda m: calibrate(m, 1))


def test_cli_compacts_a_tiny_classifier_run(micro_run_dir, capsys):
    out = micro_run_dir / "micro.pt"
    assert main([str(micro_run_dir), "-o", str(out), "--repeats", "2", "--batch", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "max |logit difference|" in captured.out and "66 nodes -> " in captured.out
    model = load_compact(out)
    assert type(model).__name__ == "CompactTiny" and model.meta["image_size"] == 8
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert export_main([str(micro_run_dir), "--compact"]) == 0
    assert (micro_run_dir / "compact.pt").is_file()
