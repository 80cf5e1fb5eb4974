"""What a training process prints while it runs, read from its stdout as a pipe (a log):
the epoch line (with the continuous setting's ``nfe``) and, inside an epoch, a progress line
every ``--progress-every`` seconds."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import process_env

ROOT = Path(__file__).resolve().parents[2]
MICRO = ["--model", "micro", "--data", "digits", "--edges", "300", "--epochs", "1", "--test-subset", "128"]


def train(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m wiring.train`` in a real process whose stdout and stderr are pipes."""
    return subprocess.run([sys.executable, "-m", "wiring.train", *MICRO, "--out", str(tmp_path / "run"), *extra],
                          cwd=ROOT, env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=300)


@pytest.mark.skipif(importlib.util.find_spec("torchdiffeq") is None,
                    reason="the continuous setting needs torchdiffeq")
def test_the_continuous_settings_epoch_line_names_its_function_evaluations(tmp_path):
    proc = train(tmp_path, "--setting", "continuous", "--solver", "rk4", "--ode-steps", "1",
                 "--train-subset", "256", "--batch-size", "128")
    assert proc.returncode == 0, proc.stderr
    epoch = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch) == 1, proc.stdout
    assert epoch[0].endswith("  nfe 4"), epoch       # rk4, one step: four evaluations per forward


def test_the_static_settings_epoch_line_has_no_nfe(tmp_path):
    proc = train(tmp_path, "--train-subset", "256", "--batch-size", "128", "--progress", "lines")
    assert proc.returncode == 0, proc.stderr
    epoch = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch) == 1 and "nfe" not in epoch[0], proc.stdout


@pytest.mark.parametrize("progress", ["auto", "lines"])
def test_a_log_shows_the_epoch_under_way_every_progress_every_seconds(tmp_path, progress):
    """Not a terminal: auto means lines; with a tiny interval, steps of the epoch print lines
    (``  epoch 1/1 loss L acc A  batch i/16``) before the epoch's own line."""
    proc = train(tmp_path, "--train-subset", "1024", "--batch-size", "64", "--progress", progress,
                 "--progress-every", "0.000001")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    under_way = [(i, int(m.group(1))) for i, line in enumerate(lines)
                 if (m := re.fullmatch(r"  epoch 1/1 loss \d+\.\d{4} acc \d\.\d{3}  batch (\d+)/16", line))]
    assert len(under_way) >= 8, proc.stdout
    batches = [b for _, b in under_way]
    assert batches == sorted(set(batches)) and batches[-1] <= 16
    end = next(i for i, line in enumerate(lines) if line.startswith("epoch   1/1"))
    assert all(i < end for i, _ in under_way)
    assert "\r" not in proc.stdout + proc.stderr                       # no bar drawn into a log


@pytest.mark.parametrize("extra", [["--progress", "none"], ["--progress-every", "100000"]])
def test_no_progress_lines_with_progress_none_or_before_the_interval(tmp_path, extra):
    proc = train(tmp_path, "--train-subset", "256", "--batch-size", "64", "--progress-every", "0.000001", *extra)
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"^  epoch .* batch \d+/\d+$", proc.stdout, re.M), proc.stdout


def test_progress_every_must_be_positive(tmp_path):
    proc = train(tmp_path, "--progress-every", "0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("python -m wiring.train: error: --progress-every: must be positive")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "run").exists()
