"""Trust under fire (issue 17, the fault half): no silent wrong training, no shared run
directories, no code from data files, and a stop at any moment that resumes to the same run.

* ``--resume`` with another ``--epochs`` trains at the schedule of the new horizon.
* A run folder is locked for a training's life: a second process exits 2 naming the first.
* A CIFAR-10 batch is unpickled by an allow-list: a pickle that would run code is refused.
* A starting GraphML is the initial real set whatever its weights (0 and tiny ones too).
* ``--resume`` refuses a history or metrics file that is not its checkpoint's run's, and
  its history has the frames of an uninterrupted run; ``--overwrite`` removes exactly the
  run's files (:func:`wiring.io.run_files`).
* SIGTERM and SIGINT stop after the step under way with a checkpoint of that moment and one
  line (exit 143 / 130); SIGKILL leaves the last checkpoint (or none, and ``--resume`` starts
  over). Resumed after any of them, at moments inside and after epoch 1, a 2-epoch run ends
  with the metrics, edges, weights and history of an uninterrupted one, bit for bit.

Real processes and real signals where the fault is a process's; the ``micro`` model (66
nodes, 1,712 candidates) on the digits data with one thread.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models import create_model
from processes import kill9, process_env
from processes import run_main as run_command
from wiring.graph import Wiring, static_graph
from wiring.io import WiringHistory, load_metrics, read_graphml, run_files, write_graphml
from wiring.train.data import DataError, load_dataset
from wiring.train.pipeline import main
from wiring.train.trainer import Interrupted, StopRequest, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
ENV = process_env()
TIMEOUT = 240.0
MICRO = ["--model", "micro", "--edges", "100", "--progress", "none"]
NOT_COMPARED = {"seconds", "img_s", "run_id"}      # wall-clock time, and each run's identity


# ----------------------------------------------------------------------------- helpers

def run_main(argv) -> int:
    return run_command(main, argv)


def assert_one_clean_line(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]
    return lines[0]


def metrics(out: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in NOT_COMPARED} for m in load_metrics(out / "metrics.jsonl")]


def assert_same_run(a: Path, b: Path) -> None:
    """Two finished runs agree bit for bit: metrics (but time), learned wiring, weights,
    optimizer state, history."""
    assert metrics(a) == metrics(b)
    wa, wb = read_graphml(a / "wiring.graphml"), read_graphml(b / "wiring.graphml")
    assert wa.edge_index.tolist() == wb.edge_index.tolist() and torch.equal(wa.weight, wb.weight)
    sa, sb = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (a, b))
    assert (sa["epoch"], sa["step"]) == (sb["epoch"], sb["step"]) and "position" not in sb
    assert sa["model"].keys() == sb["model"].keys()
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], sb["optimizer"]["state"][key]["momentum_buffer"]), key
    ha, hb = WiringHistory.load(a / "history.pt"), WiringHistory.load(b / "history.pt")
    assert ha.steps == hb.steps
    for i in range(len(ha)):
        fa, fb = ha.frame(i), hb.frame(i)
        assert torch.equal(ha.real_index(i), hb.real_index(i)) and torch.equal(fa.weight, fb.weight)
        assert torch.equal(fa.edge_index, fb.edge_index) and bool((fa.edge_index >= 0).all())


def spawn(argv, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wiring.train", *map(str, argv)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **kwargs)


def wait_for(proc: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            kill9(proc)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ----------------------------------------------------------------------------- 1. a changed --epochs

@pytest.mark.parametrize("schedule", ["cosine", "cosine_step"])
def test_resume_with_more_epochs_trains_at_the_schedule_of_the_new_horizon(tmp_path, schedule):
    """Was: lr [0.1, 0.0, 0.025] (the 1-epoch cosine's final 0 kept by the optimizer)."""
    args = [*MICRO, "--batch-size", "256", "--schedule", schedule]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_main([*args, "--epochs", 3, "--out", whole]) == 0
    assert run_main([*args, "--epochs", 1, "--out", part]) == 0
    assert run_main(["--out", part, "--resume", "--epochs", 3, "--progress", "none"]) == 0
    lrs = [m["lr"] for m in metrics(part)]
    if schedule == "cosine":             # epoch 1's rate does not depend on the horizon: the same run
        assert lrs == [m["lr"] for m in metrics(whole)] == pytest.approx([0.1, 0.075, 0.025])
        assert_same_run(whole, part)
    else:                                # every step's rate does: from the resume on, the 18-step curve
        # (an epoch's line shows the rate of its first step)
        curve = [0.1 * 0.5 * (1 + math.cos(math.pi * t / 18)) for t in range(18)]
        assert lrs == [m["lr"] for m in metrics(whole)] == pytest.approx([0.1, curve[6], curve[12]], rel=1e-12)


# ----------------------------------------------------------------------------- 2. one training per folder

def test_a_second_training_into_a_folder_in_use_exits_2_naming_the_holder(tmp_path):
    """Was: ``--overwrite`` deleted the running training's files and both wrote the folder.
    The holder is frozen (SIGSTOP) once it holds the folder, so what the second process finds
    does not depend on how far the holder got or how loaded the machine is."""
    out = tmp_path / "run"
    holder = spawn([*MICRO, "--batch-size", "64", "--epochs", 500, "--out", out])
    try:
        wait_for(holder, lambda: (out / "config.yaml").is_file(), "the holder wrote its config")
        os.killpg(holder.pid, signal.SIGSTOP)          # it holds the lock from before its first write
        before = files_of(out)
        for extra in (["--overwrite"], ["--resume"], []):
            second = subprocess.run([sys.executable, "-m", "wiring.train", *MICRO, "--seed", "1", "--epochs", "1",
                                     "--out", str(out), *extra], cwd=ROOT, env=ENV, capture_output=True, text=True,
                                    timeout=TIMEOUT)
            assert second.returncode == 2, second.stderr
            assert_one_clean_line(second.stderr, "in use by process", str(holder.pid))
        assert files_of(out) == before
        os.killpg(holder.pid, signal.SIGCONT)
        assert holder.poll() is None, "the holder must train on undisturbed"
    finally:
        kill9(holder)
    # the kernel let go of the lock with the killed process: the folder is usable at once
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out, "--overwrite"]) == 0
    assert not (out / ".lock").exists()


