"""Tests for viz.render: the CLI's outputs and errors, and render_wiring."""
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from PIL import Image

from run_dirs import make_run as build_run
from viz import render
from viz.render import render_wiring
from wiring.graph import Wiring, static_graph
from wiring.io import WiringHistory, read_graphml, to_networkx
from wiring.topology import dead_nodes

ROOT = Path(__file__).resolve().parents[2]


def make_run(path: Path, *, steps=(0, 5, 10, 15), k=12, final=True, initial=True, metrics=True) -> WiringHistory:
    """A run directory over static_graph([2, 3, 3, 2]) (37 candidates), k real edges."""
    lines = [{"epoch": epoch, "loss": 2.0 / epoch, "train_acc": 0.2 * epoch, "test_loss": 2.2 / epoch,
              "test_acc": 0.25 * epoch, "step": step, "swapped": 3 * epoch, "edges": k, "candidates": 37,
              "density": round(k / 37, 6)} for epoch, step in enumerate(steps[1:], 1)]
    return build_run(path, k=k, steps=steps, history_attrs={"mode": "dnw", "preset": "random_k", "k": k},
                     initial=initial, final=final, final_acc=0.75, metrics=lines if metrics else None,
                     config="model: tiny\nedges: 12\nmode: dnw\n")


@pytest.fixture
def run_dir(tmp_path):
    make_run(tmp_path / "run")
    return tmp_path / "run"


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "error:" in err[0] and "Traceback" not in err[0]
    return err[0]


def test_png_has_requested_size(run_dir, tmp_path):
    out = tmp_path / "w.png"
    assert render.main([str(run_dir), "-o", str(out), "--size", "6", "4", "--dpi", "50"]) == 0
    with Image.open(out) as im:
        im.load()
        assert im.size == (300, 200)
    assert leftovers(tmp_path) == []


def test_palette_png(run_dir, tmp_path):
    out = tmp_path / "w.png"
    assert render.main([str(run_dir), "-o", str(out), "--size", "5", "3", "--dpi", "40", "--palette"]) == 0
    with Image.open(out) as im:
        assert im.size == (200, 120) and im.mode == "P"


@pytest.mark.parametrize("ext, magic", [("svg", b"<svg"), ("pdf", b"%PDF")])
def test_svg_and_pdf(run_dir, tmp_path, ext, magic):
    out = tmp_path / f"w.{ext}"
    assert render.main([str(run_dir), "-o", str(out), "--size", "4", "3"]) == 0
    data = out.read_bytes()
    assert magic in data[:400]


def test_run_without_final_uses_last_snapshot(tmp_path):
    h = make_run(tmp_path / "run", final=False)
    out = tmp_path / "w.png"
    assert render.main([str(tmp_path / "run"), "-o", str(out), "--size", "4", "3", "--dpi", "40"]) == 0
    assert out.is_file()
    src = render.load_source(tmp_path / "run")
    assert src.wiring.attrs["step"] == h.steps[-1]


def test_plain_networkx_graphml(tmp_path):
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c"), ("x", "c")])
    path = tmp_path / "plain.graphml"
    nx.write_graphml(G, path)
    out = tmp_path / "plain.png"
    assert render.main([str(path), "-o", str(out), "--size", "4", "3", "--dpi", "50"]) == 0
    with Image.open(out) as im:
        assert im.size == (200, 150)


def test_render_wiring_library(tmp_path):
    g = static_graph([2, 2, 1])
    real = torch.tensor([True, False, False, True, True, False, True, False])
    weight = torch.tensor([0.5, -0.01, 0.02, -1.25, 2.0, 0.0, 0.75, 0.03])
    w = Wiring(g.edge_index, weight, g.level, g.role, real, {"static": True, "step": 3})
    fig = render_wiring(w, title="five nodes", size=(4, 3), dpi=50)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) == 4  # the real edges, one collection
    colours = lines[0].get_colors()
    assert len({tuple(np.round(c[:3], 3)) for c in colours}) == 2  # positive and negative
    title = ax.get_title()
    assert "five nodes" in title and "k = 4 edges" in title and "density 50%" in title and "step 3" in title
    assert ax.get_legend() is not None
    assert len(ax.texts) >= 5  # node labels for a small graph
    # 1 -> 3 is the only edge of nodes 1 and 3: both are on no input-to-output path
    assert render.dead_of(w) == dead_nodes(to_networkx(w.real_edges())) == {1, 3}
    hidden = ax.collections[2]  # scatters after the edges: input, hidden, output
    faces = hidden.get_facecolors()
    assert tuple(faces[1][:3]) == (1.0, 1.0, 1.0) and tuple(faces[0][:3]) != (1.0, 1.0, 1.0)


