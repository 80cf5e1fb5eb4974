"""Robustness: SIGKILL at any moment, and malformed inputs rejected cleanly.

* A training process killed with ``kill -9`` (startup, first checkpoint write, random
  moments of the run) leaves a run directory whose ``checkpoint.pt`` (if any) loads with
  ``weights_only=True`` and that ``--resume`` finishes; temporary files are never read.
* A run killed at an epoch boundary and resumed equals an uninterrupted one (CPU).
* Malformed command-line values, GraphML wirings and checkpoints exit with status 2,
  one line on stderr, no traceback, and nothing written.

Training runs use the ``micro`` model (66 nodes, 1,712 candidates) on the digits data
with one thread: 3 steps per epoch at batch size 512.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from processes import kill9, process_env, run_main
from wiring import export
from wiring.io import WiringHistory, load_metrics, read_graphml
from wiring.train.pipeline import main

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--model", "micro", "--edges", "100", "--batch-size", "512", "--progress", "none"]
STEPS_PER_EPOCH = -(-1437 // 512)
ENV = process_env()
TIMEOUT = 120.0


# ----------------------------------------------------------------------------- helpers

def spawn(out: Path, epochs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wiring.train", *ARGS, "--epochs", str(epochs), "--out", str(out)],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for(proc: subprocess.Popen, condition, poll: float = 0.002) -> None:
    """Poll ``condition()`` until true; fail if the process ends first or it takes too long."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training ended (exit {proc.returncode}) before the kill: "
                                 f"{proc.stderr.read().decode(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            kill9(proc)
            raise AssertionError("timed out waiting for the training process")
        time.sleep(poll)


def temp_files(folder: Path) -> list[str]:
    """Leftovers of atomic writes: ``.<stem>.<pid>.<hex>.tmp<suffix>``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name) \
        if folder.is_dir() else []


def metrics_lines(folder: Path) -> int:
    try:
        return len((folder / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def epochs_recorded(folder: Path) -> list[int]:
    """The epochs of metrics.jsonl, each counted once: a kill between the metrics line and the
    checkpoint of an epoch makes the resumed run record that epoch again (see the xfail test
    ``test_a_kill_after_the_metrics_line_does_not_duplicate_it_on_resume``); the later record wins."""
    epochs = [m["epoch"] for m in load_metrics(folder / "metrics.jsonl")]
    kept: list[int] = []
    for e in epochs:
        while kept and kept[-1] >= e:
            kept.pop()
        kept.append(e)
    return kept


def assert_complete(out: Path, epochs: int) -> None:
    """A finished run directory of ``epochs`` epochs."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == epochs and state["step"] == epochs * STEPS_PER_EPOCH
    torch.load(out / "best.pt", weights_only=True)
    final = read_graphml(out / "wiring.graphml")
    assert final.num_edges == 100 and final.attrs["step"] == epochs * STEPS_PER_EPOCH
    assert read_graphml(out / "initial.graphml").num_edges == 100
    assert epochs_recorded(out) == list(range(1, epochs + 1))
    history = WiringHistory.load(out / "history.pt")
    assert history.steps[0] == 0 and history.steps[-1] == epochs * STEPS_PER_EPOCH
    assert all(a < b for a, b in zip(history.steps, history.steps[1:])), history.steps
    assert all(len(history.real_index(i)) == 100 for i in range(len(history)))


