"""Tests for wiring.train --tensorboard (wiring.train.tblogger): the event file's scalars and wiring images,
a resumed run's repeated epochs purged, and the one-line message without the package."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from wiring.picture import wiring_picture
from wiring.train.pipeline import main

FAST = ["--model", "micro", "--data", "digits", "--batch-size", "256", "--progress", "none", "--edges", "100"]


def events(run: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_writes_epoch_scalars_and_the_wiring_picture(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main([*FAST, "--out", str(out), "--epochs", "2", "--tensorboard"]) == 0
    acc = events(out)
    tags = acc.Tags()
    for tag in ("loss/train", "loss/test", "accuracy/train", "accuracy/test", "lr", "wiring/churn", "wiring/dead",
                "wiring/depth", "wiring/density"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
        assert [e.step for e in acc.Scalars(tag)] == [1, 2]
    import json
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("accuracy/test")] == pytest.approx([r["test_acc"] for r in lines])
    assert [e.value for e in acc.Scalars("wiring/churn")] == [r["swapped"] for r in lines]
    assert [e.value for e in acc.Scalars("wiring/dead")] == [r["dead"] for r in lines]
    assert tags["images"] == ["wiring"] and [e.step for e in acc.Images("wiring")] == [1, 2]
    image = acc.Images("wiring")[0]
    assert (image.width, image.height) == (640, 360)


def test_resumed_run_logs_each_epoch_once(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main([*FAST, "--out", str(out), "--epochs", "1", "--tensorboard"]) == 0
    assert main([*FAST, "--out", str(out), "--epochs", "3", "--resume", "--tensorboard"]) == 0
    assert [e.step for e in events(out).Scalars("loss/train")] == [1, 2, 3]


def test_without_the_package_one_line_and_nothing_written(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    assert main([*FAST, "--out", str(out), "--epochs", "1", "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tensorboard: needs the tensorboard package: pip install tensorboard" in err[0], err
    assert not out.exists()


def test_wiring_picture_from_plain_tensors():
    from wiring.graph import static_graph
    g = static_graph([2, 3, 1])
    weight = torch.linspace(-1, 1, g.num_candidates)
    image = wiring_picture(g.level, g.role, g.edge_index, weight, size=(4, 2), dpi=50, strong=3)
    assert image.shape == (100, 200, 3) and image.dtype == np.uint8
    assert (image < 250).any() and (image == 255).mean() > 0.5  # drawn, and mostly background