def test_render_into_given_axes(tmp_path):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot(1, 1, 1)
    w = read_graphml_of(tmp_path)
    assert render_wiring(w, ax=ax, legend=False) is fig


def read_graphml_of(tmp_path):
    G = nx.DiGraph([(0, 1), (1, 2)])
    nx.write_graphml(G, tmp_path / "g.graphml")
    return read_graphml(tmp_path / "g.graphml")


def test_edge_style_many_edges_is_faint():
    few = render.edge_style(np.array([1.0, -2.0, 0.5]))[1][:, 3]
    many = render.edge_style(np.random.default_rng(0).normal(size=12000))[1][:, 3]
    assert few.max() > 0.5 and many.max() < 0.3 and many.min() > 0


def test_missing_input(tmp_path, capsys):
    out = tmp_path / "w.png"
    with pytest.raises(SystemExit) as exc:
        render.main([str(tmp_path / "nothing"), "-o", str(out)])
    assert exc.value.code == 2
    assert "does not exist" in one_error_line(capsys)
    assert not out.exists()


def test_malformed_graphml(tmp_path, capsys):
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><graph><node id='0'></graph>")
    out = tmp_path / "w.png"
    with pytest.raises(SystemExit) as exc:
        render.main([str(bad), "-o", str(out)])
    assert exc.value.code == 2
    assert "bad.graphml" in one_error_line(capsys)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("args, words", [
    (["-o", "w.jpg"], "'.jpg'"), (["-o", "w"], "no extension"), (["--dpi", "0"], "--dpi"),
    (["--size", "4", "x"], "--size"), (["-o", "w.svg", "--palette"], "--palette"),
    (["-o", "no/such/dir/w.png"], "does not exist")])
def test_bad_flags(run_dir, tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        render.main([str(run_dir)] + args)
    assert exc.value.code == 2
    assert words in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_cli_process_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "viz.render", str(tmp_path / "missing"), "-o",
                           str(tmp_path / "w.png")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "w.png").exists()