def check_and_resume(out: Path, capsys) -> None:
    """After a kill: what is on disk is consistent, and the run can be continued or restarted."""
    leftovers = temp_files(out)
    capsys.readouterr()
    if (out / "checkpoint.pt").is_file():
        state = torch.load(out / "checkpoint.pt", weights_only=True)   # never torn, never a pickle of ours
        epoch = int(state["epoch"])
        assert epoch >= 1 and state["step"] == epoch * STEPS_PER_EPOCH
        assert metrics_lines(out) >= epoch
        if (out / "best.pt").is_file():
            torch.load(out / "best.pt", weights_only=True)
        # Resume for one more epoch (epochs may change on --resume): it reads checkpoint.pt, never a temp file.
        assert run_main(main, [*ARGS, "--epochs", epoch + 1, "--out", out, "--resume"]) == 0
        assert f"resumed     at epoch {epoch}, step {epoch * STEPS_PER_EPOCH}" in capsys.readouterr().out
        assert_complete(out, epoch + 1)
    else:
        # Killed before the first checkpoint: the folder is not silently reused, and what the messages
        # advise works: --resume starts a run whose config.yaml was written over (same settings and seed:
        # the same run), a folder without one needs no flag (a lock file left by the kill is no run).
        started = (out / "config.yaml").is_file()
        if started:
            assert run_main(main, [*ARGS, "--epochs", 1, "--out", out]) == 2
            err = capsys.readouterr().err
            assert "stopped before its first checkpoint" in err and len(err.strip().splitlines()) == 1
            assert run_main(main, [*ARGS, "--epochs", 1, "--out", out, "--resume"]) == 0
            assert "resumed     from step 0" in capsys.readouterr().out
        else:
            assert run_main(main, [*ARGS, "--epochs", 1, "--out", out, "--resume"]) == 2
            err = capsys.readouterr().err
            assert "holds no run to continue" in err and len(err.strip().splitlines()) == 1
            assert run_main(main, [*ARGS, "--epochs", 1, "--out", out]) == 0
        assert_complete(out, 1)
    # The continued run finished its own atomic writes; only the killed process's temp files may remain.
    assert set(temp_files(out)) <= set(leftovers)
    assert not any(f".{os.getpid()}." in name for name in temp_files(out))


# ----------------------------------------------------------------------------- kill -9

def moment_startup(out: Path, proc, rng) -> None:
    """While the run directory is being set up (config, initial wiring, first epoch)."""
    wait_for(proc, out.is_dir)
    time.sleep(rng.uniform(0.0, 0.05))


def moment_first_checkpoint_write(out: Path, proc, rng) -> None:
    """As soon as a temporary file of the first checkpoint (or the checkpoint itself) shows up."""
    def writing() -> bool:
        if not out.is_dir():
            return False
        names = os.listdir(out)
        return "checkpoint.pt" in names or any(n.startswith(".checkpoint.") for n in names)
    wait_for(proc, writing, poll=0.0005)


def moment_just_after_checkpoint(out: Path, proc, rng) -> None:
    """A few milliseconds after the first checkpoint: best.pt and history writes, next epoch."""
    wait_for(proc, lambda: (out / "checkpoint.pt").is_file())
    time.sleep(rng.uniform(0.0, 0.02))


def moment_later(out: Path, proc, rng) -> None:
    """Anywhere in the following epochs."""
    wait_for(proc, lambda: (out / "checkpoint.pt").is_file())
    time.sleep(rng.uniform(0.1, 0.8))


@pytest.mark.parametrize("moment, seed", [(moment_startup, 1), (moment_first_checkpoint_write, 2),
                                          (moment_just_after_checkpoint, 3), (moment_later, 4)],
                         ids=["startup", "first-checkpoint-write", "just-after-checkpoint", "later"])
def test_sigkill_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path, capsys, moment, seed):
    out = tmp_path / "run"
    proc = spawn(out, epochs=40)
    try:
        moment(out, proc, random.Random(seed))
    finally:
        kill9(proc)
    assert proc.returncode == -signal.SIGKILL, "the process must have been killed, not have ended"
    check_and_resume(out, capsys)


def test_resumed_after_sigkill_at_an_epoch_boundary_equals_uninterrupted(tmp_path, capsys):
    whole = tmp_path / "whole"
    part = tmp_path / "part"
    proc = spawn(part, epochs=3)                       # the same --epochs: the lr schedule depends on it
    try:
        wait_for(proc, lambda: metrics_lines(part) >= 1 and (part / "checkpoint.pt").is_file())
    finally:
        kill9(proc)
    assert proc.returncode == -signal.SIGKILL
    assert run_main(main, [*ARGS, "--epochs", 3, "--out", whole]) == 0
    saved = torch.load(part / "checkpoint.pt", weights_only=True)["epoch"]
    assert saved in (1, 2)
    capsys.readouterr()
    assert run_main(main, [*ARGS, "--epochs", 3, "--out", part, "--resume"]) == 0
    assert f"resumed     at epoch {saved}" in capsys.readouterr().out
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.allclose(value.double(), b["model"][key].double(), rtol=0, atol=1e-5), key
    assert read_graphml(whole / "wiring.graphml").edge_index.tolist() == \
        read_graphml(part / "wiring.graphml").edge_index.tolist()
    assert_complete(part, 3)


