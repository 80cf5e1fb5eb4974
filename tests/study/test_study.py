"""wiring.study: a grid of runs, sources before fine_tune / lottery, resumable, CSV and report."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from wiring.study import report as study_report
from wiring.study import results as study_results
from wiring.study import cell as study_cell
from wiring.study import spec
from wiring.study.command import main
from wiring.study.spec import load_study

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny",
    "base": {"data": "digits", "model": "micro", "epochs": 1, "batch-size": 512},
    "grid": {"setting": ["static"], "mode": ["dnw", "fixed", "complete", "fine_tune", "lottery"],
             "edges": [100, 200], "seed": [0]},
    "paper": [{"label": "Table 1", "title": "DNW Table 1, CIFAR-10",
               "values": {"static": {"fixed": "76.1 +- 0.5", "dnw": "80.9 +- 0.6"}}}],
}
ORDER = ["static-dnw-100-s0", "static-dnw-200-s0", "static-fixed-100-s0", "static-fixed-200-s0",
         "static-complete-all-s0", "static-fine_tune-100-s0", "static-fine_tune-200-s0",
         "static-lottery-100-s0", "static-lottery-200-s0"]


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Counting:
    """A stand-in for wiring.train.run that counts the cells it trains."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, cfg, **kwargs):
        self.calls.append((Path(cfg.out).name, cfg.resume))
        return self.real(cfg, **kwargs)