def test_viz_never_imports_the_trainer():
    code = ("import sys, viz.render, viz.animate, viz.plots, viz.layout, viz.compare, viz.explore; "
            "print(sorted(m for m in sys.modules if m.startswith(('wiring', 'models'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = eval(proc.stdout)
    # wiring.picture draws from plain tensors (below training); errors / files are the shared error base and writer;
    # wiring.modes (engine) is the one place that names the modes (viz.compare's and the explorer's labels), with
    # what it stands on (wiring.topk and the backends' kernel loader, which compiles nothing at import);
    # wiring.lazy (base) imports torch on first use
    allowed = {"wiring", "wiring.cli", "wiring.errors", "wiring.files", "wiring.graph", "wiring.picture",
               "wiring.topology", "wiring.modes", "wiring.topk", "wiring.backends", "wiring.backends.kernels",
               "wiring.lazy"}
    assert {m for m in loaded if not m.startswith("wiring.io.")} <= allowed | {"wiring.io"}, loaded


def test_runs_with_several_wirings_draw_the_one_named(tmp_path, capsys):
    from run_dirs import make_multi_wiring_run
    run = make_multi_wiring_run(tmp_path / "run", {"stages-0-graph": 5, "stages-1-graph": 9})
    out = tmp_path / "w.png"
    with pytest.raises(SystemExit) as exc:
        render.main([str(run), "-o", str(out)])
    assert exc.value.code == 2 and not out.exists()
    assert "holds 2 wirings (stages-0-graph, stages-1-graph): choose one with --wiring NAME" in one_error_line(capsys)
    assert render.main([str(run), "-o", str(out), "--wiring", "stages-1-graph", "--size", "4", "3"]) == 0
    capsys.readouterr()
    source = render.load_source(run, "stages-1-graph")
    assert source.wiring.num_edges == 9 and render._title(source).startswith("run · stages-1-graph")
    with pytest.raises(SystemExit):
        render.main([str(run), "-o", str(out), "--wiring", "stages-9-graph"])
    assert "no wiring 'stages-9-graph'" in one_error_line(capsys)


# ----------------------------------------------------------------------------- large wirings

def default_size_wiring(k: int = 12000, seed: int = 0) -> Wiring:
    """The default run's graph (levels [32, 192, 192, 192, 192, 100], 325,760 candidates)
    with k real edges chosen at random and normal weights: what `wiring.train --edges
    12000` starts from."""
    g = static_graph([32, 192, 192, 192, 192, 100])
    gen = torch.Generator().manual_seed(seed)
    real = torch.zeros(g.num_candidates, dtype=torch.bool)
    real[torch.randperm(g.num_candidates, generator=gen)[:k]] = True
    weight = torch.randn(g.num_candidates, generator=gen)
    return Wiring(g.edge_index, weight, g.level, g.role, real, {"static": True, "step": 360})


def covered_fraction(png: Path) -> float:
    """The share of the graph area's pixels (the axes of the default 12 x 7 picture
    below the column labels) that differ from the white background by more than
    8/255 in some channel: what the eye sees as covered."""
    with Image.open(png) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    h, w, _ = a.shape
    area = a[int(h * 0.11) + 40:int(h * 0.91), int(w * 0.01):int(w * 0.99)]
    return float(((255 - area).max(axis=-1) > 8).mean())


@pytest.fixture(scope="module")
def large_pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("large")
    w = default_size_wiring()
    render_wiring(w, folder / "ranked.png")
    render_wiring(w, folder / "weight.png", style="weight")
    return folder


def test_default_render_of_12000_edges_is_not_a_hairball(large_pngs):
    # Bound: under half of the graph area visibly covered (> 8/255 from white). Measured on this
    # wiring: 0.42 with the ranked default, 0.74 with the style by |w| (the picture before issue 21);
    # on the trained default run (`wiring.train --edges 12000`): 0.45 ranked, 0.72 before.
    ranked = covered_fraction(large_pngs / "ranked.png")
    weight = covered_fraction(large_pngs / "weight.png")
    assert ranked < 0.5 < weight, (ranked, weight)


def test_ranked_style_makes_the_strongest_stand_out():
    w = default_size_wiring()
    fig = render_wiring(w, size=(6, 4), dpi=50)
    edges = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)][0]
    alpha, widths = edges.get_colors()[:, 3], edges.get_linewidths()
    assert len(alpha) == 12000
    # drawn weakest first: the last 250 (the strongest |w|) are near opaque, the first 11,000 faint
    assert alpha[-250:].min() > 0.4 and alpha[:11000].max() < 0.05 and widths[-1] > 4 * widths[0]
    assert "250 strongest" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    small = render_wiring(read_graphml_of_two_edges(), size=(3, 3), dpi=40)  # auto: by |w| below 2,000 edges
    assert "strongest" not in " ".join(t.get_text() for t in small.axes[0].get_legend().get_texts())


def read_graphml_of_two_edges() -> Wiring:
    g = static_graph([1, 1, 1])
    return Wiring(g.edge_index, torch.tensor([0.5, -1.0, 0.1]), g.level, g.role, torch.tensor([True, True, False]))


def test_top_draws_only_the_strongest_and_marks_dead_nodes():
    w = default_size_wiring()
    fig = render_wiring(w, top=40, size=(6, 4), dpi=50)
    ax = fig.axes[0]
    edges = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    assert len(edges.get_segments()) == 40
    real = w.real_edges()
    strongest40 = set(torch.argsort(-real.weight.abs())[:40].tolist())
    kept = render.strongest(w, 40)
    assert kept.num_edges == 40 and set(torch.isin(real.weight, kept.weight).nonzero().flatten().tolist()) == strongest40
    assert "the 40 strongest shown" in ax.get_title()
    dead = render.dead_of(w)
    marks = ax.collections[-1]  # the dead-node dashes of a large wiring
    assert len(dead) > 0 and len(marks.get_offsets()) == len(dead)


