"""Tests for the command-line plumbing every command shares: one UserError base
(wiring.errors), one wrapper (wiring.cli.run_cli) printing ``prog: error: <one line>``
with exit status 2, one crash-safe writer (wiring.files), and every command's --help."""
from __future__ import annotations

import ast
import errno
import importlib
import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from processes import process_env
from wiring import cli, files
from wiring.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
ENV = process_env()

#: every command the README shows, as ``python -m MODULE``
COMMANDS = ("wiring.train", "wiring.study", "wiring.export", "wiring.analyze", "wiring.profile", "wiring.compact",
            "wiring.bench", "wiring.bench_inference", "viz.render", "viz.plots", "viz.animate", "viz.explore",
            "viz.compare")


# ----------------------------------------------------------------------------- one base

def test_every_project_error_a_user_can_cause_is_a_user_error_and_keeps_its_old_base():
    from viz.render import UsageError as VizUsageError
    from wiring.analyze import AnalyzeError
    from wiring.graph import GraphError
    from wiring.io import WiringFileError
    from wiring.study.spec import StudyError
    from wiring.train.checkpoint import CheckpointError
    from wiring.train.config import ConfigError
    from wiring.train.data import DataError
    from wiring.train.pipeline import UsageError
    for cls in (GraphError, WiringFileError, ConfigError, CheckpointError, StudyError, UsageError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError), cls
    for cls in (DataError, AnalyzeError, VizUsageError, files.NotText):
        assert issubclass(cls, UserError), cls


# ----------------------------------------------------------------------------- one wrapper

def run(body, argv=()):
    return cli.run_cli(body, "prog", list(argv))


def raises(exc):
    def body(argv):
        raise exc
    return body


def test_run_cli_passes_the_status_through(capsys):
    assert run(lambda argv: None) == 0 and run(lambda argv: 3) == 3
    assert capsys.readouterr().err == ""


def test_a_user_error_is_one_line_and_status_2(capsys):
    assert run(raises(UserError("--edges: must be positive,\n  got -3"))) == 2
    assert capsys.readouterr().err == "prog: error: --edges: must be positive, got -3\n"


def test_an_empty_user_error_prints_nothing(capsys):      # the silent ranks of a distributed run
    assert run(raises(UserError(""))) == 2
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EROFS, "Read-only file system"),
                                          (errno.EACCES, "Permission denied")])
def test_an_os_error_is_one_line_naming_the_file(capsys, code, reason):
    assert run(raises(OSError(code, reason, "/data/run/checkpoint.pt"))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"prog: error: /data/run/checkpoint.pt: {reason}") and err.count("\n") == 1
    assert ("disk is full" in err) == (code == errno.ENOSPC)


