"""Tests for wiring.train.checkpoint: atomic saves, weights-only loads, clear errors."""
from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wiring.train.checkpoint as checkpoint
from wiring.graph import static_graph
from wiring.layer import WiredGraph
from processes import process_env, run_main
from wiring.train.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint


def state(step=3):
    layer = WiredGraph(static_graph([2, 3, 1]), edges=4, seed=step)
    return {
        "model": layer.state_dict(),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
        "config": {"edges": 4, "mode": "dnw", "milestones": [80, 120], "from_run": None, "resume": False},
        "step": step,
        "rng": torch.get_rng_state(),
        "history": [1.5, 0.75],
    }


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt.pt"
    s = state()
    save_checkpoint(s, path)
    back = load_checkpoint(path)
    assert back["format_version"] == FORMAT_VERSION
    assert set(back) == set(s) | {"format_version"}
    assert set(back["model"]) == {"weight", "frozen_mask"}
    for key, value in s["model"].items():
        assert torch.equal(back["model"][key], value)
        assert back["model"][key].dtype == value.dtype
    assert torch.equal(back["rng"], s["rng"])
    assert back["config"] == s["config"] and back["step"] == 3 and back["history"] == [1.5, 0.75]
    assert back["optimizer"] == s["optimizer"]
    assert leftovers(tmp_path) == []
    # restores a layer's real set
    fresh = WiredGraph(static_graph([2, 3, 1]), edges=4, seed=99)
    fresh.load_state_dict(back["model"])
    assert torch.equal(fresh.real_mask(), WiredGraph(static_graph([2, 3, 1]), edges=4, seed=3).real_mask())


def test_load_uses_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(), path)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(path)
    assert seen.get("weights_only") is True


class Payload:
    """A pickled object of ours: a weights-only load must refuse it."""

    def __init__(self):
        self.value = 1


def test_pickled_objects_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(1), path)
    save_checkpoint(state(2), path)
    assert load_checkpoint(path)["step"] == 2
    assert leftovers(tmp_path) == []


def test_atomic_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(1), path)
    before = path.read_bytes()

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")      # some bytes hit the disk, then the process dies
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", torn_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(state(2), path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_atomic_write_interrupt_without_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(state(), path)
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(1), path)

    def no_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(checkpoint.os, "replace", no_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(state(2), path)
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    assert load_checkpoint(path)["step"] == 1


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path)                     # a folder is not a checkpoint


@pytest.mark.parametrize("content", [b"this is not a checkpoint", bytes(range(256)), b"PK\x03\x04"])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("obj", [{"weights": torch.zeros(3)}, [1, 2, 3], torch.zeros(2), {}])
def test_not_a_checkpoint(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="not a wiring checkpoint"):
        load_checkpoint(path)


def test_ordered_dict_state_accepted(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"model": collections.OrderedDict(w=torch.ones(2))}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))


# ----------------------------------------------------------------------------- format_version

#: a real checkpoint of ``python -m wiring.train --model micro --edges 90 --data digits --epochs 1
#: --train-subset 64 --test-subset 32 --batch-size 32 --seed 0`` (wiring 0.1.0, format 1), written
#: again with ``format_version`` 0: a format older than this wiring reads
OLD_FORMAT = Path(__file__).parent / "fixtures" / "checkpoint-format0.pt"


def run_with(tmp_path, format_version):
    """A run folder holding the fixture's checkpoint with ``format_version`` (None: the fixture's own)."""
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(OLD_FORMAT, weights_only=True)
    if format_version is not None:
        state["format_version"] = format_version
    torch.save(state, run / "checkpoint.pt")
    return run


def test_the_old_format_fixture_is_a_real_checkpoint_but_for_its_number(tmp_path):
    from wiring.train.build import model_from_checkpoint
    state = torch.load(OLD_FORMAT, weights_only=True)
    assert state["format_version"] == 0 and state["config"]["model"] == "micro"
    model = model_from_checkpoint(load_checkpoint(run_with(tmp_path, FORMAT_VERSION) / "checkpoint.pt"))
    assert model.graph.k == state["edges"] == 90


def test_an_older_format_is_refused_in_one_line_by_every_reader(tmp_path, capsys):
    """Was: format_version written but never read, so every reader took a format-0 file as its own."""
    from wiring.export import main as export_main
    from wiring.train.pipeline import main as train_main
    run = run_with(tmp_path, None)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = (f"{run / 'checkpoint.pt'} is checkpoint format 0 (written by wiring 0.1.0), older than format 1, the "
            f"one this wiring reads, which has no reader for it: use the version that wrote it, or train the run again")
    done = subprocess.run([sys.executable, "-m", "wiring.profile", "--run", str(run)], cwd=tmp_path, env=process_env(),
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"python -m wiring.profile: error: {line}\n")
    capsys.readouterr()
    assert run_main(export_main, [run]) == 2
    assert capsys.readouterr().err == f"python -m wiring.export: error: {line}\n"
    assert run_main(train_main, ["--out", run, "--resume", "--progress", "none"]) == 2
    assert capsys.readouterr().err == f"python -m wiring.train: error: {line}\n"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before          # nothing written


@pytest.mark.parametrize("number, words", [(2, "is checkpoint format 2 (written by wiring 0.1.0), newer than format 1"),
                                           ("1", "its format_version '1' is no format number"),
                                           (True, "its format_version True is no format number")])
def test_a_newer_or_unnumbered_format_is_refused(tmp_path, number, words):
    run = run_with(tmp_path, number)
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_checkpoint(run / "checkpoint.pt")


def test_a_checkpoint_without_format_version_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}}, path, tag=False)
    with pytest.raises(CheckpointError, match="not a wiring checkpoint \\(no format_version"):
        load_checkpoint(path)


def test_only_training_checkpoint_adds_the_run_keys():
    with pytest.raises(ValueError, match="config"):
        checkpoint.training_checkpoint({"model": {}, "config": {}}, config={}, data_info={}, edges=1)
    state = checkpoint.training_checkpoint({"model": {}}, config={"a": 1}, data_info={"channels": 1}, edges=3,
                                           run_id="r", initial_model={"w": torch.ones(1)})
    assert list(state) == ["model", "config", "version", "data_info", "edges", "run_id", "initial_model"]
