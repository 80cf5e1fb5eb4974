"""Default run-folder names (wiring.io.run_folder_name): every setting that differs from the
defaults names the folder, so the README's commands do not collide; the default run keeps its
name, and ``--resume`` finds a folder whatever ``--epochs`` it is given now."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from processes import run_main
from wiring.train.config import parse_config
from wiring.train.pipeline import default_run_dir, main

TINY = ["--model", "micro", "--edges", "100", "--train-subset", "128", "--test-subset", "64", "--batch-size", "64",
        "--progress", "none"]


def folders(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "runs").iterdir())


def test_the_default_run_keeps_its_name_and_the_readmes_variants_get_their_own():
    assert default_run_dir(parse_config([])) == Path("runs/digits-tiny-random_k-dnw-12000-s0")
    names = {str(default_run_dir(parse_config(argv))) for argv in (
        [], ["--epochs", "1"], ["--setting", "continuous", "--solver", "dopri5"],
        ["--setting", "continuous", "--solver", "rk4", "--ode-steps", "2"],
        ["--data", "fashion-mnist", "--epochs", "20"],
        ["--data", "fashion-mnist", "--train-subset", "3000", "--test-subset", "1000"],
        ["--mode", "set", "--update-every", "20", "--drop-fraction", "0.5", "--drop-schedule", "constant"])}
    assert len(names) == 7, names
    assert "runs/digits-tiny-continuous-random_k-dnw-12000-s0-rk4-ode2" in names
    assert "runs/fashion-mnist-tiny-random_k-dnw-12000-s0-sub3000-test1000" in names
    # settings that may change on --resume (and where the data lies) do not name a run
    assert default_run_dir(parse_config(["--progress", "lines", "--backend", "torch", "--data-dir", "/x"])) == \
        Path("runs/digits-tiny-random_k-dnw-12000-s0")


@pytest.mark.skipif(importlib.util.find_spec("torchdiffeq") is None,
                    reason="the continuous setting needs torchdiffeq")
def test_the_readmes_rk4_then_dopri5_runs_no_longer_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [*TINY, "--setting", "continuous", "--epochs", "1"]
    assert run_main(main, [*common, "--solver", "rk4", "--ode-steps", "2"]) == 0
    assert run_main(main, [*common, "--solver", "dopri5"]) == 0      # before: "already exists", exit 2
    assert folders(tmp_path) == ["digits-micro-continuous-random_k-dnw-100-s0-rk4-ode2-sub128-test64-b64-e1",
                                 "digits-micro-continuous-random_k-dnw-100-s0-sub128-test64-b64-e1"]


def test_resume_finds_the_run_whatever_its_epochs_and_refuses_to_guess(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_main(main, [*TINY, "--epochs", "1"]) == 0
    assert run_main(main, [*TINY, "--epochs", "2", "--resume"]) == 0   # the -e1 folder, trained on to 2 epochs
    assert folders(tmp_path) == ["digits-micro-random_k-dnw-100-s0-sub128-test64-b64-e1"]
    metrics = tmp_path / "runs" / folders(tmp_path)[0] / "metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert run_main(main, [*TINY, "--epochs", "2"]) == 0                # a new 2-epoch run: its own folder
    capsys.readouterr()
    assert run_main(main, [*TINY, "--epochs", "3", "--resume"]) == 2    # two runs would fit: say so, guess none
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "several runs match" in err[0] and "--out" in err[0], err
