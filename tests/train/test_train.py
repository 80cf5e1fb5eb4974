"""End-to-end training: the CLI, the run directory, the wiring invariants, resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import torch
import yaml

from models import create_model
from wiring.io import WiringHistory, read_graphml
from wiring.train.pipeline import main
from wiring.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--model", "micro", "--data", "digits", "--batch-size", "256", "--progress", "none"]


def train(tmp_path: Path, *extra: str, name: str = "run") -> Path:
    out = tmp_path / name
    assert main([*FAST, "--out", str(out), *extra]) == 0
    return out


def digits_batches(n_batches: int = 4, batch: int = 64):
    from wiring.train.data import load_dataset
    train_set, test_set, _ = load_dataset("digits")
    x, y = train_set.tensors
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n_batches)], test_set


def interrupt_in_second_epoch(monkeypatch, argv: list[str]) -> None:
    """Run ``main(argv)`` and stop it as Ctrl-C would, during its second epoch."""
    real_train_epoch = Trainer.train_epoch

    def killed_in_second_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real_train_epoch(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", killed_in_second_epoch)
        assert main(argv) == 130


class KCheck:
    """Hook asserting the invariants after every step and recording the real sets."""

    def __init__(self):
        self.masks = []

    def on_step(self, trainer):
        for layer in trainer.wirings.values():
            mask = layer.real_mask()
            assert int(mask.sum()) == layer.k
            self.masks.append(mask)


def run_steps(mode: str, epochs: int = 2, lr: float = 0.5):
    from wiring.train.data import load_dataset
    torch.manual_seed(0)
    train_set, test_set, info = load_dataset("digits")
    model = create_model("micro", in_channels=1, num_classes=10, image_size=8, edges=150, mode=mode)
    check = KCheck()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    trainer = Trainer(model, opt, train_set, test_set, epochs=epochs, batch_size=128, hooks=[check])
    trainer.fit()
    return check.masks, trainer


def test_exactly_k_real_edges_every_step_and_dnw_swaps():
    masks, trainer = run_steps("dnw")
    assert len(masks) == trainer.step > 10
    swaps = sum(int((a & ~b).sum()) for a, b in zip(masks[1:], masks[:-1]))
    assert swaps > 0, "DNW should swap hallucinated edges in"
    assert sum(m["swapped"] for m in trainer.history) > 0


def test_fixed_never_swaps_and_no_update_gets_no_hallucinated_gradient():
    masks, trainer = run_steps("fixed", lr=0.1)      # lr 0.5 diverged (NaN at step 24) on some CPUs
    assert all(torch.equal(masks[0], m) for m in masks)
    assert all(m["swapped"] == 0 for m in trainer.history)
    layer = next(iter(trainer.wirings.values()))
    assert layer.weight.grad is not None
    assert torch.count_nonzero(layer.weight.grad[~layer.real_mask()]) == 0


def test_cli_writes_a_complete_readable_run_directory(tmp_path, capsys):
    out = train(tmp_path, "--epochs", "2", "--edges", "120", "--snapshot-every", "2")
    printed = capsys.readouterr().out
    assert "edges       k = 120" in printed and "density" in printed
    assert "test accuracy" in printed and str(out / "wiring.graphml") in printed
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["edges"] == 120 and config["model"] == "micro"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in ("loss", "train_acc", "test_acc", "lr", "seconds", "swapped", "edges", "density", "depth", "dead"):
        assert key in metrics[0]
    assert metrics[0]["edges"] == 120
    for name in ("checkpoint.pt", "best.pt"):
        state = torch.load(out / name, weights_only=True)
        assert state["config"]["edges"] == 120 and state["step"] > 0
        assert "initial_model" in state and "data_info" in state
    for name in ("wiring.graphml", "initial.graphml"):
        G = nx.read_graphml(out / name)
        assert G.number_of_edges() == 120
        assert nx.is_directed_acyclic_graph(G)
        assert G.graph["k"] == 120 and G.graph["mode"] == "dnw"
    history = WiringHistory.load(out / "history.pt")
    steps_per_epoch = -(-1437 // 256)
    assert history.steps[0] == 0 and history.steps[-1] == 2 * steps_per_epoch
    assert all(len(history.real_index(i)) == 120 for i in range(len(history)))
    final = read_graphml(out / "wiring.graphml")
    assert final.attrs["step"] == 2 * steps_per_epoch


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    whole = train(tmp_path, "--epochs", "2", "--edges", "100", name="whole")
    part = tmp_path / "part"
    interrupt_in_second_epoch(monkeypatch, [*FAST, "--out", str(part), "--epochs", "2", "--edges", "100"])
    assert torch.load(part / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert main([*FAST, "--out", str(part), "--epochs", "2", "--edges", "100", "--resume"]) == 0
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert b["step"] == a["step"] and b["epoch"] == 2
    metrics = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-5), key
    history = WiringHistory.load(part / "history.pt")
    assert history.steps == sorted(set(history.steps))


def test_fine_tune_and_lottery_start_from_a_trained_run(tmp_path):
    source = train(tmp_path, "--epochs", "1", "--edges", "100", name="source")
    trained = torch.load(source / "checkpoint.pt", weights_only=True)["model"]["graph.weight"]
    top = torch.topk(trained.abs(), 100).indices.sort().values
    for mode in ("fine_tune", "lottery"):
        out = train(tmp_path, "--epochs", "1", "--edges", "100", "--mode", mode, "--from", str(source),
                    "--lr", "0.01", name=mode)
        initial = read_graphml(out / "initial.graphml")
        final = read_graphml(out / "wiring.graphml")
        assert torch.equal(initial.edge_index, final.edge_index), "the frozen wiring must not change"
        cands = create_model("micro", in_channels=1, image_size=8, edges=100).graph.edge_index
        assert torch.equal(initial.edge_index, cands[:, top])


@pytest.mark.parametrize("args, message", [
    (["--edges", "0"], "--edges"),
    (["--edges", "999999"], "more than the"),
    (["--mode", "fine_tune"], "--from"),
    (["--data", "cifar10", "--data-dir", "/nonexistent"], "cifar"),
    (["--graph", "graphml"], "--graph-file"),
    (["--lr", "-1"], "--lr"),
    (["--train-subset", "0"], "--train-subset"),
    (["--test-subset", "999999"], "subset of 999999 images"),
    (["--setting", "continuous", "--ode-steps", "0"], "--ode-steps"),
])
def test_user_mistakes_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main([*FAST, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message.lower() in err.lower() and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_existing_run_directory_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    out = train(tmp_path, "--epochs", "1", "--edges", "100")
    before = (out / "metrics.jsonl").read_text()
    assert main([*FAST, "--out", str(out), "--epochs", "1", "--edges", "100"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == before
    assert main([*FAST, "--out", str(out), "--epochs", "1", "--edges", "100", "--overwrite"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_with_different_settings_names_them(tmp_path, capsys):
    out = train(tmp_path, "--epochs", "1", "--edges", "100")
    assert main([*FAST, "--out", str(out), "--epochs", "2", "--edges", "90", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "edges" in err and "100" in err and "90" in err


def test_yaml_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: micro\nedges: 77\nepochs: 1\nbatch-size: 512\nprogress: none\n")
    out = tmp_path / "run"
    assert main(["--config", str(cfg), "--out", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["edges"] == 77


def test_complete_mode_uses_every_candidate(tmp_path):
    out = train(tmp_path, "--epochs", "1", "--mode", "complete")
    G = nx.read_graphml(out / "wiring.graphml")
    assert G.number_of_edges() == 1712 == G.graph["k"]


def test_cli_user_mistake_in_a_subprocess_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wiring.train", *FAST, "--edges", "-3",
                           "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--edges" in proc.stderr


def test_non_finite_weight_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_step = torch.optim.SGD.step

    def poisoned_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        poisoned_step.calls += 1
        if poisoned_step.calls == 8:                       # in the second epoch (6 steps per epoch)
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return result

    poisoned_step.calls = 0
    monkeypatch.setattr(torch.optim.SGD, "step", poisoned_step)
    assert main([*FAST, "--out", str(out), "--epochs", "3", "--edges", "100"]) == 1
    err = capsys.readouterr().err
    assert "non-finite at step 8" in err and "Traceback" not in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 6
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_debug_checks_invariants_every_step(monkeypatch):
    from wiring.layer import WiredGraph
    calls = []
    real = WiredGraph.check_invariants
    monkeypatch.setattr(WiredGraph, "check_invariants", lambda self: calls.append(1) or real(self))
    from wiring.train.data import load_dataset
    train_set, test_set, _ = load_dataset("digits")
    model = create_model("micro", in_channels=1, num_classes=10, image_size=8, edges=100)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    Trainer(model, opt, train_set, test_set, epochs=1, batch_size=512, debug=True).fit()
    assert len(calls) == 3 + 1                              # 3 steps, then the epoch check
    calls.clear()
    Trainer(model, opt, train_set, test_set, epochs=1, batch_size=512).fit()
    assert len(calls) == 1


def test_complete_mode_run_resumes_with_its_original_command(tmp_path):
    out = train(tmp_path, "--epochs", "1", "--mode", "complete")
    assert main([*FAST, "--out", str(out), "--epochs", "2", "--mode", "complete", "--resume"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_resume_needs_only_the_run_directory(tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupt_in_second_epoch(monkeypatch, [*FAST, "--out", str(out), "--epochs", "2", "--edges", "90", "--seed", "4"])
    assert main(["--out", str(out), "--resume", "--progress", "none"]) == 0       # no other flag repeated
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["edges"] == 90 and state["config"]["seed"] == 4
    assert main(["--out", str(out), "--resume", "--epochs", "3", "--progress", "none"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_train_subset_trains_on_that_many_images_the_same_for_every_seed(tmp_path, capsys):
    a = train(tmp_path, "--epochs", "1", "--edges", "100", "--train-subset", "300", "--test-subset", "100", name="a")
    assert "300 train / 100 test" in capsys.readouterr().out
    b = train(tmp_path, "--epochs", "1", "--edges", "100", "--train-subset", "300", "--test-subset", "100",
              "--seed", "1", name="b")
    for run in (a, b):
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["train_subset"] == 300 and saved["test_subset"] == 100
        (line,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert line["img_s"] > 0
    from wiring.train.data import load_dataset, subset
    train_set = load_dataset("digits", seed=0)[0]
    picked = subset(train_set, 300).tensors[1]
    assert torch.equal(picked, subset(train_set, 300).tensors[1])      # fixed: not drawn from the run's seed


def test_a_run_saved_before_init_existed_resumes_with_kaiming(tmp_path):
    """Run folders and checkpoints without the "init" key were trained with kaiming: they resume
    with it (not with the new default, which would mix two initialisations in one run)."""
    out = train(tmp_path, "--epochs", "1", "--edges", "90", "--init", "kaiming")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["config"]["init"]
    torch.save(state, out / "checkpoint.pt")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["init"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["--out", str(out), "--resume", "--epochs", "2", "--progress", "none"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["init"] == "kaiming"
    from wiring.train.build import model_from_checkpoint
    assert model_from_checkpoint(state).graph.init == "kaiming"


def test_resume_reads_the_old_form_of_edges_once():
    """Checkpoints written before the effective k was recorded beside the config (no
    ``edges`` key) saved that k as the config's edges: every candidate for an all-real run.
    Such a run resumes; a new-form one, or an old one whose k was the --edges given, still
    refuses a different --edges."""
    from wiring.train.config import Config
    from wiring.train.pipeline import UsageError, check_resume_config

    cfg = Config(model="micro", mode="complete", epochs=1)
    old = {**cfg.to_dict(), "edges": 1712}
    check_resume_config(cfg, old, old_form=True)
    with pytest.raises(UsageError, match="edges: saved 1712"):
        check_resume_config(cfg, old, old_form=False)
    dnw = Config(model="micro", mode="dnw", edges=300, epochs=1)
    with pytest.raises(UsageError, match="edges: saved 200"):
        check_resume_config(dnw, {**dnw.to_dict(), "edges": 200}, old_form=True)