def test_a_kill_after_the_metrics_line_does_not_duplicate_it_on_resume(tmp_path, monkeypatch):
    import wiring.train.recorder

    out = tmp_path / "run"
    real_save = wiring.train.recorder.save_checkpoint

    def killed_before_checkpoint_of_epoch_2(state, path, **kwargs):
        if state["epoch"] == 2:
            raise KeyboardInterrupt                    # what SIGKILL at that moment leaves on disk
        return real_save(state, path, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(wiring.train.recorder, "save_checkpoint", killed_before_checkpoint_of_epoch_2)
        assert run_main(main, [*ARGS, "--epochs", 3, "--out", out]) == 130
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert run_main(main, [*ARGS, "--epochs", 3, "--out", out, "--resume"]) == 0
    assert [m["epoch"] for m in load_metrics(out / "metrics.jsonl")] == [1, 2, 3]


# ----------------------------------------------------------------------------- malformed inputs: CLI

def assert_one_clean_line(err: str, *words: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]


ARGPARSE_MISTAKES = [
    (["--edges", "1.5"], "--edges"),
    (["--lr", "abc"], "--lr"),
    (["--mode", "sideways"], "--mode"),
    (["--model", "huge"], "--model"),
    (["--epochs", "two"], "--epochs"),
]
VALUE_MISTAKES = [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--edges", "-3"], "--edges"),
    (["--edges", "5000"], "more than the"),
    (["--momentum", "-0.5"], "--momentum"),
    (["--device", "tpu"], "--device"),
    (["--graph", "graphml", "--graph-file", "/nonexistent/w.graphml"], "no such file"),
    pytest.param(["--device", "cuda:7"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
]


@pytest.mark.parametrize("args, word", ARGPARSE_MISTAKES + VALUE_MISTAKES)
def test_bad_command_line_values_exit_2_without_writing(tmp_path, capsys, args, word):
    out = tmp_path / "never"
    assert run_main(main, [*ARGS, "--epochs", 1, "--out", out, *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert word.lower() in err.strip().splitlines()[-1].lower(), err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, word", VALUE_MISTAKES)
def test_bad_values_are_one_line(tmp_path, capsys, args, word):
    assert run_main(main, [*ARGS, "--epochs", 1, "--out", tmp_path / "never", *args]) == 2
    assert_one_clean_line(capsys.readouterr().err, word)


@pytest.mark.parametrize("args, word", ARGPARSE_MISTAKES[:2])
def test_bad_types_and_choices_are_one_line(tmp_path, capsys, args, word):
    assert run_main(main, [*ARGS, "--epochs", 1, "--out", tmp_path / "never", *args]) == 2
    assert_one_clean_line(capsys.readouterr().err, word)


def test_a_bad_value_in_a_real_process_exits_2_without_traceback(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "wiring.train", *ARGS, "--edges", "1.5", "--out", str(out)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and "--edges" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()


# ----------------------------------------------------------------------------- malformed inputs: GraphML

MICRO_LEVELS = [level for level, size in enumerate([8, 16, 16, 16, 10]) for _ in range(size)]
NODES = list(range(66))
SOME_EDGES = [(0, 8, 0.5), (1, 9, -0.7), (8, 24, 1.0), (24, 40, 0.3), (40, 56, 0.9)]


def graphml(nodes=NODES, edges=SOME_EDGES, *, weight_type="double", levels=True, directed=True,
            prolog="") -> str:
    """A hand-written GraphML document (networkx would refuse to write the broken ones)."""
    keys = (f'<key id="w" for="edge" attr.name="weight" attr.type="{weight_type}"/>'
            '<key id="l" for="node" attr.name="level" attr.type="long"/>')
    body = "".join(f'<node id="{n}">' + (f'<data key="l">{MICRO_LEVELS[n]}</data>' if levels else "") + "</node>"
                   for n in nodes)
    body += "".join(f'<edge source="{u}" target="{v}"><data key="w">{w}</data></edge>' for u, v, w in edges)
    return (f'<?xml version="1.0" encoding="utf-8"?>{prolog}<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
            f'{keys}<graph edgedefault="{"directed" if directed else "undirected"}">{body}</graph></graphml>')


GRAPHML_MISTAKES = {
    "plain-text": ("hello, this is not XML\n", "not well-formed"),
    "empty": ("", "not well-formed"),
    "xml-not-graphml": ("<html><body/></html>", "could not be read as graphml"),
    "cycle-without-levels": (graphml(edges=SOME_EDGES + [(24, 8, 1.0)], levels=False), "cycle"),
    "cycle-with-levels": (graphml(edges=SOME_EDGES + [(24, 8, 1.0)]), "not a candidate edge"),
    "edge-to-unknown-node": (graphml(edges=SOME_EDGES + [(8, "ghost", 1.0)]), "'ghost'"),
    "edge-to-node-66": (graphml(edges=SOME_EDGES + [(8, 66, 1.0)], levels=False), "67 nodes"),
    "non-numeric-weight": (graphml(edges=SOME_EDGES + [(2, 10, "heavy")]), "heavy"),
    "string-typed-weight": (graphml(weight_type="string"), "non-numeric weight"),
    "duplicate-edge": (graphml(edges=SOME_EDGES + [(0, 8, 0.1)]), "duplicate edge"),
    "more-edges-than-candidates": (graphml(edges=[(u, v, 1.0) for u in NODES for v in NODES if u < v]),
                                   "not a candidate edge"),
    "fewer-nodes": (graphml(nodes=list(range(10)), edges=[(0, 8, 1.0)]), "10 nodes"),
    "undirected": (graphml(directed=False), "undirected"),
    "entity-declaration": (graphml(prolog='<!DOCTYPE g [<!ENTITY a "aaaa">]>'), "entities"),
    "negative-level": (graphml().replace('<data key="l">0</data>', '<data key="l">-1</data>', 1), "negative level"),
}


def test_the_graphml_helper_writes_a_wiring_that_trains(tmp_path):
    """Control for the corpus below: the unbroken document is accepted."""
    path = tmp_path / "ok.graphml"
    path.write_text(graphml())
    out = tmp_path / "run"
    assert run_main(main, [*ARGS, "--epochs", 1, "--graph", "graphml", "--graph-file", path, "--out", out]) == 0
    initial = read_graphml(out / "initial.graphml")
    pairs = set(map(tuple, initial.edge_index.t().tolist()))
    assert {(u, v) for u, v, _ in SOME_EDGES} <= pairs and len(pairs) == 100


@pytest.mark.parametrize("name", list(GRAPHML_MISTAKES))
def test_malformed_graphml_is_rejected_with_exit_2_and_nothing_written(tmp_path, capsys, name):
    text, word = GRAPHML_MISTAKES[name]
    path = tmp_path / "wiring.graphml"
    path.write_text(text)
    out = tmp_path / "never"
    assert run_main(main, [*ARGS, "--epochs", 1, "--graph", "graphml", "--graph-file", path, "--out", out]) == 2
    assert_one_clean_line(capsys.readouterr().err, word)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["wiring.graphml"]


@pytest.mark.parametrize("weight", ["NaN", "INF"])
def test_non_finite_graphml_weight_is_rejected_before_training(tmp_path, capsys, weight):
    path = tmp_path / "wiring.graphml"
    path.write_text(graphml(edges=SOME_EDGES + [(2, 10, weight)]))
    out = tmp_path / "never"
    assert run_main(main, [*ARGS, "--epochs", 1, "--graph", "graphml", "--graph-file", path, "--out", out]) == 2
    assert not out.exists()


# ----------------------------------------------------------------------------- malformed inputs: checkpoints

class Payload:
    """Unpickling this would create a folder: weights_only must refuse it before running anything."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("good") / "run"
    assert run_main(main, [*ARGS, "--epochs", 1, "--out", out]) == 0
    return (out / "checkpoint.pt").read_bytes()


def write_bad_checkpoint(kind: str, path: Path, good: bytes, marker: Path) -> str:
    """Write a broken ``checkpoint.pt`` of ``kind``; returns a word the error must contain."""
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return "cannot read checkpoint"
    if kind == "empty":
        path.write_bytes(b"")
        return "cannot read checkpoint"
    if kind == "random-bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
        return "cannot read checkpoint"
    if kind == "plain-tensor":
        torch.save(torch.zeros(3), path)
        return "not a wiring checkpoint"
    if kind == "custom-class":
        torch.save(Payload(marker), path)
        return "cannot read checkpoint"
    if kind == "custom-class-in-dict":
        torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
        return "cannot read checkpoint"
    raise ValueError(kind)


BAD_CHECKPOINTS = ["truncated", "empty", "random-bytes", "plain-tensor", "custom-class", "custom-class-in-dict"]


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_bad_checkpoint_through_resume_exits_2_and_writes_nothing(tmp_path, capsys, good_checkpoint, kind):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "payload-ran"
    word = write_bad_checkpoint(kind, run_dir / "checkpoint.pt", good_checkpoint, marker)
    before = (run_dir / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert run_main(main, [*ARGS, "--epochs", 2, "--out", run_dir, "--resume"]) == 2
    assert_one_clean_line(capsys.readouterr().err, word)
    assert not marker.exists(), "a pickled payload was executed"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_bad_checkpoint_through_export_exits_2_and_writes_nothing(tmp_path, capsys, good_checkpoint, kind):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "payload-ran"
    word = write_bad_checkpoint(kind, run_dir / "checkpoint.pt", good_checkpoint, marker)
    foreign = tmp_path / "foreign.pt"
    write_bad_checkpoint(kind, foreign, good_checkpoint, marker)
    capsys.readouterr()
    for argv in ([run_dir], [run_dir, "--format", "pyg"], [run_dir, "--checkpoint", foreign, "--format", "edgelist"]):
        assert run_main(export.main, argv) == 2
        assert_one_clean_line(capsys.readouterr().err, word)
    assert not marker.exists(), "a pickled payload was executed"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pt", "run"]


def test_a_pickle_payload_in_a_real_export_process_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "payload-ran"
    torch.save(Payload(marker), run_dir / "checkpoint.pt")
    proc = subprocess.run([sys.executable, "-m", "wiring.export", str(run_dir)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_clean_line(proc.stderr, "cannot read checkpoint")
    assert not marker.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]


def foreign_dicts(good: bytes) -> dict:
    """Dicts that load with weights_only and have a ``model`` key, but are not this run's checkpoint."""
    import io
    state = torch.load(io.BytesIO(good), weights_only=True)
    shrunk = dict(state, model={k: v[:1] if v.dim() else v for k, v in state["model"].items()})
    no_optimizer = {k: v for k, v in state.items() if k != "optimizer"}
    return {"foreign-model": {"model": {"x": torch.zeros(2)}},
            "model-none": {"model": None, "epoch": 1},
            "wrong-shapes": shrunk,
            "no-optimizer": no_optimizer}


@pytest.mark.parametrize("kind", ["foreign-model", "model-none", "wrong-shapes"])
def test_a_foreign_checkpoint_dict_through_export_exits_2(tmp_path, capsys, good_checkpoint, kind):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(foreign_dicts(good_checkpoint)[kind], run_dir / "checkpoint.pt")
    capsys.readouterr()
    assert run_main(export.main, [run_dir]) == 2
    assert_one_clean_line(capsys.readouterr().err, "checkpoint")
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize("kind", ["foreign-model", "model-none", "wrong-shapes", "no-optimizer"])
def test_a_foreign_checkpoint_dict_through_resume_exits_2(tmp_path, capsys, good_checkpoint, kind):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(foreign_dicts(good_checkpoint)[kind], run_dir / "checkpoint.pt")
    capsys.readouterr()
    try:
        code = run_main(main, [*ARGS, "--epochs", 2, "--out", run_dir, "--resume"])
    finally:
        assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]
    assert code == 2
    assert_one_clean_line(capsys.readouterr().err, "checkpoint")
