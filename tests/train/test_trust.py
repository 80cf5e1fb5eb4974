"""Trust, part 3 (issue 29, items 1-5): no hang, no silent wrong value, no traceback.

* An unreadable image of an ``imagenet`` folder (a zero-byte ``.png``) read by DataLoader
  workers: one short line naming the file, exit 2, and the process and its workers gone
  (was: the worker's 1,900-character traceback as the "one line", then a process that never
  ended: its workers ignore the SIGTERM that exit sends them).
* ``--schedule cosine_step`` stopped by SIGTERM inside epoch 1 and resumed: epoch 1's ``lr``
  is the rate of its first step, as in the uninterrupted run (was: the resumed step's).
* One rule for the weights every checkpoint reader loads (export, compact, profile,
  ``--resume``): non-finite or non-floating weights are refused with one line; and a
  ``data_info`` whose sizes no tensor of the checkpoint has is refused before a model is built.
* ``--overwrite`` removes the TensorBoard event files of ``RUN/tb/``, not a file of yours there.
* An idx header whose dimensions overflow int64, a data set of 0 training images: one line,
  and no run folder made.

Real processes, files and signals where the case is one; the ``micro`` model on digits.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from processes import kill9, process_env
from processes import run_main as run_command
from wiring.compact.command import main as compact_main
from wiring.export import main as export_main
from wiring.io import load_metrics, run_files
from wiring.profile import main as profile_main
from wiring.train.data import DataError, load_dataset
from wiring.train.pipeline import main as train_main
from wiring.train.tblogger import available as tensorboard_available

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240.0
MICRO = ["--model", "micro", "--edges", "100", "--progress", "none"]
NOT_COMPARED = {"seconds", "img_s", "run_id"}


def run(entry, argv) -> int:
    return run_command(entry, argv)


def one_line(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]
    return lines[0]


def metrics(out: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in NOT_COMPARED} for m in load_metrics(out / "metrics.jsonl")]


# ----------------------------------------------------------------------------- 1. an unreadable image

def write_png_folder(root: Path, per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def test_a_zero_byte_image_is_one_line_naming_it_and_the_process_and_its_workers_end(tmp_path):
    """Was: 'python -m wiring.train: error: Caught DataError in DataLoader worker process 0.
    Original Traceback (most recent call last): ...' (1,592 characters here), then no exit."""
    data = tmp_path / "images"
    write_png_folder(data)
    bad = data / "train" / "a" / "3.png"
    bad.write_bytes(b"")
    env = process_env(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")   # 2 threads: the loader starts a worker process
    proc = subprocess.Popen([sys.executable, "-m", "wiring.train", "--data", "imagenet", "--data-dir", str(data),
                             "--image-size", "8", *MICRO, "--batch-size", "4", "--epochs", "1",
                             "--out", str(tmp_path / "run")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill9(proc)
        raise AssertionError("the training never ended after the unreadable image") from None
    err = err.decode()
    assert proc.returncode == 2, err
    line = one_line(err, "cannot read image", str(bad), "empty")
    assert len(line) < 250, line
    deadline = time.monotonic() + 10
    while True:                                     # the session holds no process: the workers ended too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            kill9(proc)
            raise AssertionError("a DataLoader worker outlived the training process")
        time.sleep(0.05)
    shutil.copyfile(data / "train" / "a" / "2.png", bad)            # what the README says works next
    assert run(train_main, ["--out", tmp_path / "run", "--resume", "--progress", "none"]) == 0
    assert len(load_metrics(tmp_path / "run" / "metrics.jsonl")) == 1


def test_an_unreadable_image_in_the_main_process_is_the_same_line(tmp_path):
    data = tmp_path / "images"
    write_png_folder(data, per_class=2)
    bad = data / "val" / "b" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    train, test, info = load_dataset("imagenet", data, image_size=8)
    with pytest.raises(DataError) as caught:
        test[len(test) - 1]
    assert str(bad) in str(caught.value) and "Traceback" not in str(caught.value)
    assert str(caught.value).count(str(bad)) == 1, "the path once, not PIL's message repeating it"


# ----------------------------------------------------------------------------- 2. cosine_step stopped in epoch 1

STOP_ARGS = [*MICRO[:-2], "--batch-size", "32", "--epochs", "2", "--schedule", "cosine_step"]   # 45 steps an epoch


class Watched:
    """A training process drawing its progress bar on a pipe, read as it comes."""

    def __init__(self, out: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "wiring.train", *STOP_ARGS, "--progress", "bar",
                                      "--out", str(out)], cwd=ROOT, env=process_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stderr.fileno(), 65536):
            self.chunks.append(chunk)

    def at(self) -> tuple[int, int]:
        text = b"".join(self.chunks).decode(errors="replace")
        found = re.findall(r"epoch (\d+)/\d+ [^\r\n]*\] (\d+)/\d+", text)
        return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def test_cosine_step_stopped_inside_epoch_1_resumes_to_the_uninterrupted_metrics(tmp_path, capsys):
    """Was: epoch 1's lr 0.09938 (the rate of the resumed step) instead of 0.1."""
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert run(train_main, [*STOP_ARGS, "--progress", "none", "--out", whole]) == 0
    watched = Watched(out)
    try:
        deadline = time.monotonic() + TIMEOUT
        while watched.at() < (1, 10):
            assert watched.proc.poll() is None and time.monotonic() < deadline, "no progress to epoch 1 batch 10"
            time.sleep(0.005)
        os.kill(watched.proc.pid, signal.SIGTERM)
        assert watched.proc.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
        watched.reader.join(timeout=30)
    finally:
        kill9(watched.proc)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and 10 <= state["position"]["batch"] < 45, "stopped inside epoch 1"
    capsys.readouterr()
    assert run(train_main, ["--out", out, "--resume", "--progress", "lines"]) == 0
    printed = capsys.readouterr().out
    assert metrics(out) == metrics(whole)
    assert metrics(out)[0]["lr"] == 0.1
    assert re.search(r"epoch +1/2 .* lr 0\.1 ", printed), printed


# ----------------------------------------------------------------------------- 3. the weights a reader loads

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert run(train_main, [*MICRO, "--batch-size", "512", "--epochs", "1", "--out", out]) == 0
    return out


def changed_copy(trained: Path, folder: Path, change) -> Path:
    out = folder / "run"
    shutil.copytree(trained, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, out / "checkpoint.pt")
    return out


def nan_weight(state) -> None:
    state["model"]["graph.weight"][5] = float("nan")


def int_weight(state) -> None:
    state["model"]["fc.weight"] = state["model"]["fc.weight"].round().to(torch.int64)


READERS = {
    "export": lambda run_dir: run(export_main, [run_dir]),
    "compact": lambda run_dir: run(compact_main, [run_dir, "--repeats", "1", "--batch", "2"]),
    "profile": lambda run_dir: run(profile_main, ["--run", run_dir]),
    "resume": lambda run_dir: run(train_main, ["--out", run_dir, "--resume", "--epochs", "2", "--progress", "none"]),
}
CASES = [("nan", nan_weight, ["'graph.weight'", "1 non-finite value"]),
         ("int64", int_weight, ["'fc.weight'", "int64", "not floating point"])]


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("name, change, words", CASES, ids=[c[0] for c in CASES])
def test_every_reader_refuses_non_finite_or_non_floating_weights(tmp_path, capsys, trained, reader, name,
                                                                 change, words):
    """Was: compact wrote a model of NaN weights (exit 0) and compact / --resume cast an int64
    weight silently; export refused the NaN in its own words."""
    run_dir = changed_copy(trained, tmp_path, change)
    before = sorted(p.name for p in run_dir.iterdir())
    capsys.readouterr()
    assert READERS[reader](run_dir) == 2
    one_line(capsys.readouterr().err, *words)
    assert sorted(p.name for p in run_dir.iterdir()) == before, "nothing written"


DATA_INFO = [("channels", 10**9), ("num_classes", 10**9), ("channels", 0), ("image_size", 10**6)]


@pytest.mark.parametrize("reader", ["export", "compact", "profile"])
@pytest.mark.parametrize("key, value", DATA_INFO, ids=[f"{k}={v}" for k, v in DATA_INFO])
def test_a_data_info_the_tensors_do_not_have_is_refused_before_a_model_is_built(tmp_path, capsys, trained,
                                                                               reader, key, value):
    """Was: data_info.channels = 10**9 built a model of 144 GB (the allocation failed, or took
    the machine)."""
    run_dir = changed_copy(trained, tmp_path, lambda state: state["data_info"].update({key: value}))
    capsys.readouterr()
    assert READERS[reader](run_dir) == 2
    one_line(capsys.readouterr().err, f"data_info.{key}")


# ----------------------------------------------------------------------------- 4. a file of yours in RUN/tb

def test_overwrite_removes_the_event_files_of_tb_and_keeps_yours(tmp_path):
    """Was: --overwrite removed the whole of RUN/tb, the user's notes in it too."""
    out = tmp_path / "run"
    tb = ["--tensorboard"] if tensorboard_available() else []
    args = [*MICRO, "--batch-size", "512", "--epochs", "1", "--out", out, *tb]
    assert run(train_main, args) == 0
    (out / "tb").mkdir(exist_ok=True)
    (out / "tb" / "events.out.tfevents.1.old").write_bytes(b"a previous run's curves")
    (out / "tb" / "my-notes.txt").write_text("keep me")
    (out / "tb" / "mine").mkdir()
    assert run(train_main, [*args, "--overwrite"]) == 0
    assert (out / "tb" / "my-notes.txt").read_text() == "keep me" and (out / "tb" / "mine").is_dir()
    assert not (out / "tb" / "events.out.tfevents.1.old").exists()
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == (1 if tb else 0)
    assert "tb/events.out.tfevents.*" in run_files()


# ----------------------------------------------------------------------------- 5. data tracebacks

def test_an_idx_header_whose_size_overflows_int64_is_a_data_error(tmp_path):
    """Was: 2^31 x 2^31 x 2^31 wrapped to 0 bytes in int64, passed the size check, and reshape
    raised a ValueError with a traceback."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2**31, 2**31, 2**31))
    from wiring.train.data import _read_idx
    with pytest.raises(DataError, match="truncated") as caught:
        _read_idx(path)
    assert str(path) in str(caught.value)


def write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    path.write_bytes(bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
                     + arr.tobytes())


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_a_fashion_mnist_folder_of_0_images_is_one_line_and_no_run_folder(tmp_path, capsys, split):
    """Was: ZeroDivisionError in the trainer, and a half-started run folder."""
    data = tmp_path / "fmnist"
    data.mkdir()
    for stem in ("train", "t10k"):
        n = 0 if stem == split else 4
        write_idx(data / f"{stem}-images-idx3-ubyte", np.zeros((n, 8, 8)))
        write_idx(data / f"{stem}-labels-idx1-ubyte", np.zeros(n))
    out = tmp_path / "run"
    assert run(train_main, ["--data", "fashion-mnist", "--data-dir", data, *MICRO, "--out", out]) == 2
    one_line(capsys.readouterr().err, "0 " + ("training" if split == "train" else "test") + " images")
    assert not out.exists()
