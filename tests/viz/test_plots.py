"""Tests for viz.plots: panel count, heatmaps equal topology.level_edges, CLI."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import viz.plots as plots
from run_dirs import make_run as build_run
from viz.plots import PANELS, level_matrix, plot_run
from wiring.io import WiringHistory, load_run, to_networkx
from wiring.topology import level_edges


def make_run(path: Path, *, initial: bool = True, final: bool = True, metrics: bool = True) -> WiringHistory:
    lines = [{"epoch": epoch, "step": step, "loss": 1.0 / epoch, "test_loss": 1.1 / epoch, "train_acc": 0.3 * epoch,
              "test_acc": 0.25 * epoch, "swapped": 4 - epoch, "edges": 14} for epoch, step in ((1, 5), (2, 10))]
    return build_run(path, k=14, steps=(0, 5, 10), initial=initial, final=final, metrics=lines if metrics else None)


def expected_matrix(wiring, size):
    m = np.zeros((size, size), dtype=np.int64)
    for (s, t), c in level_edges(to_networkx(wiring)).items():
        m[s, t] = c
    return m


def test_panels_and_heatmaps(tmp_path):
    h = make_run(tmp_path / "run")
    run = load_run(tmp_path / "run")
    out = tmp_path / "p.png"
    fig = plot_run(run, out, size=(9, 5), dpi=40)
    assert len(fig.axes) == len(PANELS) == 6
    with Image.open(out) as im:
        im.load()
        assert im.size == (360, 200)
    start = fig.axes[4].images[0].get_array()
    end = fig.axes[5].images[0].get_array()
    assert np.array_equal(np.asarray(start), expected_matrix(run.initial, 4))
    assert np.array_equal(np.asarray(end), expected_matrix(run.final, 4))
    assert np.array_equal(level_matrix(h.frame(0)), expected_matrix(h.frame(0), 4))
    assert int(np.asarray(end).sum()) == 14
    # the levels named as every picture names them (wiring.picture.level_name), never 0 and 3
    for ax in fig.axes[4:6]:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["in", "1", "2", "out"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["in", "1", "2", "out"]
    # training curves drawn from the metrics
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 2
    assert [p.get_height() for p in fig.axes[2].patches] == [3, 2]
    assert "k = 14 edges" in fig._suptitle.get_text() and "density" in fig._suptitle.get_text()


def test_history_only_run_without_metrics(tmp_path):
    h = make_run(tmp_path / "run", initial=False, final=False, metrics=False)
    run = load_run(tmp_path / "run")
    fig = plot_run(run, size=(9, 5), dpi=40)
    assert len(fig.axes) == len(PANELS)
    assert np.array_equal(np.asarray(fig.axes[4].images[0].get_array()), expected_matrix(h.frame(0), 4))
    assert np.array_equal(np.asarray(fig.axes[5].images[0].get_array()), expected_matrix(h.frame(-1), 4))
    assert "no metrics" in fig.axes[0].texts[0].get_text()


def test_skip_fraction():
    m = np.array([[0, 2, 1], [0, 0, 1], [0, 0, 0]])
    assert plots.skip_fraction(m) == pytest.approx(0.25)


def test_cli(tmp_path, capsys):
    make_run(tmp_path / "run")
    out = tmp_path / "p.png"
    assert plots.main([str(tmp_path / "run"), "-o", str(out), "--size", "8", "5", "--dpi", "30"]) == 0
    with Image.open(out) as im:
        assert im.size == (240, 150)
    assert "wrote" in capsys.readouterr().err
    for args, words in (([str(tmp_path / "nope"), "-o", str(out)], "does not exist"),
                        ([str(tmp_path / "run"), "-o", str(tmp_path / "p.gif")], "'.gif'"),
                        ([str(out), "-o", str(tmp_path / "q.png")], "not well-formed XML")):  # a file: GraphML
        with pytest.raises(SystemExit) as exc:
            plots.main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "q.png").exists() and not (tmp_path / "p.gif").exists()


def test_runs_with_several_wirings_plot_curves_and_say_how_to_add_a_wiring(tmp_path, capsys):
    from run_dirs import make_multi_wiring_run
    run = make_multi_wiring_run(tmp_path / "run", {"stages-0-graph": 5, "stages-1-graph": 9})
    assert plots.main([str(run), "-o", str(tmp_path / "p.png"), "--size", "6", "4", "--dpi", "40"]) == 0
    assert "holds 2 wirings; --wiring NAME" in capsys.readouterr().err
    assert plots.main([str(run), "-o", str(tmp_path / "q.png"), "--size", "6", "4", "--dpi", "40",
                       "--wiring", "stages-1-graph"]) == 0
    assert "holds 2 wirings" not in capsys.readouterr().err
    assert (tmp_path / "p.png").is_file() and (tmp_path / "q.png").is_file()


def test_a_recurrent_run_is_counted_per_role_pair(tmp_path):
    """A dynamic wiring has one level (before: a 1 x 1 heatmap ticked '0'): its pair
    panels count role pairs, ticked in / hidden / out as every picture names them."""
    from wiring.graph import dynamic_graph
    g = dynamic_graph(10, inputs=2, outputs=3)
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": False, "candidates": g.num_candidates})
    gen = torch.Generator().manual_seed(0)
    for step in (0, 5):
        h.append(step, torch.randperm(g.num_candidates, generator=gen)[:30], torch.randn(30, generator=gen))
    (tmp_path / "run").mkdir()
    h.save(tmp_path / "run" / "history.pt")
    fig = plot_run(load_run(tmp_path / "run"), size=(9, 5), dpi=40)
    for ax, w in ((fig.axes[4], h.frame(0)), (fig.axes[5], h.frame(-1))):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["in", "hidden", "out"]
        assert ax.get_xlabel() == "target role" and "role pairs" in ax.get_title()
        m = np.zeros((3, 3), dtype=np.int64)
        for s, t in w.real_edges().edge_index.t().tolist():
            m[int(g.role[s]), int(g.role[t])] += 1
        assert np.array_equal(np.asarray(ax.images[0].get_array()), m)
