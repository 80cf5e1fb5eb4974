"""wiring.export: a checkpoint's wiring in every format, readable without this library."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from wiring.export import main
from wiring.io import read_graphml
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


def test_pyg_dict_loads_with_weights_only_and_builds_data(run_dir):
    assert main([str(run_dir), "--format", "pyg", "--all-candidates", "-o", str(run_dir / "all.pt")]) == 0
    d = torch.load(run_dir / "all.pt", weights_only=True)
    assert d["edge_index"].shape == (2, 1712) and int(d["real"].sum()) == 90
    assert d["num_nodes"] == 66 and d["attrs"]["k"] == 90
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch_geometric.data import Data
    data = Data(**{k: v for k, v in d.items() if k != "attrs"})
    assert data.num_nodes == 66 and data.num_edges == 1712


def test_edgelist_lines(run_dir):
    assert main([str(run_dir), "--format", "edgelist", "--best"]) == 0
    lines = [l for l in (run_dir / "export.txt").read_text().splitlines() if not l.startswith("#")]
    assert len(lines) == 90
    u, v, w = lines[0].split()
    assert int(u) < int(v) and float(w) != 0.0


def test_missing_run_directory_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