def test_keyboard_interrupt_is_one_line_and_130(capsys):
    assert run(raises(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err.strip() == "prog: interrupted"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run(lambda argv: 1 / 0)


def test_argparse_mistakes_use_the_same_line(capsys):
    parser = cli.ArgumentParser(prog="prog")
    parser.add_argument("--n", type=int, help="a number")
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--n", "x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("prog: error: argument --n: invalid int value")


def command_module(module: str) -> str:
    """The module holding ``main`` of ``python -m module``: the module itself, or for a package
    the module its ``__main__.py`` imports ``main`` from."""
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations is None:
        return module
    tree = ast.parse(Path(spec.submodule_search_locations[0], "__main__.py").read_text())
    return next(node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names))


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_runs_through_run_cli(module):
    """One wrapper: each command's ``main`` hands its body to :func:`wiring.cli.run_cli`."""
    mod = importlib.import_module(command_module(module))
    assert mod.PROG == f"python -m {module}"
    assert "run_cli" in mod.main.__code__.co_names, f"{module}.main does not go through run_cli"


ONE_LINE_MISTAKES = {
    "wiring.train": ["--epochs", "0"],
    "wiring.study": ["/nonexistent/study.yaml"],
    "wiring.export": ["/nonexistent/run"],
    "wiring.analyze": ["/nonexistent/run"],
    "wiring.profile": ["--model", "nope"],
    "wiring.compact": ["/nonexistent/run"],
    "wiring.bench": ["--device", "tpu"],
    "wiring.bench_inference": ["--densities", "2"],
    "viz.render": ["/nonexistent/run"],
    "viz.plots": ["/nonexistent/run"],
    "viz.animate": ["/nonexistent/run"],
    "viz.explore": ["/nonexistent/run"],
    "viz.compare": ["/nonexistent/a", "/nonexistent/b"],
}


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_reports_a_mistake_as_prog_error_one_line(tmp_path, capsys, module, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(command_module(module))
    try:
        code = mod.main(ONE_LINE_MISTAKES[module])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"python -m {module}: error: "), err
    assert list(tmp_path.iterdir()) == []


def test_a_mistake_in_a_real_process_is_prog_error_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wiring.export", str(tmp_path / "none")], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("python -m wiring.export: error: ") and proc.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- --help

def parser_actions(module: str):
    """The actions of a command's parser, captured by running ``--help`` in-process."""
    import argparse
    seen = []
    original = argparse.ArgumentParser.print_help

    def capture(self, file=None):
        seen.append(self)

    argparse.ArgumentParser.print_help = capture
    try:
        try:
            importlib.import_module(command_module(module)).main(["--help"])
        except SystemExit:
            pass
    finally:
        argparse.ArgumentParser.print_help = original
    assert seen, f"{module} --help printed no parser"
    return seen[-1]._actions


@pytest.mark.parametrize("module", COMMANDS)
def test_every_flag_of_every_command_has_help(module):
    missing = [a.option_strings or [a.dest] for a in parser_actions(module) if not (a.help or "").strip()]
    assert missing == [], f"{module}: flags without help: {missing}"


def test_train_help_shows_the_real_default_run_directory():
    """The pattern --help prints names the folder default_run_dir makes, setting and 'all' included."""
    import re

    from wiring.train.config import build_parser, parse_config
    from wiring.train.pipeline import default_run_dir

    help_text = " ".join(build_parser().format_help().split())
    pattern = re.search(r"default (runs/\S+-s<seed>)", help_text).group(1).rstrip(",")
    assert "<setting>" in help_text and "'all'" in help_text
    for argv, setting in ((["--data", "mnist5k", "--graph", "ws", "--edges", "700", "--seed", "3"], None),
                          (["--setting", "discrete", "--mode", "complete"], "discrete")):
        cfg = parse_config(argv)
        model = cfg.model if setting is None else f"{cfg.model}-{setting}"
        edges = "all" if cfg.mode == "complete" else cfg.edges
        expected = pattern
        for key, value in {"data": cfg.data, "model": model, "graph": cfg.graph, "mode": cfg.mode,
                           "edges": edges, "seed": cfg.seed}.items():
            expected = expected.replace(f"<{key}>", str(value))
        if cfg.mode == "complete":
            cfg.edges = None              # what run() records for every candidate real
        assert str(default_run_dir(cfg)) == expected


def test_help_shows_each_flags_real_default(tmp_path):
    """--help names the default of every flag that has one: wiring.train's from the Config
    dataclass (its parser suppresses argparse's defaults), the other commands' from argparse."""
    def flag_help(module: str, flag: str) -> str:
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        entries: list[str] = []                       # one per flag: its line and the help lines below it
        for line in proc.stdout.splitlines():
            if line.startswith("  -"):
                entries.append(line)
            elif entries and line.startswith("      "):
                entries[-1] += line
        return " ".join(next(e for e in entries if e.split()[0].rstrip(",") == flag).split())

    assert "(default: 12000)" in flag_help("wiring.train", "--edges")
    assert "(default: 30)" in flag_help("wiring.train", "--epochs")
    assert "(default: 0.1)" in flag_help("wiring.train", "--lr")
    assert "(default: 80 120)" in flag_help("wiring.train", "--milestones")
    assert flag_help("wiring.study", "--executor").endswith("(default: jobs)")


@pytest.mark.parametrize("module", COMMANDS)
def test_help_answers_without_importing_torch_or_the_engines_networks(module, tmp_path):
    """``python -m MODULE --help`` in a real process: the help, exit 0, and among the modules it
    imported (``-X importtime``) neither torch nor the networks (models.tiny, wiring.layer)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--help"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m "), proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert len(imported) > 20, proc.stderr[-2000:]                      # the importtime lines were read
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "torchvision", "torch_geometric")
                   or m in ("models.tiny", "models.dynamic", "wiring.layer", "wiring.train.pipeline"))
    assert heavy == [], f"{module} --help imported {heavy}"


def test_candidate_grad_every_has_help():
    from wiring.train.config import build_parser
    text = " ".join(build_parser().format_help().split())
    assert "--candidate-grad-every CANDIDATE_GRAD_EVERY give the hallucinated" in text


# ----------------------------------------------------------------------------- one writer

def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        files.atomic_write(tmp_path / "a.txt", lambda f: f.write("x"), binary=False)
        with files.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


def test_a_failed_write_leaves_the_old_file_names_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "c.pt"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        files.atomic_write(target, fail, binary=True)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


FULL_DISK = r"""
import os, resource, sys, torch
from wiring.files import atomic_write
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    atomic_write(sys.argv[1], lambda f: torch.save({"w": torch.zeros(10000)}, f), binary=True)
except OSError as err:
    print(type(err).__name__, err.errno, err.filename)
"""


def test_torch_save_on_a_full_disk_is_an_os_error_not_inline_container(tmp_path):
    """torch.save turns the failed write into a RuntimeError from inline_container.cc; the
    writer gives back the OSError, naming the target."""
    target = tmp_path / "big.pt"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["OSError", str(errno.EFBIG), str(target)], proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_append_line_is_all_or_nothing(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    files.append_line(log, '{"epoch": 1}')
    real_write = os.write

    def short(fd, data):                  # half of the line gets out, then the disk is full
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short)
    with pytest.raises(OSError) as info:
        files.append_line(log, '{"epoch": 2, "loss": 0.5}')
    monkeypatch.undo()
    assert info.value.filename == str(log)
    assert log.read_text() == '{"epoch": 1}\n'


def test_read_text_names_the_first_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"lr: 0.1\n\x80\x81")
    with pytest.raises(files.NotText, match=r"c.yaml is not UTF-8 text \(byte 0x80 at offset 8\)"):
        files.read_text(path)


def test_load_refusal_never_passes_on_the_weights_only_false_hint(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save(Payload(), tmp_path / "p.pt")
    with pytest.raises(Exception) as info:
        torch.load(tmp_path / "p.pt", weights_only=True)
    assert "weights_only" in str(info.value)                   # torch's own message has the hint
    text = files.load_refusal(info.value)
    assert "weights_only" not in text and "False" not in text and "\n" not in text
    assert "system" in text and "refused" in text