HOLD_LOCK = "import sys; from wiring.io import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()"


@pytest.mark.parametrize("kind", ["finished", "stopped before its first checkpoint"])
def test_a_folder_in_use_is_reported_as_such_before_its_settings_are_judged(tmp_path, kind):
    """Another process holds the lock of a run folder: ``--resume`` with other settings, a plain
    rerun and ``--overwrite`` all exit 2 naming it, and nothing in the folder changes. Was: the
    folder was judged before the lock was taken (a plain rerun: 'already exists: pass --resume',
    or 'stopped before its first checkpoint: pass --resume', whose --resume then said 'in use')."""
    out = tmp_path / "run"
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out]) == 0
    if kind != "finished":
        for name in set(run_files()) - {"config.yaml"}:
            (out / name).unlink(missing_ok=True)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=ROOT, env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"          # it holds the lock now: no sleep, no race
        for extra in (["--resume", "--seed", "1", "--lr", "0.5"], ["--resume"], [], ["--overwrite"]):
            second = subprocess.run([sys.executable, "-m", "wiring.train", "--out", str(out), "--progress", "none",
                                     *extra], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
            assert second.returncode == 2, (extra, second.stderr)
            assert_one_clean_line(second.stderr, "in use by process", str(holder.pid))
        assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.name != ".lock"} == \
            {k: v for k, v in before.items() if k != ".lock"}
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_two_trainings_started_together_into_one_folder_leave_one_consistent_run(tmp_path):
    """The issue's reproduction: seeds 0 and 1 into one --out at once. Was: both exited 0,
    metrics.jsonl interleaved both seeds, the checkpoint was seed 1's under seed 0's config."""
    out = tmp_path / "conc"
    procs = [spawn([*MICRO, "--batch-size", "256", "--epochs", 2, "--seed", seed, "--out", out]) for seed in (0, 1)]
    errors = [p.communicate(timeout=TIMEOUT)[1].decode() for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], errors
    assert_one_clean_line(errors[codes.index(2)], "run directory")
    seed = yaml.safe_load((out / "config.yaml").read_text())["seed"]
    assert seed == codes.index(0)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["config"]["seed"] == seed and state["epoch"] == 2
    records = load_metrics(out / "metrics.jsonl")
    assert [m["epoch"] for m in records] == [1, 2] and {m["run_id"] for m in records} == {state["run_id"]}


