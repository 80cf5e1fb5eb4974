"""wiring.export: a checkpoint's wiring in every format, readable without this library."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import torch

from viz.explore.frames import load_frames
from viz.sources import load_source
from wiring.analyze import main as analyze_main
from wiring.export import main
from wiring.io import from_pyg, load_run, read_graphml, read_wiring_file
from wiring.study.results import _wiring_stats
from wiring.topology import depth
from wiring.train.pipeline import main as train_main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    assert train_main(["--model", "micro", "--epochs", "1", "--edges", "90", "--batch-size", "512",
                       "--progress", "none", "--out", str(out)]) == 0
    return out


def test_graphml_equals_the_checkpoint_top_k(run_dir, capsys):
    assert main([str(run_dir)]) == 0
    path = run_dir / "export.graphml"
    assert str(path) in capsys.readouterr().out
    G = nx.read_graphml(path)
    assert G.number_of_edges() == 90 and G.graph["k"] == 90
    weight = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]["graph.weight"]
    top = set(torch.topk(weight.abs(), 90).indices.tolist())
    exported = read_graphml(path)
    learned = read_graphml(run_dir / "wiring.graphml")
    assert torch.equal(exported.edge_index, learned.edge_index)
    assert torch.allclose(exported.weight, learned.weight)
    assert len(top) == 90 and sorted(abs(w) for w in exported.weight.tolist()) == \
        pytest.approx(sorted(weight.abs()[list(top)].tolist()))


ROOT = Path(__file__).resolve().parents[1]

CHECK_PYG = """
from torch_geometric.data import Data
assert isinstance(data, Data), type(data)
mine = sorted(m for m in sys.modules if m.split(".")[0] in ("wiring", "models", "viz"))
print(data.num_nodes, data.num_edges, int(data.real.sum()), data.attrs["k"], data.edge_weight.dtype, mine)
"""


def readme_pyg_block() -> str:
    """The README's Python block that loads ``--format pyg``'s file."""
    readme = (ROOT / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in readme.split("```python\n")[1:]]
    (block,) = [b for b in blocks if "RUN_DIR/export.pt" in b]
    return block


@pytest.mark.parametrize("how", ["readme", "trusted"])
def test_pyg_export_is_a_data_that_pyg_loads_without_this_library(run_dir, tmp_path, how):
    path = tmp_path / "all.pt"
    assert main([str(run_dir), "--format", "pyg", "--all-candidates", "-o", str(path)]) == 0
    if how == "readme":     # the README's lines as they stand: PyG's storage classes allowed, weights_only
        load = readme_pyg_block().replace("RUN_DIR/export.pt", str(path))
    else:
        load = f"import torch\ndata = torch.load({str(path)!r}, weights_only=False)\n"
    done = subprocess.run([sys.executable, "-c", "import sys\n" + load + CHECK_PYG], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["66", "1712", "90", "90", "torch.float32", "[]"]
    data = torch.load(path, weights_only=False)
    back = from_pyg(data)
    graphml = read_graphml(run_dir / "wiring.graphml")
    assert torch.equal(back.real_edges().edge_index, graphml.edge_index)
    assert torch.allclose(back.real_edges().weight.double(), graphml.weight.double())


def test_learned_graphml_gives_networkx_the_topology_by_default(run_dir):
    # NetworkX reads "weight" by default; the learned file keeps its signed weights apart
    G = nx.read_graphml(run_dir / "wiring.graphml")
    assert all(set(data) == {"signed_weight"} for _, _, data in G.edges(data=True))
    longest = nx.dag_longest_path_length(G)
    assert isinstance(longest, int) and longest == nx.dag_longest_path_length(G, weight=None) >= depth(G) > 0
    signed = torch.tensor([d["signed_weight"] for _, _, d in G.edges(data=True)])
    assert bool((signed < 0).any()) and bool((signed > 0).any())


def as_older_file(path):
    """Rewrite a GraphML file as this project wrote it before the rename (edge data ``weight``)."""
    text = path.read_text()
    assert 'attr.name="signed_weight"' in text
    path.write_text(text.replace('attr.name="signed_weight"', 'attr.name="weight"'))


def test_graphml_written_with_weight_still_works_in_every_reader(run_dir, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for path in old.glob("*.graphml"):
        as_older_file(path)
    for name in ("wiring.graphml", "initial.graphml"):
        new_w, old_w = read_graphml(run_dir / name), read_graphml(old / name)
        assert torch.equal(new_w.edge_index, old_w.edge_index) and torch.equal(new_w.weight, old_w.weight)
        assert torch.equal(read_wiring_file(old / name).weight, new_w.weight)
    run_new, run_old = load_run(run_dir), load_run(old)
    assert torch.equal(run_new.final.weight, run_old.final.weight)
    assert torch.equal(run_new.initial.weight, run_old.initial.weight)
    assert torch.equal(load_source(old / "wiring.graphml").wiring.weight, run_new.final.weight)
    assert torch.equal(load_source(old).wiring.edge_index, load_source(run_dir).wiring.edge_index)
    assert load_frames(old / "wiring.graphml").weight[0].tolist() == \
        load_frames(run_dir / "wiring.graphml").weight[0].tolist()
    assert _wiring_stats(old) == _wiring_stats(run_dir) and "error" not in _wiring_stats(old)["graph"]
    capsys.readouterr()
    for source in (run_dir, old, old / "wiring.graphml"):
        assert analyze_main([str(source), "--json"]) == 0
    a, b, c = ({k: v for k, v in json.loads(line).items() if k != "source"}
               for line in capsys.readouterr().out.splitlines())
    assert a == b and a["depth"] == c["depth"] and a["dead_nodes"] == c["dead_nodes"]
    # --graph graphml: an older file as the initial wiring
    out = tmp_path / "from-old"
    assert train_main(["--model", "micro", "--epochs", "1", "--edges", "90", "--graph", "graphml", "--graph-file",
                       str(old / "wiring.graphml"), "--train-subset", "64", "--test-subset", "64",
                       "--batch-size", "64", "--progress", "none", "--out", str(out)]) == 0
    start = read_graphml(out / "initial.graphml")
    assert torch.equal(start.edge_index, run_new.final.edge_index)


def test_edgelist_lines(run_dir):
    assert main([str(run_dir), "--format", "edgelist", "--best"]) == 0
    lines = [l for l in (run_dir / "export.txt").read_text().splitlines() if not l.startswith("#")]
    assert len(lines) == 90
    u, v, w = lines[0].split()
    assert int(u) < int(v) and float(w) != 0.0


def test_missing_run_directory_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
