"""Clean refusals (issue 17, the refusal half): exit status 2, one line
``python -m MODULE: error: ...``, no traceback, nothing half-written.

* Non-finite or out-of-range hyperparameters are refused by validation, before any data
  is loaded or a run directory exists.
* A settings file that is not UTF-8 (train, study) or a run folder's ``config.yaml``
  that is not (viz.render, viz.plots); an ``--out`` on ``/proc`` or ``/sys`` (found
  before the data loads); ``wiring.export -o /proc/...``; a full disk during training or
  export (a real file-size limit, ``RLIMIT_FSIZE``): one line, and no partial file.
* Names and GraphML attributes with ``$...$`` are drawn as plain text, never mathtext.
* A GraphML file NetworkX wrote (cycles, no levels) works in viz.render, viz.plots,
  viz.explore and wiring.analyze; viz.animate says why it needs a run directory.
* A checkpoint that is not weights-only is refused without torch's hint to load it with
  ``weights_only=False``; ``--format pyg -o x.graphml`` is refused; a batch larger than the
  data set is a warning; the compact export has the user's umask.

Training runs use the ``micro`` model on the digits data with one thread.
"""
from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import matplotlib.figure
import matplotlib.text
import networkx as nx
import pytest
import torch
import yaml

from processes import process_env, run_main
from viz import animate, explore, plots, render
from wiring import analyze, export
from wiring.compact import command as compact
from wiring.io import load_metrics, read_graphml, write_graphml
from wiring.study import command as study
from wiring.train import pipeline as train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--model", "micro", "--edges", "100", "--batch-size", "512", "--progress", "none"]
ENV = process_env(WIRING_NATIVE="0")
TIMEOUT = 180