# ----------------------------------------------------------------------------- 3. CIFAR-10 pickles

class Payload:
    """Unpickling this would create a folder (any call could be there instead)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def write_cifar(folder: Path, rows: int = 4, protocol: int = 2, official: bool = True) -> None:
    """A small CIFAR-10 folder as the official archive holds it (Python 2 pickles of numpy < 2
    name ``numpy.core.multiarray``; ``official=False``: as numpy 2 pickles today)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = {b"batch_label": f"batch {k}".encode(), b"labels": [(k + j) % 10 for j in range(rows)],
                 b"data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{j}.png".encode() for j in range(rows)]}
        data = pickle.dumps(batch, protocol=protocol)
        if official:
            data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(data)


@pytest.mark.parametrize("protocol, official", [(2, True), (2, False), (0, False), (5, False)])
def test_a_legitimate_cifar10_folder_still_loads(tmp_path, protocol, official):
    write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol, official=official)
    train, test, info = load_dataset("cifar10", tmp_path)
    assert train.tensors[0].shape == (20, 3, 32, 32) and test.tensors[0].shape == (4, 3, 32, 32)
    assert test.tensors[1].tolist() == [5, 6, 7, 8]


@pytest.mark.parametrize("kind", ["object", "object-in-array", "builtins-eval"])
def test_a_cifar10_batch_that_would_run_code_is_refused_and_nothing_runs(tmp_path, capsys, kind):
    """Was: plain ``pickle.load``: a crafted data_batch_1 ran what it liked."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "payload-ran"
    if kind == "object":
        payload = {b"data": Payload(marker), b"labels": [0]}
    elif kind == "object-in-array":
        payload = {b"data": np.array([Payload(marker)], dtype=object), b"labels": [0]}
    else:
        class Eval:
            def __reduce__(self):
                return (eval, (f"__import__('os').makedirs({str(marker)!r})",))
        payload = {b"data": Eval(), b"labels": [0]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match="refused"):
        load_dataset("cifar10", folder)
    assert not marker.exists(), "the pickle's payload ran"
    out = tmp_path / "never"
    assert run_main([*MICRO, "--data", "cifar10", "--data-dir", folder, "--epochs", 1, "--out", out]) == 2
    assert_one_clean_line(capsys.readouterr().err, "data_batch_1", "refused", "nothing of it was run")
    assert not marker.exists() and not out.exists()


# ----------------------------------------------------------------------------- 4. a starting GraphML

@pytest.mark.parametrize("weights", ["zero", "tiny", "half-zero", "negative-tiny"])
def test_a_starting_graphml_is_the_initial_real_set_whatever_its_weights(tmp_path, weights):
    """Was: 0 of a file's edges with weight 0 reached initial.graphml (the random
    candidates below them ranked higher)."""
    graph = create_model("micro", in_channels=1, image_size=8, edges=100).graph
    pick = torch.randperm(graph.num_candidates, generator=torch.Generator().manual_seed(5))[:100]
    edge_index = graph.edge_index[:, pick]
    values = {"zero": torch.zeros(100), "tiny": torch.full((100,), 1e-9),
              "half-zero": torch.where(torch.arange(100) % 2 == 0, 0.0, 0.3),
              "negative-tiny": torch.full((100,), -1e-30)}[weights]
    g = static_graph([8, 16, 16, 16, 10])
    path = tmp_path / "start.graphml"
    write_graphml(Wiring(edge_index, values, g.level, g.role), path)
    out = tmp_path / "run"
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--graph", "graphml", "--graph-file", path,
                     "--out", out]) == 0
    initial = read_graphml(out / "initial.graphml")
    assert set(map(tuple, initial.edge_index.t().tolist())) == set(map(tuple, edge_index.t().tolist()))


# ----------------------------------------------------------------------------- 5. the files of a resume

def test_a_resumed_history_has_the_frames_of_an_uninterrupted_one(tmp_path):
    """12 steps an epoch, a frame every 10: was [0, 10, 12, 20, 24] resumed (the first run's
    final frame kept) against [0, 10, 20, 24]."""
    args = [*MICRO, "--batch-size", "128", "--snapshot-every", "10"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_main([*args, "--epochs", 2, "--out", whole]) == 0
    assert run_main([*args, "--epochs", 1, "--out", part]) == 0
    assert WiringHistory.load(part / "history.pt").steps == [0, 10, 12]
    assert run_main(["--out", part, "--resume", "--epochs", 2, "--progress", "none"]) == 0
    assert WiringHistory.load(part / "history.pt").steps == WiringHistory.load(whole / "history.pt").steps \
        == [0, 10, 20, 24]
    assert_same_run(whole, part)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two finished 1-epoch runs of the same settings but seeds 0 and 1."""
    base = tmp_path_factory.mktemp("two")
    for seed in (0, 1):
        assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--seed", seed,
                         "--out", base / f"s{seed}"]) == 0
    return base / "s0", base / "s1"