def test_level_columns_are_shaded_bands():
    fig = render_wiring(default_size_wiring(k=3000), size=(6, 4), dpi=50)
    assert len(fig.axes[0].patches) == 6  # one band per column


@pytest.mark.parametrize("view", ["flow", "adjacency"])
def test_second_views_cli(run_dir, tmp_path, view):
    out = tmp_path / f"{view}.png"
    assert render.main([str(run_dir), "-o", str(out), "--view", view, "--size", "6", "4", "--dpi", "50"]) == 0
    with Image.open(out) as im:
        assert im.size == (300, 200)


def test_flow_bands_count_level_pair_edges():
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    g = static_graph([2, 2, 1])  # 0,1 inputs; 2,3 level 1; 4 output
    real = torch.tensor([True, True, False, False, True, False, True, True])
    w = Wiring(g.edge_index, torch.ones(8), g.level, g.role, real, {"static": True})
    pairs = render._pair_table(w)[1]
    ei = g.edge_index[:, real]
    expected = np.zeros((3, 3), dtype=int)
    for s, t in ei.t().tolist():
        expected[min(int(g.level[s]), 2), min(int(g.level[t]), 2)] += 1
    assert (pairs == expected).all()
    fig = Figure()
    ax = fig.add_subplot()
    render.draw_flow(ax, w)
    assert sum(isinstance(p, PathPatch) for p in ax.patches) == int((expected > 0).sum())


def test_adjacency_pixels_are_the_real_edges():
    from matplotlib.figure import Figure
    g = static_graph([2, 2, 1])
    real = torch.tensor([True, False, False, True, True, False, True, False])
    weight = torch.tensor([0.5, -0.01, 0.02, -1.25, 2.0, 0.0, 0.75, 0.03])
    w = Wiring(g.edge_index, weight, g.level, g.role, real, {"static": True})
    fig = Figure()
    ax = fig.add_subplot()
    render.draw_adjacency(ax, w)
    image = ax.images[0].get_array()
    coloured = {(int(r), int(c)) for r, c in zip(*np.nonzero((np.asarray(image) < 0.999).any(axis=-1)))}
    assert coloured == {(int(t), int(s)) for s, t in g.edge_index[:, real].t().tolist()}  # row target, column source
    blue = image[int(g.edge_index[1, 0]), int(g.edge_index[0, 0])]
    assert blue[2] > blue[0]  # w > 0 is blue


def test_view_options_are_checked(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        render.main([str(run_dir), "-o", str(tmp_path / "w.png"), "--view", "flow", "--top", "5"])
    assert exc.value.code == 2 and "--top and --style apply to --view graph" in one_error_line(capsys)


def test_render_doctests():
    import doctest

    import wiring.picture
    assert doctest.testmod(render).failed == 0 and doctest.testmod(wiring.picture).failed == 0


def test_dynamic_wirings_in_the_large_views(tmp_path, capsys):
    from wiring.graph import dynamic_graph
    g = dynamic_graph(80, inputs=8, outputs=10)
    gen = torch.Generator().manual_seed(1)
    real = torch.zeros(g.num_candidates, dtype=torch.bool)
    real[torch.randperm(g.num_candidates, generator=gen)[:2500]] = True
    w = Wiring(g.edge_index, torch.randn(g.num_candidates, generator=gen), g.level, g.role, real, {"static": False})
    fig = render_wiring(w, size=(5, 4), dpi=40)  # ranked on the circle
    edges = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)][0]
    assert len(edges.get_segments()) == 2500 and edges.get_colors()[-1, 3] > 0.8
    render_wiring(w, view="adjacency", size=(4, 4), dpi=40)
    with pytest.raises(ValueError, match="dynamic wiring has one level"):
        render_wiring(w, view="flow")
    path = tmp_path / "dyn.graphml"
    from wiring.io import write_graphml
    write_graphml(w, path)
    with pytest.raises(SystemExit) as exc:
        render.main([str(path), "--view", "flow", "-o", str(tmp_path / "f.png")])
    assert exc.value.code == 2 and "use --view adjacency" in one_error_line(capsys)
    assert not (tmp_path / "f.png").exists()


