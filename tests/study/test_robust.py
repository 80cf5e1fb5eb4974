"""wiring.study never loses or misreports a result (issue 27): a full disk (RLIMIT_FSIZE in a
real process), torn records, bad records, two studies on one folder, bad grids caught before
the first cell, SIGTERM, and the command line (report in the study folder, --set, --only)."""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from processes import process_env, run_main
from wiring.study import report as study_report
from wiring.study import results as study_results
from wiring.study.command import main
from wiring.study.spec import load_study

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
BASE = {"data": "digits", "model": "micro", "epochs": 1, "batch-size": 32, "train-subset": 300, "test-subset": 200}
MICRO = {"name": "micro", "base": BASE, "grid": {"mode": ["dnw", "fixed"], "edges": [100], "seed": [0]}}


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def record(study, cell, acc: float = 0.5) -> dict:
    """A results-file record as the study writes it, with a known accuracy."""
    return {"cell": cell.name, "setting": cell.setting, "mode": cell.mode, "edges": cell.edges_label,
            "seed": cell.seed, "status": "done", "test_acc": acc, "best_acc": acc, "epochs": 1, "seconds": 1.0,
            "curve": [acc], "loss": [1.0], "swapped": [0], "density": 0.1, "real_edges": 100, "depth": 2,
            "dead": 0, "wiring": {"graph": {"edges": 100}}, "settings": study_results.cell_settings(study, cell),
            "finished": "2026-12-07 00:00:00"}