def one_line(err: str, prog: str, *words: str) -> str:
    """The one stderr line ``prog: error: ...`` holding ``words``."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]
    return lines[0]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


@pytest.fixture
def no_data(monkeypatch):
    """A refusal must come before the data set is read."""
    def loaded(*args, **kwargs):
        raise AssertionError("the data set was loaded before the refusal")
    monkeypatch.setattr(train, "load_dataset", loaded)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 1-epoch micro run directory (checkpoint, history, GraphML, metrics)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert run_main(train.main, [*ARGS, "--epochs", 1, "--out", out]) == 0
    return out


# ----------------------------------------------------------------------------- 6. hyperparameters

HYPERPARAMETERS = [
    (["--lr", "nan"], "--lr: must be a finite number"),
    (["--lr", "inf"], "--lr: must be a finite number"),
    (["--lr=-inf"], "--lr: must be a finite number"),
    (["--momentum", "nan"], "--momentum: must be a finite number"),
    (["--momentum", "1"], "--momentum: must be below 1"),
    (["--weight-decay", "inf"], "--weight-decay: must be a finite number"),
    (["--gamma", "nan", "--schedule", "multistep"], "--gamma: must be a finite number"),
    (["--gamma", "-1", "--schedule", "multistep"], "--gamma: must be positive"),
    (["--gamma", "0"], "--gamma: must be positive"),
    (["--rtol", "nan"], "--rtol: must be a finite number"),
    (["--seed", "-1"], "--seed: must be an integer from 0 to 4294967295"),
    (["--seed", str(2 ** 32)], "--seed"),
    (["--seed", str(2 ** 63)], "--seed"),
    (["--seed", str(2 ** 64 + 5)], "--seed"),
]


@pytest.mark.parametrize("args, words", HYPERPARAMETERS)
def test_non_finite_or_out_of_range_hyperparameters_are_refused_before_anything(tmp_path, capsys, no_data,
                                                                                 args, words):
    out = tmp_path / "never"
    assert run_main(train.main, [*ARGS, "--epochs", 1, "--out", out, *args]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.train", words)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, words", [("lr: .nan\n", "--lr: must be a finite number, got nan"),
                                         ("momentum: .inf\n", "--momentum: must be a finite number"),
                                         ("gamma: -0.5\nschedule: multistep\n", "--gamma: must be positive"),
                                         ("seed: -3\n", "--seed")])
def test_yaml_hyperparameters_are_validated_the_same(tmp_path, capsys, no_data, text, words):
    settings = tmp_path / "settings.yaml"
    settings.write_text(text)
    assert run_main(train.main, [*ARGS, "--config", settings, "--out", tmp_path / "never"]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.train", words)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.yaml"]


def test_bad_hyperparameters_in_real_processes_exit_2_in_one_line(tmp_path):
    for args, words in ((["--lr", "nan"], "--lr"), (["--seed", "-1"], "--seed")):
        proc = subprocess.run([sys.executable, "-m", "wiring.train", *ARGS, "--out", str(tmp_path / "r"), *args],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        one_line(proc.stderr, "python -m wiring.train", words)
    assert list(tmp_path.iterdir()) == []


def test_a_study_seed_out_of_range_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "base": {"model": "micro", "epochs": 1},
                                    "grid": {"mode": ["dnw"], "edges": [100], "seed": [-1]}}))
    assert run_main(study.main, [spec, "--dry-run"]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.study", "grid.seed", "-1")


# ----------------------------------------------------------------------------- 7. one line, not a traceback

NOT_UTF8 = {"binary": bytes(range(256)) * 4, "latin-1": "lr: 0.1  # café\n".encode("latin-1")}


@pytest.mark.parametrize("kind", sorted(NOT_UTF8))
def test_a_settings_file_that_is_not_utf8_is_one_line(tmp_path, capsys, no_data, kind):
    settings = tmp_path / "settings.yaml"
    settings.write_bytes(NOT_UTF8[kind])
    assert run_main(train.main, [*ARGS, "--config", settings, "--out", tmp_path / "never"]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.train", "--config", "is not UTF-8 text")
    assert run_main(study.main, [settings, "--dry-run"]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.study", "is not UTF-8 text")
    assert [p.name for p in tmp_path.iterdir()] == ["settings.yaml"]


@pytest.mark.parametrize("tool", [render, plots])
def test_a_run_folder_whose_config_is_not_utf8_is_one_line(tmp_path, capsys, trained, tool):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("wiring.graphml", "initial.graphml", "history.pt", "metrics.jsonl"):
        (run / name).write_bytes((trained / name).read_bytes())
    (run / "config.yaml").write_bytes(NOT_UTF8["binary"])
    assert run_main(tool.main, [run, "-o", tmp_path / "out.png"]) == 2
    one_line(capsys.readouterr().err, tool.PROG, "config.yaml is not UTF-8 text")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("out", ["/proc/run", "/sys/kernel/run"])
def test_an_out_folder_on_a_pseudo_file_system_is_refused_before_the_data_loads(capsys, no_data, out):
    if not Path(out).parent.is_dir():
        pytest.skip(f"no {Path(out).parent} here")
    assert run_main(train.main, [*ARGS, "--out", out]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.train", f"--out {out}", "not a writable folder")
    assert not Path(out).exists()


def test_export_to_proc_is_one_line(capsys, trained):
    assert run_main(export.main, [trained, "-o", "/proc/x.graphml"]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.export", "cannot write /proc/x.graphml")


def limited(limit: int):
    """A child process whose files may grow to ``limit`` bytes: a full disk, at that size."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_during_training_is_one_line_and_leaves_no_partial_file(tmp_path, trained):
    """The file-size limit lets the config, the initial wiring, the metrics line and the
    history through and stops the first checkpoint (best.pt or checkpoint.pt, as big as the
    trained run's)."""
    sizes = {p.name: p.stat().st_size for p in trained.iterdir() if p.is_file()}
    small = max(size for name, size in sizes.items() if name not in ("checkpoint.pt", "best.pt"))
    assert small + 4096 < sizes["checkpoint.pt"]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "wiring.train", *ARGS, "--epochs", "1", "--out", str(out)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=limited(small + 4096))
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr, "python -m wiring.train", "File too large")
    assert any(f"cannot write {out / name}: " in line for name in ("checkpoint.pt", "best.pt")), line
    assert temp_files(tmp_path) == []
    assert not (out / "checkpoint.pt").exists() and not (out / "best.pt").exists()
    for name in ("config.yaml", "initial.graphml"):
        assert (out / name).read_bytes()            # whole files, as written before the disk was full
    yaml.safe_load((out / "config.yaml").read_text())
    read_graphml(out / "initial.graphml")
    if (out / "metrics.jsonl").exists():
        assert (out / "metrics.jsonl").read_text().endswith("\n")
        load_metrics(out / "metrics.jsonl")