def test_every_view_names_the_levels_one_way(tmp_path):
    """One naming (wiring.picture.level_name), read back from the drawn text artists: the
    graph's column labels and the flow's column headers say inputs / level N / outputs,
    the adjacency ticks and the flow's band labels in / N / out; never a bare 0 or 3
    for the inputs or outputs."""
    from matplotlib.figure import Figure
    g = static_graph([2, 3, 3, 2])
    w = Wiring(g.edge_index, torch.linspace(-1, 1, g.num_candidates), g.level, g.role,
               torch.ones(g.num_candidates, dtype=torch.bool), {"static": True})
    fig = render_wiring(w, size=(6, 4), dpi=50)
    labels = [t.get_text() for t in fig.axes[0].texts if "(" in t.get_text()]
    assert labels == ["inputs (2)", "level 1 (3)", "level 2 (3)", "outputs (2)"]
    fig = render_wiring(w, view="adjacency", size=(6, 6), dpi=50)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["in", "1", "2", "out"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["in", "1", "2", "out"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("source level", "target level")
    ax = Figure(figsize=(8, 5)).add_subplot()
    render.draw_flow(ax, w)
    texts = [t.get_text() for t in ax.texts]
    assert [t.split("\n")[0] for t in texts[:4]] == ["inputs", "level 1", "level 2", "outputs"]
    assert {t.split(" → ")[1] for t in texts[4:]} <= {"1", "2", "out"} and "6 → 1" in texts   # 2 x 3 inputs -> 1


def test_a_recurrent_wiring_is_drawn_by_role_with_arrowheads_on_the_strongest_edges():
    """The discrete setting's wiring: inputs a column left, hidden nodes on a circle,
    outputs a column right, each group labelled; 2,500 edges (ranked) get arrowheads on
    the 250 strongest, 60 edges (weight style) on all. The old picture put every node on
    one small circle and drew no arrowhead above 400 edges. Its adjacency blocks are the roles."""
    from matplotlib.collections import PolyCollection
    from wiring.graph import dynamic_graph
    from viz.style import ARROW_AT, CHORD_BEND
    from wiring.picture import edge_ranks
    g = dynamic_graph(80, inputs=8, outputs=10)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(g.num_candidates, generator=gen)
    for k, heads in ((2500, 250), (60, 60)):
        real = torch.zeros(g.num_candidates, dtype=torch.bool)
        real[torch.randperm(g.num_candidates, generator=gen)[:k]] = True
        w = Wiring(g.edge_index, weight, g.level, g.role, real, {"static": False})
        ax = render_wiring(w, size=(8, 5), dpi=40).axes[0]
        labels = [t.get_text() for t in ax.texts]
        assert labels == ["inputs (8)", "hidden (62)", "outputs (10)"]
        offsets = {t.get_text(): t.get_position()[0] for t in ax.texts}
        assert offsets["inputs (8)"] < offsets["hidden (62)"] < offsets["outputs (10)"]
        arrows = [c for c in ax.collections if isinstance(c, PolyCollection)][0]
        tips = np.array([p.vertices[0] for p in arrows.get_paths()])
        assert len(tips) == heads
        # each tip lies on one of the `heads` strongest edges, ARROW_AT along its curve
        ei, wt = w.real_edges().edge_index.numpy(), w.real_edges().weight.numpy()
        strongest = ei[:, edge_ranks(wt) < heads]
        from viz.layout import node_positions
        pos = node_positions(g.level, g.role, dynamic=True)
        a, b = pos[strongest[0]], pos[strongest[1]]
        control = (a + b) / 2 + CHORD_BEND * np.stack([b[:, 1] - a[:, 1], a[:, 0] - b[:, 0]], axis=1)
        t = ARROW_AT
        expected = (1 - t) ** 2 * a + 2 * (1 - t) * t * control + t ** 2 * b
        assert np.allclose(np.sort(tips, axis=0), np.sort(expected, axis=0))
    ax = render_wiring(w, view="adjacency", size=(5, 5), dpi=40).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["in", "hidden", "out"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("source role", "target role")
