"""Tests for viz.compare: the level-pair difference and in-degrees on hand-built wirings, the figure, the CLI."""
import doctest
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from viz import compare
from viz.compare import column_in_degree, compare_runs, pair_counts, pair_difference
from wiring.graph import Wiring, static_graph
from wiring.io import load_run, write_graphml

G = static_graph([2, 2, 1])  # nodes 0, 1 inputs; 2, 3 level 1; 4 output
# candidates: 0->2, 1->2, 0->3, 1->3, 0->4, 1->4, 2->4, 3->4
A_REAL = [1, 1, 0, 0, 0, 0, 1, 0]  # in->1 twice, 1->out once: node 3 is dead (no input, no output)
B_REAL = [1, 0, 1, 0, 1, 1, 0, 1]  # in->1 twice, in->out twice, 1->out once: node 2 has no output, dead


def wiring(real, mode: str) -> Wiring:
    return Wiring(G.edge_index, torch.linspace(-1, 1, 8), G.level, G.role, torch.tensor(real).bool(),
                  {"static": True, "mode": mode})


def run_dir(path: Path, real, mode: str, acc: float) -> Path:
    path.mkdir(parents=True)
    w = wiring(real, mode).real_edges()
    write_graphml(Wiring(w.edge_index, w.weight, w.level, w.role, None, {**w.attrs, "step": 40}),
                  path / "wiring.graphml")
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 4, "step": 40, "test_acc": acc}) + "\n")
    (path / "config.yaml").write_text(f"model: tiny\nmode: {mode}\n")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "Traceback" not in err[0], err
    return err[0]


def test_doctests():
    assert doctest.testmod(compare).failed == 0


def test_pair_counts_and_difference_are_exact():
    a, b = wiring(A_REAL, "dnw"), wiring(B_REAL, "fixed")
    assert pair_counts(a).tolist() == [[0, 2, 0], [0, 0, 1], [0, 0, 0]]
    assert pair_counts(b).tolist() == [[0, 2, 2], [0, 0, 1], [0, 0, 0]]
    assert pair_difference(a, b).tolist() == [[0, 0, -2], [0, 0, 0], [0, 0, 0]]


def test_column_in_degree_and_dead_nodes():
    mean, dead = column_in_degree(wiring(A_REAL, "dnw"))
    assert mean.tolist() == [0.0, 1.0, 1.0] and dead.tolist() == [0, 1, 0]
    mean, dead = column_in_degree(wiring(B_REAL, "fixed"))
    assert mean.tolist() == [0.0, 1.0, 3.0] and dead.tolist() == [0, 1, 0]


def test_figure_names_both_runs_and_prints_the_differences(tmp_path):
    ra = load_run(run_dir(tmp_path / "dnw-run", A_REAL, "dnw", 0.9))
    rb = load_run(run_dir(tmp_path / "fixed-run", B_REAL, "fixed", 0.8))
    fig = compare_runs(ra, rb, size=(9, 3), dpi=50)
    assert len(fig.axes) == len(compare.PANELS) == 3
    title = fig._suptitle.get_text()
    assert "A: dnw-run (DNW · k = 3 · test acc 90.0%)" in title and "B: fixed-run (random graph (fixed) · k = 5" in title
    assert "DIFFERENT budgets: k = 3 vs 5" in title
    cells = {t.get_text() for t in fig.axes[0].texts}
    assert {"+0\n(2)", "-2\n(0)", "+0\n(1)"} == cells
    legend = " ".join(t.get_text() for t in fig.axes[2].get_legend().get_texts())
    assert "A: mean 1.0" in legend and "B: mean 3.0" in legend
    # the levels named as every picture's ticks name them (wiring.picture.level_name)
    for ax, axis in ((fig.axes[0], "x"), (fig.axes[0], "y"), (fig.axes[1], "x")):
        assert [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()] == ["in", "1", "out"]


@pytest.mark.parametrize("mode, label", [("rigl", "RigL"), ("set", "SET"), ("an_old_mode", "an_old_mode")])
def test_figure_names_the_rewiring_modes_by_their_labels(tmp_path, mode, label):
    ra = load_run(run_dir(tmp_path / "a", A_REAL, mode, 0.9))
    rb = load_run(run_dir(tmp_path / "b", B_REAL, "dnw", 0.8))
    title = compare_runs(ra, rb, size=(9, 3), dpi=50)._suptitle.get_text()
    assert f"A: a ({label} · k = 3 · test acc 90.0%)" in title and "B: b (DNW · k = 5" in title


def test_cli_writes_the_requested_size(tmp_path):
    a = run_dir(tmp_path / "a", A_REAL, "dnw", 0.9)
    b = run_dir(tmp_path / "b", A_REAL, "fixed", 0.9)
    out = tmp_path / "c.png"
    assert compare.main([str(a), str(b), "-o", str(out), "--size", "8", "3", "--dpi", "50"]) == 0
    with Image.open(out) as im:
        assert im.size == (400, 150)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_errors(tmp_path, capsys):
    a = run_dir(tmp_path / "a", A_REAL, "dnw", 0.9)
    other = tmp_path / "other"
    other.mkdir()
    g = static_graph([2, 3, 1])
    write_graphml(Wiring(g.edge_index, torch.ones(g.num_candidates), g.level, g.role), other / "wiring.graphml")
    out = tmp_path / "c.png"
    for argv, words in (([str(a), str(other)], "different nodes"), ([str(a), str(tmp_path / "nope")], "does not exist"),
                        ([str(a), str(a), "-o", str(tmp_path / "c.jpg")], "'.jpg'")):
        with pytest.raises(SystemExit) as exc:
            compare.main(argv + ([] if "-o" in argv else ["-o", str(out)]))
        assert exc.value.code == 2
        assert words in one_error_line(capsys)
    assert not out.exists()


def test_two_recurrent_wirings_are_compared_per_role_pair(tmp_path):
    """Dynamic wirings (one level) are compared per role: in / hidden / out, as every picture names them."""
    from wiring.graph import dynamic_graph
    g = dynamic_graph(8, inputs=2, outputs=2)
    runs = []
    for name, seed in (("a", 1), ("b", 2)):
        gen = torch.Generator().manual_seed(seed)
        real = torch.zeros(g.num_candidates, dtype=torch.bool)
        real[torch.randperm(g.num_candidates, generator=gen)[:20]] = True
        path = tmp_path / name
        path.mkdir()
        w = Wiring(g.edge_index, torch.randn(g.num_candidates, generator=gen), g.level, g.role, real,
                   {"static": False, "mode": "dnw"}).real_edges()
        write_graphml(w, path / "wiring.graphml")
        runs.append(load_run(path))
    fig = compare_runs(*runs, size=(9, 3), dpi=40)
    for ax, axis in ((fig.axes[0], "x"), (fig.axes[0], "y"), (fig.axes[1], "x")):
        assert [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()] == ["in", "hidden", "out"]
