"""wiring.train.allocator: glibc's malloc keeps large freed blocks (Linux only)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wiring.train.allocator import tune_malloc

MEASURE = """
import resource, torch
from wiring.train.allocator import tune_malloc
def step():   # what a training step does to the heap: 100 MB of tensors live at once, then all freed
    blocks = [torch.ones(5_000_000) for _ in range(5)]
    del blocks
assert tune_malloc() is True
for _ in range(3):
    step()                                  # the heap grows to the step's peak
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_malloc_serves_a_repeated_step_from_warm_memory():
    # a fresh process: the page faults of this one depend on every test that ran before
    done = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    faults = int(done.stdout.split()[-1])
    # glibc's defaults trim the freed top of the heap after every step: ~34,000 faults here
    assert faults < 20_000_000 // 4096                 # less than one 20 MB block's pages


def test_tune_malloc_is_a_no_op_elsewhere(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tune_malloc() is False
