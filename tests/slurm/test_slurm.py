"""wiring.study --executor slurm and wiring.train --submit slurm against a real Slurm (issue 27).

The fixture starts a one-node Slurm on this machine (tests/slurm/start_slurm.sh: slurmctld,
slurmd and munge on localhost) and skips with the script's reason where it cannot (not root,
Debian's slurm-wlm / munge not installed). The cells are micro graphs on a few hundred digits,
one epoch, one cpu each.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from processes import process_env, run_main

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "tests" / "slurm" / "start_slurm.sh"
STUDY = {"name": "slurm", "base": {"data": "digits", "model": "micro", "epochs": 1, "batch-size": 32,
                                   "train-subset": 400, "test-subset": 200},
         "grid": {"mode": ["dnw", "fixed"], "edges": [100], "seed": [0, 1]}}
#: what a cell computed: equal whichever executor ran it
SAME = ("cell", "status", "test_acc", "best_acc", "epochs", "curve", "loss", "swapped", "density", "real_edges",
        "depth", "dead", "wiring", "settings")


@pytest.fixture(scope="module")
def slurm():
    pytest.importorskip("submitit", reason="needs the submitit package (pip install 'wiring[slurm]')")
    started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        pytest.skip(f"no local Slurm: {started.stderr.strip().splitlines()[-1] if started.stderr.strip() else 'start_slurm.sh failed'}")
    return True


def records(path: Path) -> dict[str, dict]:
    return {r["cell"]: {k: r.get(k) for k in SAME} for r in map(json.loads, path.read_text().splitlines())}


def squeue_names() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.strip()}


def test_a_study_through_sbatch_gives_the_results_of_the_local_executors(slurm, tmp_path, one_thread):
    from wiring.study.command import main

    config = tmp_path / "slurm.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "slurm-out"
    proc = subprocess.Popen([sys.executable, "-m", "wiring.study", str(config), "--out", str(out),
                             "--executor", "slurm", "--cpus-per-cell", "1", "--time", "10"],
                            cwd=tmp_path, env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: set[str] = set()
    while proc.poll() is None:                 # the cells' jobs, as Slurm lists them
        seen |= squeue_names()
        time.sleep(0.2)
    text, err = proc.communicate()
    assert proc.returncode == 0, err
    cells = ["static-dnw-100-s0", "static-dnw-100-s1", "static-fixed-100-s0", "static-fixed-100-s1"]
    jobs = dict(re.findall(r"(static-\S+): submitted as Slurm job (\d+)", text))
    assert sorted(jobs) == cells, text
    assert {f"wiring-{c}" for c in cells} & seen, (seen, text)       # visible in squeue while it ran
    for cell, job in jobs.items():
        assert (out / "submitit" / job / f"{job}_submission.sh").is_file()
        assert (out / cell / "wiring.graphml").is_file()
    slurm_records = records(out / "results.jsonl")
    assert run_main(main, [config, "--out", tmp_path / "jobs-out", "--executor", "jobs"]) == 0
    assert slurm_records == records(tmp_path / "jobs-out" / "results.jsonl")       # cell for cell
    assert len({r["test_acc"] for r in slurm_records.values()}) > 1                 # not all at chance
    assert (out / "results.md").read_text().count("| static |") == \
        (tmp_path / "jobs-out" / "results.md").read_text().count("| static |")


def test_the_local_executor_gives_the_same_results(slurm, tmp_path, one_thread):
    from wiring.study.command import main

    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({**STUDY, "grid": {"mode": ["dnw"], "edges": [100], "seed": [0, 1]}}))
    assert run_main(main, [config, "--out", tmp_path / "local", "--executor", "local"]) == 0
    assert run_main(main, [config, "--out", tmp_path / "jobs", "--executor", "jobs"]) == 0
    assert records(tmp_path / "local" / "results.jsonl") == records(tmp_path / "jobs" / "results.jsonl")


def test_a_killed_cell_job_is_resubmitted_and_continues_from_its_checkpoint(slurm, tmp_path):
    """scancel of a running cell's job (as a pre-emption): the study resubmits it and the new
    job resumes the cell from the checkpoint the stopped one wrote."""
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump({**STUDY, "base": {**STUDY["base"], "epochs": 8, "batch-size": 8,
                                                        "train-subset": None},
                                      "grid": {"mode": ["dnw"], "edges": [100], "seed": [0]}}))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "wiring.study", str(config), "--out", str(out),
                             "--executor", "slurm"], cwd=tmp_path, env=process_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "static-dnw-100-s0" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and not metrics.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    job = next((line.split()[0] for line in subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True,
                text=True).stdout.splitlines() if "wiring-static-dnw-100-s0" in line), None)
    assert job, "the cell's job is not in squeue"
    subprocess.run(["scancel", job], check=True)
    text, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resubmitted (continues from its checkpoint)" in text, text
    assert "resume" in (out / "logs" / "static-dnw-100-s0.log").read_text()
    final = json.loads(metrics.read_text().splitlines()[-1])
    assert final["epoch"] == 8 and (out / "static-dnw-100-s0" / "wiring.graphml").is_file()


def test_one_run_through_train_submit_slurm(slurm, tmp_path):
    run_dir = tmp_path / "runs" / "one"
    done = subprocess.run([sys.executable, "-m", "wiring.train", "--submit", "slurm", "--cpus", "1", "--data",
                           "digits", "--model", "micro", "--edges", "100", "--epochs", "1", "--train-subset",
                           "300", "--progress", "none", "--out", str(run_dir)], cwd=tmp_path, env=process_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    job = re.search(r"as Slurm job (\d+)", done.stdout).group(1)
    deadline = time.monotonic() + 240
    while not (run_dir / "wiring.graphml").is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (run_dir / "wiring.graphml").is_file()
    assert (tmp_path / "runs" / "submitit" / job / f"{job}_submission.sh").is_file()
    bad = subprocess.run([sys.executable, "-m", "wiring.train", "--submit", "slurm", "--epochs", "0"], cwd=tmp_path,
                         env=process_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--epochs" in bad.stderr