@pytest.mark.parametrize("fmt, name", [("graphml", "e.graphml"), ("pyg", "e.pt"), ("edgelist", "e.txt")])
def test_a_full_disk_during_export_is_one_line_and_leaves_nothing(tmp_path, trained, fmt, name):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "wiring.export", str(trained), "--format", fmt,
                           "--all-candidates", "-o", str(out / name)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=limited(2048))
    assert proc.returncode == 2, proc.stderr
    one_line(proc.stderr, "python -m wiring.export", f"cannot write {out / name}", "File too large")
    assert list(out.iterdir()) == []


@pytest.fixture
def drawn(monkeypatch):
    """The text artists of every figure a tool saves, as (shown text, parsed as mathtext)."""
    texts: list[tuple[str, bool]] = []
    original = matplotlib.figure.Figure.savefig

    def savefig(self, *args, **kwargs):
        for artist in self.findobj(matplotlib.text.Text):
            shown, math = artist._preprocess_math(artist.get_text())
            texts.append((shown, bool(math)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return texts


DOLLARS = [  # (file name, GraphML attributes, what the picture must show)
    ("w.graphml", {"preset": "$x^2$"}, "$x^2$"),                  # balanced: silently mathtext before
    ("w.graphml", {"preset": "$a$", "mode": r"$\frac{b$"}, r"$\frac{b$"),   # a parse error before
    (r"$\sqrt{x$.graphml", {}, r"$\sqrt{x$.graphml"),             # a file name: a parse error before
]


@pytest.mark.parametrize("name, attrs, shown", DOLLARS)
def test_dollars_in_graphml_attributes_and_file_names_are_drawn_as_text(tmp_path, capsys, trained, drawn,
                                                                        name, attrs, shown):
    w = read_graphml(trained / "wiring.graphml")
    w.attrs.update(attrs)
    write_graphml(w, tmp_path / name)
    assert run_main(render.main, [tmp_path / name, "-o", tmp_path / "w.png"]) == 0, capsys.readouterr().err
    assert drawn and not any(math for _, math in drawn), [t for t in drawn if t[1]]
    assert any(shown in text for text, _ in drawn), drawn


@pytest.mark.parametrize("tool, out", [(plots, "p.png"), (animate, "a.gif")])
def test_dollars_in_a_run_folder_name_are_drawn_as_text(tmp_path, capsys, trained, drawn, tool, out):
    run = tmp_path / r"$\frac{run$"
    run.mkdir()
    for p in trained.iterdir():
        if p.is_file():
            (run / p.name).write_bytes(p.read_bytes())
    extra = ["--quiet"] if tool is animate else []
    assert run_main(tool.main, [run, "-o", tmp_path / out, *extra]) == 0, capsys.readouterr().err
    assert drawn and not any(math for _, math in drawn), [t for t in drawn if t[1]]
    assert any(r"$\frac{run$" in text for text, _ in drawn)


# ----------------------------------------------------------------------------- 9. GraphML NetworkX wrote

@pytest.fixture
def networkx_graphml(tmp_path) -> Path:
    path = tmp_path / "g.graphml"
    nx.write_graphml(nx.gnp_random_graph(30, 0.1, directed=True, seed=1), path)
    return path


def test_networkx_graphml_is_drawn_by_render_plots_and_explore(tmp_path, capsys, networkx_graphml):
    for tool, out in ((render, "w.png"), (plots, "p.png"), (explore, "w.html")):
        assert run_main(tool.main, [networkx_graphml, "-o", tmp_path / out]) == 0, capsys.readouterr().err
        assert (tmp_path / out).stat().st_size > 0
    assert temp_files(tmp_path) == []


def test_networkx_graphml_is_analyzed_as_a_dynamic_wiring(capsys, networkx_graphml):
    G = nx.read_graphml(networkx_graphml)
    assert not nx.is_directed_acyclic_graph(G)
    assert run_main(analyze.main, [networkx_graphml, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["edges"] == G.number_of_edges() and report["nodes"] == 30
    assert report["acyclic"] is False and report["static"] is False
    assert run_main(analyze.main, [networkx_graphml]) == 0
    assert "static=False" not in capsys.readouterr().out


def test_animate_says_a_graphml_file_is_one_wiring(tmp_path, capsys, networkx_graphml):
    assert run_main(animate.main, [networkx_graphml, "-o", tmp_path / "a.gif"]) == 2
    one_line(capsys.readouterr().err, "python -m viz.animate", "one wiring", "python -m viz.render")
    assert not (tmp_path / "a.gif").exists()


def test_a_graphml_with_its_own_levels_is_still_checked(tmp_path, capsys, trained):
    """Reading cycles as a dynamic wiring is for files without levels: an edge against the
    levels of a static wiring is still refused."""
    text = (trained / "wiring.graphml").read_text()
    G = nx.read_graphml(trained / "wiring.graphml")
    u, v = next(iter(G.edges()))
    G.add_edge(v, u, weight=1.0)
    nx.write_graphml(G, tmp_path / "bad.graphml")
    assert "level" in text
    assert run_main(render.main, [tmp_path / "bad.graphml", "-o", tmp_path / "w.png"]) == 2
    one_line(capsys.readouterr().err, "python -m viz.render", "level")


# ----------------------------------------------------------------------------- 10. smaller

class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_an_unsafe_checkpoint_is_refused_without_the_weights_only_false_hint(tmp_path, capsys, trained):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "payload-ran"
    torch.save({"model": {}, "extra": Payload(marker)}, run / "checkpoint.pt")
    for tool, argv in ((export.main, [run]), (compact.main, [run]),
                       (train.main, [*ARGS, "--out", run, "--resume"])):
        assert run_main(tool, argv) == 2
        line = one_line(capsys.readouterr().err, sys.modules[tool.__module__].PROG, "cannot read checkpoint",
                        "refused")
        assert "weights_only" not in line and "False" not in line
    history = tmp_path / "hrun"
    history.mkdir()
    torch.save(Payload(marker), history / "history.pt")
    assert run_main(render.main, [history, "-o", tmp_path / "w.png"]) == 2
    line = one_line(capsys.readouterr().err, "python -m viz.render", "history file", "refused")
    assert "weights_only" not in line
    assert not marker.exists()


@pytest.mark.parametrize("fmt, name", [("pyg", "x.graphml"), ("graphml", "x.pt"), ("edgelist", "x.graphml")])
def test_export_refuses_an_output_named_as_another_format(tmp_path, capsys, trained, fmt, name):
    assert run_main(export.main, [trained, "--format", fmt, "-o", tmp_path / name]) == 2
    one_line(capsys.readouterr().err, "python -m wiring.export", f"-o {tmp_path / name}")
    assert list(tmp_path.iterdir()) == []


def test_export_with_the_right_suffix_still_writes(tmp_path, capsys, trained):
    assert run_main(export.main, [trained, "--format", "pyg", "-o", tmp_path / "x.pt"]) == 0
    assert torch.load(tmp_path / "x.pt", weights_only=False).edge_index.shape[0] == 2      # a PyG Data


def test_a_batch_larger_than_the_data_set_is_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*ARGS, "--epochs", 1, "--train-subset", 100, "--test-subset", 50, "--batch-size", 300, "--out", out]
    assert run_main(train.main, argv) == 0
    err = capsys.readouterr().err
    assert ("python -m wiring.train: warning: --batch-size 300 is more than the 100 training images"
            in " ".join(err.split())), err
    assert (out / "checkpoint.pt").is_file()


def test_the_compact_export_has_the_users_umask(tmp_path, capsys, trained):
    old = os.umask(0o022)
    try:
        assert run_main(compact.main, [trained, "-o", tmp_path / "c.pt", "--repeats", 1, "--batch", 2]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644
    assert temp_files(tmp_path) == []
