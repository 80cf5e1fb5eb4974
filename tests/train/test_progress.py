"""What a training process prints while it runs, read from its stdout as a pipe (a log):
the epoch line (with the continuous setting's ``nfe``)."""
from __future__ import annotations

import importlib.util
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