@pytest.mark.parametrize("kind", ["history-of-another-run", "metrics-of-another-run", "metrics-interleaved",
                                  "history-of-another-graph"])
def test_resume_refuses_a_history_or_metrics_that_are_not_its_runs(tmp_path, capsys, two_runs, kind):
    """Was: resumed on, the other run's frames and lines taken for its own."""
    mine, other = two_runs
    run = tmp_path / "run"
    shutil.copytree(mine, run)
    if kind == "history-of-another-run":
        shutil.copy(other / "history.pt", run / "history.pt")
    elif kind == "metrics-of-another-run":
        shutil.copy(other / "metrics.jsonl", run / "metrics.jsonl")
    elif kind == "metrics-interleaved":
        with open(run / "metrics.jsonl", "a") as f:
            f.write((other / "metrics.jsonl").read_text())
    else:                                # the checkpoint's run id, but another graph's candidates
        run_id = torch.load(run / "checkpoint.pt", weights_only=True)["run_id"]
        g = static_graph([2, 3, 3, 2])
        h = WiringHistory(g.edge_index, g.level, g.role, {"run_id": run_id})
        h.append(0, torch.arange(5), torch.ones(5))
        h.save(run / "history.pt")
    before = files_of(run)
    capsys.readouterr()
    assert run_main(["--out", run, "--resume", "--epochs", 2, "--progress", "none"]) == 2
    assert_one_clean_line(capsys.readouterr().err, "history.pt" if "history" in kind else "metrics.jsonl",
                          "--overwrite")
    assert files_of(run) == before, "a refused resume writes nothing"