@pytest.fixture(scope="module")
def done(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("study")
    config = write(root / "tiny.yaml", TINY)
    out, report = root / "out", root / "docs" / "results.md"
    args = [str(config), "--out", str(out), "--report", str(report)]
    counting = Counting(study_cell.run)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(study_cell, "run", counting)
        code = main(args)
    return {"root": root, "config": config, "out": out, "report": report, "args": args, "code": code,
            "calls": counting.calls}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_study_runs_every_cell_sources_first_with_from(done, capsys):
    assert done["code"] == 0
    out = done["out"]
    rows = read_csv(out / "results.csv")
    assert len(rows) == 9
    assert [f"{r['setting']}-{r['mode']}-{r['edges']}-s{r['seed']}" for r in rows] == ORDER
    assert list(rows[0]) == ["setting", "mode", "edges", "seed", "test_acc", "best_acc", "epochs", "seconds",
                             "swapped_total", "status"]
    for row in rows:
        assert row["status"] == "done" and row["epochs"] == "1"
        assert 0 <= float(row["test_acc"]) <= float(row["best_acc"]) <= 1
        assert float(row["seconds"]) > 0 and int(row["swapped_total"]) >= 0
    for mode in ("fine_tune", "lottery"):
        for edges in (100, 200):
            saved = yaml.safe_load((out / f"static-{mode}-{edges}-s0" / "config.yaml").read_text())
            assert saved["from_run"] == str(out / "static-complete-all-s0")
            assert saved["mode"] == mode and saved["edges"] == edges
    complete = out / "static-complete-all-s0"
    assert yaml.safe_load((complete / "config.yaml").read_text())["edges"] is None     # as the study gave it
    # the effective k, every candidate of the micro graph, is recorded beside the config, not in it
    assert torch.load(complete / "checkpoint.pt", weights_only=True)["edges"] == 1712
    assert json.loads((complete / "metrics.jsonl").read_text().splitlines()[-1])["edges"] == 1712
    assert done["calls"] == [(name, False) for name in ORDER]     # sources before their dependents


def test_the_report_has_the_budget_table_paper_comparison_and_plots(done):
    text = done["report"].read_text()
    assert text.startswith("# Study `tiny`")
    assert f"python -m wiring.study {done['config']} --out {done['out']} --report {done['report']}" in text
    assert "`digits`" in text and "1 epoch, batch 512" in text
    assert "| setting | mode | edges | density | seeds | test acc (%) | best acc (%) | paper: Table 1 |" in text
    accuracy = text.split("## Test accuracy", 1)[1].split("## ", 1)[0]
    table = [line for line in accuracy.splitlines() if line.startswith("| static |")]
    assert len(table) == 9                    # (setting, mode, edges) groups: complete once
    assert any("| dnw | 100 |" in line and "80.9 +- 0.6" in line for line in table)
    assert any("| complete | all (1712) |" in line for line in table)
    assert "- **static**: at 100 edges DNW > random graph" in text and "at 200 edges" in text
    assert "Paper (Table 1: 80.9 vs 76.1, +4.8)" in text
    for name in ("results_edges.png", "results_curves.png"):
        assert (done["report"].parent / name).stat().st_size > 1000
        assert f"]({name})" in text


def test_the_report_sets_dnw_against_each_ablation_per_budget(done):
    text = done["report"].read_text()
    section = text.split("## Does DNW beat its ablations?", 1)[1].split("## Plots", 1)[0]
    rows = {(r["mode"], r["edges"]): 100 * float(r["test_acc"]) for r in read_csv(done["out"] / "results.csv")}
    for mode, name in (("complete", "complete graph"), ("fine_tune", "fine-tuned top-k of the complete graph"),
                       ("lottery", "one-shot lottery ticket")):
        assert f"**DNW vs {name}** (`{mode}`)" in section
        for edges in ("100", "200"):
            diff = rows[("dnw", edges)] - rows[(mode, edges if mode != "complete" else "all")]
            assert f"at {edges} edges DNW > {name} " in section
            assert f"{diff:+.2f} points (1 seed each: no spread)" in section
    assert "DNW vs random graph" not in section          # that one has its own section


def test_hand_written_notes_survive_a_rebuild(done, tmp_path):
    report = tmp_path / "results.md"
    args = [str(done["config"]), "--out", str(done["out"]), "--report", str(report), "--report-only"]
    assert main(args) == 0
    notes = "\n## What we make of it\n\nDNW churns too much at this budget.\n"
    report.write_text(report.read_text() + "\n" + study_report.NOTES_MARKER + notes)
    assert main(args) == 0
    text = report.read_text()
    assert text.count(study_report.NOTES_MARKER) == 1 and text.endswith(notes)
    assert text.startswith("# Study `tiny`")


def test_rerun_skips_finished_cells_and_report_only_rebuilds_the_same(done, monkeypatch, capsys):
    counting = Counting(study_cell.run)
    monkeypatch.setattr(study_cell, "run", counting)
    csv_before, report_before = (done["out"] / "results.csv").read_text(), done["report"].read_text()
    assert main(done["args"]) == 0
    assert counting.calls == []
    assert capsys.readouterr().out.count("finished, skipped") == 9
    assert (done["out"] / "results.csv").read_text() == csv_before
    (done["out"] / "results.csv").unlink()
    done["report"].unlink()
    assert main([*done["args"], "--report-only"]) == 0
    assert counting.calls == []
    assert (done["out"] / "results.csv").read_text() == csv_before
    assert done["report"].read_text() == report_before


def test_unfinished_cells_resume_from_their_checkpoint(done, monkeypatch):
    counting = Counting(study_cell.run)
    monkeypatch.setattr(study_cell, "run", counting)
    out = done["out"]
    for name in ("static-complete-all-s0", "static-fixed-100-s0"):
        (out / name / "wiring.graphml").unlink()
    done["report"].with_suffix(".jsonl").unlink()     # no results file: the run folders decide
    assert main(done["args"]) == 0
    assert counting.calls == [("static-fixed-100-s0", True), ("static-complete-all-s0", True)]
    for name in ("static-complete-all-s0", "static-fixed-100-s0"):
        assert (out / name / "wiring.graphml").is_file()
        assert len((out / name / "metrics.jsonl").read_text().splitlines()) == 1


def test_cells_are_independent_of_the_study(done, tmp_path):
    """A study cell gives the same result as the same run on its own."""
    from wiring.train.pipeline import main as train_main
    alone = tmp_path / "alone"
    assert train_main(["--model", "micro", "--data", "digits", "--epochs", "1", "--batch-size", "512",
                       "--edges", "200", "--mode", "dnw", "--seed", "0", "--progress", "none",
                       "--out", str(alone)]) == 0
    ours = json.loads((done["out"] / "static-dnw-200-s0" / "metrics.jsonl").read_text().splitlines()[0])
    theirs = json.loads((alone / "metrics.jsonl").read_text().splitlines()[0])
    assert (ours["loss"], ours["test_acc"], ours["swapped"]) == (theirs["loss"], theirs["test_acc"], theirs["swapped"])


def test_dry_run_lists_the_cells_in_order_with_from(tmp_path, capsys):
    config = write(tmp_path / "tiny.yaml", TINY)
    assert main([str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("study tiny: 9 cells")
    names = [line.split()[1] for line in lines[1:]]
    assert names == ORDER
    assert lines[6].endswith(f"--from {tmp_path / 'out' / 'static-complete-all-s0'}")
    assert not (tmp_path / "out").exists()


def test_without_complete_fine_tune_starts_from_dnw_and_a_failed_cell_does_not_stop_the_study(tmp_path, capsys):
    data = {"name": "f", "base": {"data": "digits", "model": "micro", "epochs": 1, "batch-size": 512},
            "grid": {"mode": ["dnw", "fine_tune"], "edges": [200, 100], "seed": [3]}}
    config = write(tmp_path / "f.yaml", data)
    study = load_study(config)
    assert [(c.name, c.source) for c in study.cells()] == [
        ("static-dnw-200-s3", None), ("static-dnw-100-s3", None),
        ("static-fine_tune-200-s3", "static-dnw-200-s3"), ("static-fine_tune-100-s3", "static-dnw-100-s3")]
    out, report = tmp_path / "out", tmp_path / "r.md"
    out.mkdir()
    (out / "static-dnw-200-s3").write_text("a file where the cell's run folder goes: the cell fails")
    assert main([str(config), "--out", str(out), "--report", str(report)]) == 1
    err = capsys.readouterr().err
    assert "2 of 4 cells failed" in err
    rows = {f"{r['mode']}-{r['edges']}": r["status"] for r in read_csv(out / "results.csv")}
    assert rows == {"dnw-200": "failed", "dnw-100": "done", "fine_tune-200": "failed", "fine_tune-100": "done"}
    saved = yaml.safe_load((out / "static-fine_tune-100-s3" / "config.yaml").read_text())
    assert saved["from_run"] == str(out / "static-dnw-100-s3")
    text = report.read_text()
    assert "start from the trained **`dnw`** cell" in text
    assert "`static-dnw-200-s3`: failed:" in text and "its source static-dnw-200-s3 failed" in text


@pytest.mark.parametrize("change, message", [
    (lambda d: d["grid"].update(mode=["dnw", "magic"]), "grid.mode: unknown mode 'magic'"),
    (lambda d: d.update(grid={}), "'grid' is empty"),
    (lambda d: d["grid"].update(edges=[]), "grid.edges is empty"),
    (lambda d: d.pop("grid"), "missing 'grid'"),
    (lambda d: d["base"].update(mode="dnw"), "base: 'mode' is set for each cell"),
    (lambda d: d["base"].update(epochz=3), "base: unknown training setting 'epochz'"),
    (lambda d: d["base"].update(epochs=0), "base: --epochs: must be positive"),
    (lambda d: d["grid"].update(mode=["fine_tune"]), "add complete to the modes"),
])
def test_a_bad_config_exits_2_with_one_line(tmp_path, capsys, change, message):
    data = json.loads(json.dumps(TINY))
    change(data)
    config = write(tmp_path / "bad.yaml", data)
    assert main([str(config), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_a_missing_config_and_bad_jobs_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    config = write(tmp_path / "ok.yaml", TINY)
    assert main([str(config), "--jobs", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("name, cells", [("study_quick.yaml", 16), ("study_default.yaml", 144),
                                         ("study_cifar10.yaml", 144)])
def test_the_shipped_configs_parse(name, cells):
    study = load_study(ROOT / "configs" / name)
    order = [c.name for c in study.cells()]
    assert len(order) == cells
    for cell in study.cells():
        if cell.source:
            assert order.index(cell.source) < order.index(cell.name)


# ----------------------------------------------------------------------------- results file

PAIRED = {"name": "paired", "base": {"data": "digits", "model": "micro", "epochs": 1, "batch-size": 512},
          "grid": {"setting": ["static"], "mode": ["dnw", "fixed", "dnw_no_update"], "edges": [60, 120],
                   "seed": [0, 1]},
          "order": ["edges", "seed", "mode"], "mode_edges": {"dnw_no_update": [120]}}


def test_order_and_mode_edges_shape_the_cells(tmp_path):
    study = load_study(write(tmp_path / "p.yaml", PAIRED))
    assert [c.name for c in study.cells()] == [
        "static-dnw-60-s0", "static-fixed-60-s0", "static-dnw-60-s1", "static-fixed-60-s1",
        "static-dnw-120-s0", "static-fixed-120-s0", "static-dnw_no_update-120-s0",
        "static-dnw-120-s1", "static-fixed-120-s1", "static-dnw_no_update-120-s1"]
    with pytest.raises(spec.StudyError, match="'order' must list mode, edges and seed"):
        load_study(write(tmp_path / "b.yaml", {**PAIRED, "order": ["edges", "mode"]}))
    with pytest.raises(spec.StudyError, match="mode_edges.dnw_no_update: 30 is not one of grid.edges"):
        load_study(write(tmp_path / "c.yaml", {**PAIRED, "mode_edges": {"dnw_no_update": [30]}}))


def test_an_interrupted_study_continues_from_its_results_file_without_run_folders(tmp_path, monkeypatch, capsys):
    """A real study process is interrupted (SIGINT) after some cells finished; its run folders are
    deleted, its results file kept; the rerun trains only the cells the file does not hold."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    config = write(tmp_path / "paired.yaml", PAIRED)
    out, report = tmp_path / "out", tmp_path / "docs" / "results.md"
    results = report.with_suffix(".jsonl")
    args = [str(config), "--out", str(out), "--report", str(report)]
    proc = subprocess.Popen([sys.executable, "-m", "wiring.study", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if results.is_file() and len(study_results.read_results(results)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, output                     # interrupted, not finished
    first = study_results.read_results(results)
    assert 2 <= len(first) < 10
    assert all(r["status"] == "done" and r["epochs"] == 1 and len(r["curve"]) == 1 for r in first.values())
    assert all(r["wiring"]["graph"]["edges"] == int(r["edges"]) for r in first.values())
    shutil.rmtree(out)                                         # no run folders, no checkpoints

    counting = Counting(study_cell.run)
    monkeypatch.setattr(study_cell, "run", counting)
    capsys.readouterr()
    assert main(args) == 0
    trained = {name for name, _ in counting.calls}
    assert trained.isdisjoint(first)                           # nothing finished is trained again
    assert len(trained) + len(first) == 10
    assert capsys.readouterr().out.count("finished, skipped (recorded in") == len(first)
    assert all(not (out / name).exists() for name in first)
    lines = results.read_text().splitlines()
    assert sorted(json.loads(line)["cell"] for line in lines if line.strip()) == sorted(
        c.name for c in load_study(config).cells())            # every cell once
    # the report comes from the file alone: all 10 cells done, the first ones' numbers as recorded
    shutil.rmtree(out)
    assert main([*args, "--report-only"]) == 0
    assert "10 cells: 10 done" in report.read_text()
    rows = {r["cell"].name: r for r in study_results.collect(load_study(config), out, results)}
    assert all(rows[name]["test_acc"] == first[name]["test_acc"] for name in first)


def test_a_record_counts_only_with_the_cells_current_settings(tmp_path, monkeypatch):
    small = {**PAIRED, "grid": {**PAIRED["grid"], "mode": ["dnw"], "edges": [60], "seed": [0]}, "mode_edges": {}}
    config = write(tmp_path / "s.yaml", small)
    args = [str(config), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "r.md")]
    counting = Counting(study_cell.run)
    monkeypatch.setattr(study_cell, "run", counting)
    assert main(args) == 0 and len(counting.calls) == 1
    write(config, {**small, "base": {**small["base"], "lr": 0.05}})     # a different cell now
    import shutil
    shutil.rmtree(tmp_path / "out")
    assert main(args) == 0 and len(counting.calls) == 2
    (tmp_path / "r.jsonl").write_text((tmp_path / "r.jsonl").read_text() + '{"cell": "x", ')  # cut short
    assert main([*args, "--report-only"]) == 0
    (tmp_path / "r.jsonl").write_text('nonsense\n{"cell": "static-dnw-60-s0"}\n')
    assert main([*args, "--report-only"]) == 2


def test_report_pairs_dnw_and_the_random_graph_by_seed_from_the_results_file(tmp_path):
    """Hand-written records with known accuracies: the paired differences, their spread, the
    churn table and the difference plot follow exactly, from the results file alone."""
    study = load_study(write(tmp_path / "p.yaml", PAIRED))
    acc = {("dnw", 60, 0): 0.80, ("fixed", 60, 0): 0.75, ("dnw", 60, 1): 0.82, ("fixed", 60, 1): 0.79,
           ("dnw", 120, 0): 0.85, ("fixed", 120, 0): 0.86, ("dnw_no_update", 120, 0): 0.84}
    results = tmp_path / "docs" / "r.jsonl"
    for cell in study.cells():
        key = (cell.mode, cell.edges, cell.seed)
        if key in acc:
            study_results.append_result(results, {
                "cell": cell.name, "status": "done", "test_acc": acc[key], "best_acc": acc[key], "epochs": 2,
                "seconds": 1.0, "curve": [acc[key] - 0.1, acc[key]], "swapped": [cell.edges // 2, cell.edges // 4],
                "density": 0.1, "real_edges": cell.edges, "wiring": {"graph": {"kept_initial": cell.edges // 4}},
                "settings": study_results.cell_settings(study, cell)})
    rows = study_results.collect(study, tmp_path / "no-runs", results)
    d60, d120 = study_results.paired_differences(study, rows, "static")
    assert (d60["edges"], d60["n"], d120["n"]) == (60, 2, 1)
    assert d60["diffs"] == pytest.approx({0: 5.0, 1: 3.0}) and d60["mean"] == pytest.approx(4.0)
    assert d60["std"] == pytest.approx(2 ** 0.5) and d120["std"] is None and d120["mean"] == pytest.approx(-1.0)
    report = study_report.write_report(study, rows, tmp_path / "no-runs", tmp_path / "docs" / "r.md", "cmd")
    text = report.read_text()
    assert "| static | 60 | 2 of 2 | 81.00 | 77.00 | +4.00 | 1.41 | +3.00 .. +5.00 | s0: +5.00, s1: +3.00 |" in text
    assert "| static | 120 | 1 of 2 | 85.00 | 86.00 | -1.00 | - | -1.00 .. -1.00 | s0: -1.00 |" in text
    assert "| static | dnw | 60 | 2 | 50.0% | 25.0% | 25.0% |" in text
    assert "| static | dnw_no_update | 120 | 1 | 50.0% | 25.0% | 25.0% |" in text
    assert (tmp_path / "docs" / "r_difference.png").is_file() and "r_difference.png" in text


def test_a_setting_added_after_a_record_counts_as_its_default():
    study = load_study(ROOT / "configs" / "study_budget.yaml")
    cell = study.cells()[0]
    now = study_results.cell_settings(study, cell)
    older = {k: v for k, v in now.items() if k != "deterministic"}      # as if written before the field
    assert study_results.same_settings(older, now)
    assert not study_results.same_settings({**now, "lr": 0.05}, now)
    assert not study_results.same_settings({k: v for k, v in now.items() if k != "init"}, now)   # kaiming then
    assert study_results.same_settings({**now, "gone": 1}, now)             # a field since removed


def test_the_methods_study_has_the_budget_sweeps_budget_for_every_mode():
    """configs/study_methods.yaml (issue 28): 5 modes x 3 budgets x 3 seeds, budget by budget;
    its dnw / fixed / dnw_no_update cells compute what the budget sweep's cells of the same name
    computed (a record of one is a record of the other), and its rigl / set cells differ from
    them only in the mode."""
    methods = load_study(ROOT / "configs" / "study_methods.yaml")
    budget = load_study(ROOT / "configs" / "study_budget.yaml")
    cells = methods.cells()
    assert len(cells) == 45 and [c.name for c in cells[:5]] == [
        "static-dnw-2000-s0", "static-rigl-2000-s0", "static-set-2000-s0", "static-fixed-2000-s0",
        "static-dnw_no_update-2000-s0"]
    by_name = {c.name: c for c in budget.cells()}
    shared = [c for c in cells if c.name in by_name]
    assert len(shared) == 24                          # dnw and fixed at 3 budgets, dnw_no_update at 2, 3 seeds
    for cell in shared:
        assert study_results.same_settings(study_results.cell_settings(budget, by_name[cell.name]),
                                           study_results.cell_settings(methods, cell))
    rigl = study_results.cell_settings(methods, next(c for c in cells if c.mode == "rigl"))
    dnw = study_results.cell_settings(methods, cells[0])
    assert {k for k in rigl if rigl[k] != dnw[k]} == {"mode"}
    assert (rigl["update_every"], rigl["drop_fraction"], rigl["drop_schedule"], rigl["drop_until"]) == \
        (10, 0.3, "cosine", 0.75)


def test_the_churn_table_lists_the_rewiring_modes(tmp_path):
    study = load_study(write(tmp_path / "m.yaml", {**PAIRED, "grid": {**PAIRED["grid"], "mode": ["dnw", "rigl", "set",
                                                                                               "fixed"]},
                                                   "mode_edges": {}}))
    results = tmp_path / "docs" / "m.jsonl"
    for cell in study.cells():
        study_results.append_result(results, {
            "cell": cell.name, "status": "done", "test_acc": 0.5, "best_acc": 0.5, "epochs": 2, "seconds": 1.0,
            "curve": [0.4, 0.5], "swapped": [cell.edges // 2, cell.edges // 4], "density": 0.1,
            "real_edges": cell.edges, "wiring": {"graph": {"kept_initial": cell.edges // 4}},
            "settings": study_results.cell_settings(study, cell)})
    rows = study_results.collect(study, tmp_path / "no-runs", results)
    text = study_report.write_report(study, rows, tmp_path / "no-runs", tmp_path / "docs" / "m.md", "cmd").read_text()
    for mode in ("dnw", "rigl", "set"):
        assert f"| static | {mode} | 60 | 2 | 50.0% | 25.0% | 25.0% |" in text
    assert "| static | fixed | 60 |" not in text.split("## Churn")[1].split("##")[0]