def one_error_line(err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m wiring.study: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def study_process(args, limit: int | None = None, **kwargs) -> subprocess.Popen:
    """``python -m wiring.study ARGS`` as a real process, with files limited to ``limit`` bytes
    (RLIMIT_FSIZE: a full disk; SIGXFSZ ignored, so a write past it fails with EFBIG)."""
    def limited():
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.Popen([sys.executable, "-m", "wiring.study", *map(str, args)], env=process_env(),
                            cwd=ROOT, preexec_fn=limited, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def recorded_study(tmp_path: Path, extra_notes: str = "") -> tuple[Path, Path, Path]:
    """A study whose results file holds every cell (hand-written), its report built once."""
    config = write(tmp_path / "micro.yaml", MICRO)
    study = load_study(config)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    for i, cell in enumerate(study.cells()):
        study_results.append_result(results, record(study, cell, 0.5 + i / 10))
    assert run_main(main, [config, "--out", out, "--report-only"]) == 0
    report = out / "results.md"
    report.write_text(report.read_text() + "\n" + study_report.NOTES_MARKER + "\n" + extra_notes)
    return config, out, report


# ----------------------------------------------------------------------------- nothing lost

def test_a_full_disk_while_the_report_is_rebuilt_keeps_the_report_and_its_notes(tmp_path):
    notes = "hand-written notes that exist nowhere else\n" * 3000            # ~130 kB: larger than the limit
    config, out, report = recorded_study(tmp_path, notes)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    limit = max(len(b) for name, b in before.items() if name != report.name) + 1000   # the plots still fit
    assert len(before[report.name]) > limit
    code, _, err = finish(study_process([config, "--out", out, "--report-only"], limit=limit))
    assert code == 2
    one_error_line(err, str(report))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after[report.name] == before[report.name]                  # not truncated: the notes are there
    assert sorted(after) == sorted(before)                            # no temporary file left behind


def test_a_full_disk_while_a_plot_is_written_keeps_the_old_plot(tmp_path):
    config, out, report = recorded_study(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, _, err = finish(study_process([config, "--out", out, "--report-only"], limit=5000))
    assert code == 2
    one_error_line(err, str(out / "results_"), ".png")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


def test_a_full_disk_while_a_record_is_appended_leaves_whole_records_and_loses_no_result(tmp_path):
    config = write(tmp_path / "micro.yaml", {**MICRO, "grid": {"mode": ["dnw"], "edges": [100], "seed": [0]}})
    study = load_study(config)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    other = load_study(write(tmp_path / "other.yaml", {**MICRO, "grid": {"mode": ["fixed"], "edges": [100],
                                                                           "seed": list(range(150))}}))
    for cell in other.cells():                      # 150 records of other cells: larger than a checkpoint
        study_results.append_result(results, record(other, cell))
    before = results.read_bytes()
    assert len(before) > 90_000
    code, _, err = finish(study_process([config, "--out", out], limit=len(before) + 50))
    assert code == 2
    one_error_line(err, str(results))
    assert results.read_bytes() == before                     # whole records or nothing: no half line
    code, out_text, _ = finish(study_process([config, "--out", out]))    # the disk has room again
    assert code == 0 and "finished, skipped" in out_text     # its run folder is done: recorded, not retrained
    records = study_results.read_results(results)
    assert len(records) == 151 and records["static-dnw-100-s0"]["status"] == "done"


@pytest.mark.parametrize("newline", ["", "\n"])
def test_a_torn_last_record_is_reported_once_and_dropped_at_the_next_append(tmp_path, capsys, newline):
    config = write(tmp_path / "micro.yaml", MICRO)
    study = load_study(config)
    dnw, fixed = study.cells()
    out = tmp_path / "out"
    results = out / "results.jsonl"
    study_results.append_result(results, record(study, dnw, 0.75))
    whole = results.read_text()
    results.write_text(whole + json.dumps(record(study, fixed))[:70] + newline)     # a write cut short
    assert run_main(main, [config, "--out", out, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("line 2: a record cut short") == 1 and str(results) in captured.err
    assert "[recorded]" in captured.out and "[new]" in captured.out
    assert run_main(main, [config, "--out", out]) == 0            # trains the fixed cell, appends its record
    assert capsys.readouterr().err.count("cut short") == 1
    lines = results.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == whole.strip()
    assert [json.loads(line)["cell"] for line in lines] == [dnw.name, fixed.name]
    assert run_main(main, [config, "--out", out, "--dry-run"]) == 0     # and it stays readable
    assert "cut short" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad records

@pytest.mark.parametrize("change, words", [
    (lambda r: r.pop("test_acc"), ["no field 'test_acc'"]),
    (lambda r: r.update(test_acc="0.5"), ["'test_acc'", '"0.5"']),
    (lambda r: r.update(test_acc=57.0), ["'test_acc'", "from 0 to 1", "57.0"]),
    (lambda r: r.update(test_acc=float("nan")), ["'test_acc'", "NaN"]),
    (lambda r: r.update(best_acc=float("inf")), ["'best_acc'", "Infinity"]),
    (lambda r: r.update(curve=None), ["'curve'", "null"]),
    (lambda r: r.update(swapped="abc"), ["'swapped'", "abc"]),
    (lambda r: r.update(wiring="zzz"), ["'wiring'", "zzz"]),
    (lambda r: r.update(settings=[]), ["'settings'"]),
])
def test_a_bad_record_is_refused_with_one_line_naming_the_file_and_line(tmp_path, capsys, change, words):
    config = write(tmp_path / "micro.yaml", MICRO)
    study = load_study(config)
    good, bad = (record(study, cell) for cell in study.cells())
    change(bad)
    results = tmp_path / "out" / "results.jsonl"
    results.parent.mkdir()
    results.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    for args in (["--dry-run"], ["--report-only"], []):
        assert run_main(main, [config, "--out", tmp_path / "out", *args]) == 2
        one_error_line(capsys.readouterr().err, f"results file {results}, line 2:", *words)


def test_a_results_file_that_is_not_utf8_is_refused_with_one_line(tmp_path, capsys):
    config = write(tmp_path / "micro.yaml", MICRO)
    results = tmp_path / "out" / "results.jsonl"
    results.parent.mkdir()
    results.write_bytes(json.dumps(record(load_study(config), load_study(config).cells()[0])).encode()
                        + b"\n{\"cell\": \"caf\xe9\"}\n{}\n")
    assert run_main(main, [config, "--out", tmp_path / "out", "--dry-run"]) == 2
    one_error_line(capsys.readouterr().err, f"results file {results}, line 2:", "not UTF-8")


def test_the_committed_results_files_still_load():
    for config, results, count in (("study_budget.yaml", "results_budget.jsonl", 48),
                                   ("study_budget_discrete.yaml", "results_discrete.jsonl", 18)):
        records = study_results.read_results(ROOT / "docs" / results)
        assert len(records) == count
        study = load_study(ROOT / "configs" / config)
        assert sum(bool(study_results.recorded(study, c, records)) for c in study.cells()) == count


# ----------------------------------------------------------------------------- one study per folder

def test_a_second_study_on_the_same_out_exits_2_naming_the_first_and_sigterm_stops_it_resumably(tmp_path, capsys):
    """Study A trains a cell of several epochs; study B on the same --out is refused naming A's
    pid; SIGTERM stops A with the cell's checkpoint of the moment (one line, exit 143); the same
    command continues it exactly (the same accuracies as a study never stopped)."""
    data = {**MICRO, "base": {**BASE, "epochs": 6, "batch-size": 16, "train-subset": None},
            "grid": {"mode": ["dnw"], "edges": [100], "seed": [0]}}
    config = write(tmp_path / "long.yaml", data)
    out = tmp_path / "out"
    metrics = out / "static-dnw-100-s0" / "metrics.jsonl"
    first = study_process([config, "--out", out])
    try:
        deadline = time.monotonic() + 120
        while not metrics.is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        assert run_main(main, [config, "--out", out]) == 2
        one_error_line(capsys.readouterr().err, f"study folder {out} is in use by process {first.pid}")
        first.send_signal(signal.SIGTERM)
        code, _, err = finish(first, 120)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 143, err
    assert err.strip().count("\n") == 0 and "stopped by SIGTERM" in err and "static-dnw-100-s0" in err, err
    checkpoint = torch.load(out / "static-dnw-100-s0" / "checkpoint.pt", weights_only=True)
    assert not (out / "static-dnw-100-s0" / "wiring.graphml").exists()
    assert checkpoint                                             # the moment it was stopped at
    code, text, err = finish(study_process([config, "--out", out]))
    assert code == 0 and "resuming" in text, err
    assert run_main(main, [config, "--out", tmp_path / "plain"]) == 0   # the same study, never stopped
    resumed = study_results.read_results(out / "results.jsonl")["static-dnw-100-s0"]
    plain = study_results.read_results(tmp_path / "plain" / "results.jsonl")["static-dnw-100-s0"]
    assert resumed["curve"] == plain["curve"] and resumed["test_acc"] == plain["test_acc"]
    assert resumed["loss"] == pytest.approx(plain["loss"], rel=1e-5)


def test_sigterm_to_a_study_of_worker_processes_stops_every_cell_under_way_with_its_checkpoint(tmp_path):
    data = {**MICRO, "base": {**BASE, "epochs": 6, "batch-size": 8, "train-subset": None}}
    config = write(tmp_path / "two.yaml", data)
    out = tmp_path / "out"
    proc = study_process([config, "--out", out, "--jobs", "2"])
    try:
        deadline = time.monotonic() + 120
        while not all((out / f"static-{m}-100-s0" / "metrics.jsonl").is_file() for m in ("dnw", "fixed")) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 143, err
    assert err.strip().count("\n") == 0 and "static-dnw-100-s0, static-fixed-100-s0 stopped" in err, err
    for mode in ("dnw", "fixed"):
        cell = out / f"static-{mode}-100-s0"
        assert (cell / "checkpoint.pt").is_file() and not (cell / "wiring.graphml").exists()
        assert "holds that moment" in (out / "logs" / f"{cell.name}.log").read_text()
    assert not (out / "results.jsonl").exists()


# ----------------------------------------------------------------------------- checked up front

def test_every_budget_is_checked_against_the_models_candidates_before_any_cell(tmp_path, capsys):
    config = write(tmp_path / "big.yaml", {**MICRO, "grid": {"mode": ["dnw"], "edges": [500, 100000], "seed": [0]}})
    for args in (["--dry-run"], []):
        assert run_main(main, [config, "--out", tmp_path / "out", *args]) == 2
        one_error_line(capsys.readouterr().err, "100000", "1712 candidate edges", "micro")
    assert not (tmp_path / "out").exists()                      # nothing trained, nothing written


def test_a_grid_over_the_cell_limit_is_refused_at_once(tmp_path, capsys):
    config = write(tmp_path / "huge.yaml", {**MICRO, "grid": {"mode": ["dnw", "fixed"], "edges": list(range(1, 1001)),
                                                              "seed": list(range(500))}})
    assert run_main(main, [config, "--dry-run"]) == 2           # 10^6 cells: counted, not made
    one_error_line(capsys.readouterr().err, "1,000,000 cells", "10,000", "--max-cells")
    assert run_main(main, [write(tmp_path / "m.yaml", MICRO), "--dry-run", "--max-cells", "1"]) == 2
    one_error_line(capsys.readouterr().err, "2 cells", "more than the limit of 1")


def test_a_bad_backend_device_or_missing_data_is_refused_before_any_cell(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WIRING_BACKEND", "junk")
    config = write(tmp_path / "m.yaml", MICRO)
    assert run_main(main, [config, "--out", tmp_path / "out", "--dry-run"]) == 2
    one_error_line(capsys.readouterr().err, "$WIRING_BACKEND", "junk", "choose from")
    monkeypatch.delenv("WIRING_BACKEND")
    missing = tmp_path / "no-such-folder"
    fashion = write(tmp_path / "f.yaml", {**MICRO, "base": {**BASE, "data": "fashion-mnist"}})
    assert run_main(main, [fashion, "--out", tmp_path / "out", "--data-dir", missing]) == 2
    one_error_line(capsys.readouterr().err, "fashion-mnist", str(missing))
    if not torch.cuda.is_available():
        cuda = write(tmp_path / "c.yaml", {**MICRO, "base": {**BASE, "device": "cuda"}})
        assert run_main(main, [cuda, "--out", tmp_path / "out", "--dry-run"]) == 2
        one_error_line(capsys.readouterr().err, "cuda", "CUDA is not available")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the command line

def test_the_report_defaults_to_the_study_folder_and_set_and_only_shape_the_study(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "micro.yaml", {**MICRO, "grid": {"mode": ["dnw", "fixed"], "edges": [100, 200],
                                                               "seed": [0]}})
    args = [config, "--set", "train-subset=150", "--set", "epochs=1", "--only", "static-dnw-*"]
    assert run_main(main, [*args, "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "static-dnw-100-s0" in listed and "static-dnw-200-s0" in listed and "fixed" not in listed
    assert run_main(main, args) == 0
    out = tmp_path / "runs" / "study-micro"
    assert (out / "results.md").is_file() and (out / "results.jsonl").is_file()
    assert not (tmp_path / "docs").exists()                       # no committed report touched
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("static")) == \
        ["static-dnw-100-s0", "static-dnw-200-s0"]
    saved = yaml.safe_load((out / "static-dnw-100-s0" / "config.yaml").read_text())
    assert saved["train_subset"] == 150
    report = (out / "results.md").read_text()
    assert "--set train-subset=150" in report and "--only 'static-dnw-*'" in report and "--report " not in report
    assert run_main(main, [config, "--set", "nonsense=1", "--dry-run"]) == 2
    one_error_line(capsys.readouterr().err, "--set nonsense=1", "unknown training setting")
    assert run_main(main, [config, "--only", "zzz*", "--dry-run"]) == 2
    one_error_line(capsys.readouterr().err, "--only zzz*", "matches none")


def test_every_committed_reports_command_names_it_with_report():
    """A committed report in docs/ is rebuilt only by a command that names it (--report): the
    'Produced by' line of each, and the lines of the configs and the README that write one."""
    import re
    for report in sorted((ROOT / "docs").glob("results*.md")):
        text = report.read_text()
        for command in re.findall(r"`(python -m wiring\.study [^`]+)`", text):
            if "--dry-run" not in command:
                assert f"--report docs/{report.name}" in command, (report.name, command)
    lines = [line for path in [ROOT / "README.md", *sorted((ROOT / "configs").glob("study_*.yaml"))]
             for line in path.read_text().splitlines() if "python -m wiring.study" in line]
    for line in lines:
        assert "docs/" not in line or "--report docs/" in line, line
        for name in re.findall(r"--report (docs/\S+\.md)", line):
            assert (ROOT / name).is_file() or "cifar10" in name, line