def test_a_folder_holding_only_what_a_kill_at_startup_left_is_no_run(tmp_path, capsys):
    """Was: a kill inside the first atomic write of config.yaml left its temporary file, and then
    --resume said "holds no run to continue" while a plain rerun said "already exists"."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / ".config.4242.deadbeef.tmp.yaml").write_text("model: mic")
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out, "--resume"]) == 2
    assert_one_clean_line(capsys.readouterr().err, "holds no run to continue")
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out]) == 0
    assert not (out / ".config.4242.deadbeef.tmp.yaml").exists() and (out / "config.yaml").is_file()


def test_overwrite_removes_exactly_the_files_the_run_writes(tmp_path):
    """Was: the glob history*.pt took a user's history-mine.pt, and a stale sparse.pt stayed."""
    out = tmp_path / "run"
    args = [*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out]
    assert run_main(args) == 0
    written = set(run_files()) - {"sparse.pt", "tb/events.out.tfevents.*"}       # (no --tensorboard)
    assert {p.name for p in out.iterdir()} == written, "every file is named in run_files"
    (out / "history-mine.pt").write_bytes(b"mine")
    (out / "notes.txt").write_text("keep me")
    (out / "sparse.pt").write_bytes(b"stale: this run writes none")
    (out / ".checkpoint.4242.deadbeef.tmp.pt").write_bytes(b"a write a kill cut short")
    (out / ".my.tmp.notes").write_text("a user's hidden file")
    (out / "tb").mkdir()
    (out / "tb" / "events.out.tfevents.1.old").write_bytes(b"a previous --tensorboard run's curves")
    old_run = torch.load(out / "checkpoint.pt", weights_only=True)["run_id"]
    assert run_main([*args, "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == written | {"history-mine.pt", "notes.txt", ".my.tmp.notes"}
    assert (out / "history-mine.pt").read_bytes() == b"mine" and (out / "notes.txt").read_text() == "keep me"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["run_id"] != old_run
    assert len(load_metrics(out / "metrics.jsonl")) == 1


# ----------------------------------------------------------------------------- 8. stops at any moment

STOP_ARGS = [*MICRO[:-2], "--batch-size", "32", "--epochs", "2"]      # 45 steps an epoch
BATCHES = -(-1437 // 32)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert run_main([*STOP_ARGS, "--progress", "none", "--out", out]) == 0
    return out


class Watched:
    """A training process drawing its progress bar on a pipe, read as it comes."""

    def __init__(self, out: Path):
        self.proc = spawn([*STOP_ARGS, "--progress", "bar", "--out", out])
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def at(self) -> tuple[int, int]:
        """(epoch, batches done) of the last progress update."""
        found = re.findall(r"epoch (\d+)/\d+ [^\r\n]*\] (\d+)/\d+", self.text)
        return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)

    def finish(self) -> tuple[int, str]:
        code = self.proc.wait(timeout=TIMEOUT)
        self.reader.join(timeout=30)
        self.proc.stderr.close()
        return code, self.text


MOMENTS = [("SIGTERM", 1, 2), ("SIGINT", 1, 30), ("SIGTERM", 1, BATCHES), ("SIGTERM", 2, 10),
           ("SIGKILL", 1, 10), ("SIGKILL", 2, 10)]


@pytest.mark.parametrize("name, epoch, batch", MOMENTS,
                         ids=[f"{n}-epoch{e}-batch{b}" for n, e, b in MOMENTS])
def test_a_stop_at_any_moment_then_resume_gives_the_uninterrupted_run(tmp_path, capsys, uninterrupted,
                                                                      name, epoch, batch):
    """Was: SIGTERM killed at once (exit -15, no line, epoch 1 lost); Ctrl-C in epoch 1 said
    --resume, which said there was no checkpoint, and a plain rerun said --resume."""
    signum = getattr(signal, name)
    out = tmp_path / "run"
    watched = Watched(out)
    try:
        wait_for(watched.proc, lambda: watched.at() >= (epoch, batch), f"epoch {epoch} batch {batch}")
        if signum == signal.SIGKILL:
            os.killpg(watched.proc.pid, signal.SIGKILL)
        else:
            os.kill(watched.proc.pid, signum)
        code, err = watched.finish()
    finally:
        kill9(watched.proc)
    capsys.readouterr()
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        if not (out / "checkpoint.pt").is_file():      # killed before the first checkpoint
            assert epoch == 1
            assert run_main([*STOP_ARGS, "--out", out]) == 2    # a plain rerun says what is true
            assert_one_clean_line(capsys.readouterr().err, "stopped before its first checkpoint", "--resume")
    else:
        assert code == 128 + signum, err
        line = err.strip().splitlines()[-1]
        assert re.fullmatch(rf"stopped by {name} at step \d+ \(.*\): .*checkpoint\.pt holds that moment; "
                            rf"continue exactly with: python -m wiring\.train --out .* --resume", line), line
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert state["step"] >= (epoch - 1) * BATCHES + batch
        if epoch == 1 and batch < BATCHES:               # inside epoch 1: a checkpoint of that moment
            assert state["epoch"] == 0 and state["position"]["batch"] == state["step"] >= batch
    assert not list(out.glob(".*.tmp*")) or signum == signal.SIGKILL
    capsys.readouterr()
    assert run_main(["--out", out, "--resume", "--progress", "none"]) == 0
    assert "resumed     " in capsys.readouterr().out
    assert_same_run(uninterrupted, out)
    assert not (out / ".lock").exists()


def test_nan_in_epoch_1_says_what_works_and_it_works(tmp_path, capsys):
    """Was: '... continue with --resume', and --resume said there was no checkpoint."""
    out = tmp_path / "run"
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--lr", "1e30", "--out", out]) == 1
    line = assert_one_clean_line(capsys.readouterr().err, "nothing was checkpointed", "--overwrite")
    assert "--resume" not in line
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out, "--overwrite"]) == 0


