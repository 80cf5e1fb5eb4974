"""Distributed training with torchrun on CPU (gloo over loopback)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wiring.train.distributed import DistInfo, GlobalBatchNorm, same_on_all_ranks, shard, wiring_hash
from wiring.train.pipeline import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--model", "micro", "--edges", "100", "--epochs", "2", "--batch-size", "256", "--seed", "3",
        "--progress", "none"]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_process_and_write_one_run_directory(tmp_path):
    single = tmp_path / "single"
    assert main([*ARGS, "--out", str(single)]) == 0
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "wiring.train", *ARGS, "--out", "ddp",
           "--check-wiring-every", "1"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1 and "ranks       2 (gloo)" in proc.stdout
    assert sorted(p.name for p in work.iterdir()) == ["ddp"]          # one run directory, nothing else
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(work / "ddp" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"]
    assert torch.equal(a["model"]["graph.frozen_mask"], b["model"]["graph.frozen_mask"])
    for key, value in a["model"].items():
        if value.is_floating_point():
            assert torch.allclose(value, b["model"][key], atol=2e-4, rtol=1e-3), key
    wa = torch.topk(a["model"]["graph.weight"].abs(), 100).indices.sort().values
    wb = torch.topk(b["model"]["graph.weight"].abs(), 100).indices.sort().values
    assert torch.equal(wa, wb), "the learned wiring must be the same"
    # the README's tolerance: not bit for bit (the ranks sum gradients in another order), but the
    # epoch-1 loss within 1e-4 of the single process's, relative
    loss = [[json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (single, work / "ddp")]
    assert len(loss[0]) == len(loss[1]) == 2
    assert abs(loss[0][0] - loss[1][0]) <= 1e-4 * abs(loss[0][0]), loss


def torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m wiring.train ARGS`` on CPU (gloo), run in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "wiring.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("case", ["existing run folder", "bad flag value"])
def test_under_torchrun_one_rank_says_a_mistake_and_every_rank_exits_2(tmp_path, case):
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "config.yaml").write_text("seed: 0\n")         # a run stopped before its first checkpoint
    bad = ["--out", "ex"] if case == "existing run folder" else ["--out", "new", "--lr", "nan"]
    proc = torchrun(tmp_path, *ARGS, *bad)
    said = proc.stdout + proc.stderr
    ours = [line for line in said.splitlines() if "error:" in line]
    assert said.count("error:") == len(ours) == 1 and ours[0].startswith("python -m wiring.train: error: "), \
        proc.stderr[-3000:]
    assert ("holds a run stopped before its first checkpoint" if case == "existing run folder" else "--lr") in ours[0]
    # torchrun's own summary follows: both ranks exited 2, none was stopped by its SIGTERM
    codes = re.findall(r"exitcode\s+: (-?\d+)", proc.stderr)     # per rank, in the summary
    assert proc.returncode != 0 and sorted(codes) == ["2", "2"], proc.stderr[-3000:]
    assert "SIGTERM)" not in proc.stderr and "interrupted" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex"]
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["config.yaml"]    # nothing written


def _worker(rank: int, world: int, init: str, results) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    mask = torch.zeros(50, dtype=torch.bool)
    mask[[1, 5, 9]] = True
    results[f"same{rank}"] = same_on_all_ranks(wiring_hash(mask), torch.device("cpu"))
    if rank == 1:
        mask[9], mask[10] = False, True                   # rank 1 swaps one edge
    results[f"differ{rank}"] = same_on_all_ranks(wiring_hash(mask), torch.device("cpu"))
    bn = GlobalBatchNorm(3)
    x = torch.arange(24, dtype=torch.float32).view(8, 3) * (rank + 1)
    results[f"bn{rank}"] = bn(x).detach()
    results[f"mean{rank}"] = bn.running_mean.clone()
    dist.destroy_process_group()


def test_wiring_check_and_global_batch_norm_across_two_processes(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", results), nprocs=2, join=True)
    assert results["same0"] and results["same1"]
    assert not results["differ0"] and not results["differ1"]
    full = torch.cat([torch.arange(24, dtype=torch.float32).view(8, 3) * r for r in (1, 2)])
    expected = torch.nn.functional.batch_norm(full, None, None, training=True)
    assert torch.allclose(torch.cat([results["bn0"], results["bn1"]]), expected, atol=1e-5)
    assert torch.allclose(results["mean0"], 0.1 * full.mean(0)) and torch.equal(results["mean0"], results["mean1"])


def test_shard_splits_every_global_batch_contiguously():
    idx = torch.arange(7)
    parts = [shard(idx, DistInfo(r, 3)).tolist() for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert shard(idx, DistInfo()).tolist() == list(range(7))


def test_wiring_hash_tells_masks_apart():
    a = torch.zeros(100, dtype=torch.bool)
    a[[3, 40, 77]] = True
    b = a.clone()
    b[77], b[78] = False, True
    assert wiring_hash(a) == wiring_hash(a.clone()) != wiring_hash(b)
