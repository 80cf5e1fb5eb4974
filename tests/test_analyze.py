"""Tests for wiring.analyze: JSON numbers equal wiring.topology, text report, errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import torch

from run_dirs import make_run as build_run
from wiring import analyze
from wiring.graph import Wiring, dynamic_graph
from wiring.io import WiringHistory, load_run, to_networkx, write_graphml
from wiring.topology import churn, cycle_stats, dead_nodes, degree_stats, depth, generations, level_edges

ROOT = Path(__file__).resolve().parents[1]


def make_run(path: Path, *, final: bool = True, initial: bool = True) -> WiringHistory:
    return build_run(path, k=10, steps=(0, 4, 8), seed=1, initial=initial, final=final, final_acc=0.5,
                     metrics=[{"epoch": 1, "step": 8, "test_acc": 0.5}], config="edges: 10\n")


def run_main(args, capsys) -> tuple[int, str, str]:
    try:
        code = analyze.main(args)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def expected(wiring) -> dict:
    G = to_networkx(wiring.real_edges())
    return {"edges": G.number_of_edges(), "depth": depth(G), "generations": len(generations(G)),
            "dead": len(dead_nodes(G)), "dead_nodes": sorted(dead_nodes(G)), "degree": degree_stats(G),
            "level_edges": [[s, t, c] for (s, t), c in level_edges(G).items()], "cycles": cycle_stats(G)}


def test_json_numbers_equal_topology(tmp_path, capsys):
    make_run(tmp_path / "run")
    run = load_run(tmp_path / "run")
    code, out, _ = run_main([str(tmp_path / "run"), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert out.count("\n") == 1  # one JSON object
    for key, value in expected(run.final).items():
        assert report[key] == value, key
    initial = expected(run.initial)
    for key in ("edges", "depth", "dead", "generations", "level_edges"):
        assert report["initial"][key] == initial[key], key
    assert report["churn"] == churn(run.initial, run.final)
    assert report["churn"]["added"] > 0
    assert report["nodes"] == 10 and report["roles"] == {"input": 2, "hidden": 6, "output": 2}
    assert report["candidates"] == 37 and report["density"] == pytest.approx(10 / 37)
    assert report["step"] == 8 and report["test_acc"] == 0.5 and report["kind"] == "run"


def test_text_report(tmp_path, capsys):
    make_run(tmp_path / "run")
    code, out, _ = run_main([str(tmp_path / "run")], capsys)
    assert code == 0
    for words in ("nodes         10 (2 input, 6 hidden, 2 output)", "edges (k)     10", "density",
                  "of 37 candidates", "depth", "generations", "dead nodes", "in-degree", "out-degree",
                  "level-to-level edges", "compared with the initial wiring (initial.graphml, step 0)",
                  "churn", "added", "removed", "kept", "->"):
        assert words in out, words


def test_history_only_run(tmp_path, capsys):
    h = make_run(tmp_path / "run", final=False, initial=False)
    report = analyze.analyze(tmp_path / "run")
    assert report["wiring"] == "history.pt snapshot 2" and report["initial"]["wiring"] == "history.pt snapshot 0"
    assert report["churn"] == churn(h.frame(0), h.frame(-1))
    assert report["test_acc"] == 0.5  # from the metrics record at step 8


def test_graphml_file_and_plain_networkx(tmp_path, capsys):
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c"), ("x", "c")])
    nx.write_graphml(G, tmp_path / "plain.graphml")
    code, out, _ = run_main([str(tmp_path / "plain.graphml"), "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["kind"] == "graphml" and "initial" not in report
    assert report["edges"] == 4 and report["depth"] == 2 and report["density"] is None
    code, out, _ = run_main([str(tmp_path / "plain.graphml")], capsys)
    assert "n/a (candidate count unknown)" in out


def test_cyclic_wiring(tmp_path, capsys):
    g = dynamic_graph(4, inputs=1, outputs=1)
    pairs = [(0, 1), (1, 2), (2, 1), (2, 3)]
    cand = {tuple(e): i for i, e in enumerate(g.edge_index.t().tolist())}
    index = torch.tensor([cand[p] for p in pairs])
    w = Wiring(g.edge_index[:, index], torch.ones(4), g.level, g.role, None, {"static": False})
    write_graphml(w, tmp_path / "cyc.graphml")
    report = analyze.analyze(tmp_path / "cyc.graphml")
    assert report["acyclic"] is False and report["depth"] is None and report["generations"] is None
    assert report["cycles"] == cycle_stats(to_networkx(w)) and report["cycles"]["largest_component"] == 2
    code, out, _ = run_main([str(tmp_path / "cyc.graphml")], capsys)
    assert "cyclic components" in out and "\n  depth " not in out and "no depth" in out


@pytest.mark.parametrize("setup, words", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "bad.graphml").write_text("<graphml><graph") and p / "bad.graphml", "bad.graphml"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "not a run directory"),
])
def test_errors(tmp_path, capsys, setup, words):
    code, out, err = run_main([str(setup(tmp_path))], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err


def test_bad_flag(tmp_path, capsys):
    make_run(tmp_path / "run")
    code, _, err = run_main([str(tmp_path / "run"), "--jsn"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_cli_process(tmp_path):
    make_run(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-m", "wiring.analyze", str(tmp_path / "run"), "--json"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0 and json.loads(proc.stdout)["edges"] == 10
    proc = subprocess.run([sys.executable, "-m", "wiring.analyze", str(tmp_path / "nope")], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_imports_only_io_topology_and_the_cli_helpers():
    code = ("import sys, wiring.analyze; "
            "print(sorted(m for m in sys.modules if m.startswith(('wiring', 'models', 'viz'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == str(["wiring", "wiring.analyze", "wiring.cli", "wiring.errors", "wiring.files",
                                       "wiring.graph", "wiring.io", "wiring.io.convert", "wiring.io.graphml",
                                       "wiring.io.history", "wiring.io.rundir", "wiring.lazy", "wiring.topology"])


def test_runs_with_several_wirings_report_the_one_named(tmp_path, capsys):
    from run_dirs import make_multi_wiring_run
    run = make_multi_wiring_run(tmp_path / "run", {"stages-0-graph": 5, "stages-1-graph": 9})
    with pytest.raises(analyze.AnalyzeError, match="holds 2 wirings .*choose one with --wiring NAME"):
        analyze.analyze(run)
    report = analyze.analyze(run, "stages-1-graph")
    assert report["wiring"] == "wiring-stages-1-graph.graphml" and report["edges"] == 9
    assert analyze.main([str(run), "--wiring", "stages-0-graph", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["edges"] == 5