def test_ctrl_c_raised_at_once_in_epoch_1_says_what_is_true_and_resume_starts_over(tmp_path, capsys,
                                                                                   monkeypatch, uninterrupted):
    """A KeyboardInterrupt that is not a graceful stop (a second Ctrl-C, or one raised in code)."""
    out = tmp_path / "run"
    real = Trainer.train_epoch

    def interrupted(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", interrupted)
        assert run_main([*STOP_ARGS, "--progress", "none", "--out", out]) == 130
    assert Trainer.train_epoch is real
    assert_one_clean_line(capsys.readouterr().err, "before the first checkpoint", "--resume starts the run over")
    assert not (out / "checkpoint.pt").exists()
    assert run_main(["--out", out, "--resume", "--progress", "none"]) == 0
    assert "resumed     from step 0" in capsys.readouterr().out
    assert_same_run(uninterrupted, out)


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys):
    """Was: 'resumed at epoch 1', then every file of the run written again. A larger --epochs
    still trains on."""
    out = tmp_path / "run"
    assert run_main([*MICRO, "--batch-size", "512", "--epochs", 1, "--out", out]) == 0
    capsys.readouterr()
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())}
    for extra in ([], ["--epochs", 1]):
        assert run_main(["--out", out, "--resume", "--progress", "none", *extra]) == 0
        said = capsys.readouterr()
        assert said.err == "" and said.out.strip().splitlines() == [said.out.strip()], said
        assert "is finished" in said.out and "resumed" not in said.out and "nothing was changed" in said.out
        assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())} == before
    assert run_main(["--out", out, "--resume", "--progress", "none", "--epochs", 2]) == 0
    assert "resumed     at epoch 1" in capsys.readouterr().out
    assert [m["epoch"] for m in load_metrics(out / "metrics.jsonl")] == [1, 2]


def test_resume_of_an_empty_folder_says_there_is_no_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert run_main([*MICRO, "--out", tmp_path / "run", "--resume"]) == 2
    assert_one_clean_line(capsys.readouterr().err, "holds no run to continue", "without --resume")


def test_a_stop_request_is_graceful_once_then_at_once():
    stop = StopRequest()
    with pytest.raises(Interrupted):                    # before training: at once
        stop.handle(signal.SIGTERM)
    stop = StopRequest()
    stop.graceful = True
    stop.handle(signal.SIGTERM)                         # while fitting: recorded
    assert stop.signum == signal.SIGTERM
    with pytest.raises(Interrupted) as second:          # a second signal: at once
        stop.handle(signal.SIGINT)
    assert isinstance(second.value, KeyboardInterrupt)
