"""Tests for wiring.io: NetworkX, PyG, GraphML, edge lists, histories, run folders."""
import doctest
import json
import os

import networkx as nx
import pytest
import torch

import wiring.io as wio
from wiring.graph import HIDDEN, INPUT, OUTPUT, GraphError, Wiring, static_graph
from wiring.io import (
    RunData,
    WiringFileError,
    WiringHistory,
    from_networkx,
    from_pyg,
    load_metrics,
    load_run,
    node_order,
    read_graphml,
    read_wiring_file,
    run_wirings,
    to_networkx,
    to_pyg,
    write_edgelist,
    write_graphml,
)

ATTRS = {"k": 4, "density": 0.5, "candidates": 8, "preset": "random_k", "mode": "dnw",
         "seed": 3, "step": 120, "static": True}


@pytest.fixture
def wiring():
    """Static 5 nodes: inputs 0, 1; hidden 2, 3; output 4; 4 real of 8 candidates."""
    g = static_graph([2, 2, 1])
    real = torch.tensor([True, False, False, True, True, False, True, False])
    weight = torch.tensor([0.5, -0.01, 0.02, -1.25, 2.0, 0.0, 0.75, 0.03])
    return Wiring(g.edge_index, weight, g.level, g.role, real, dict(ATTRS))


def edges_of(w):
    src, dst = w.edge_index.tolist()
    return dict(zip(zip(src, dst), w.weight.tolist()))


def assert_same(a, b, *, attrs=True):
    assert a.edge_index.tolist() == b.edge_index.tolist()
    assert torch.allclose(a.weight.float(), b.weight.float(), atol=1e-6)
    assert a.level.tolist() == b.level.tolist()
    assert a.role.tolist() == b.role.tolist()
    assert (a.real is None) == (b.real is None)
    if a.real is not None:
        assert a.real.tolist() == b.real.tolist()
    if attrs:
        assert a.attrs == b.attrs


def test_doctests():
    assert doctest.testmod(wio).failed == 0


# ----------------------------------------------------------------------------- NetworkX

class TestNetworkx:
    def test_attributes(self, wiring):
        G = to_networkx(wiring)
        assert list(G.nodes) == [0, 1, 2, 3, 4]
        assert G.nodes[0] == {"level": 0, "role": "input"}
        assert G.nodes[3] == {"level": 1, "role": "hidden"}
        assert G.nodes[4] == {"level": 2, "role": "output"}
        assert G.edges[0, 2] == {"signed_weight": 0.5, "real": True}
        assert G.edges[1, 2] == {"signed_weight": pytest.approx(-0.01), "real": False}
        assert G.graph == ATTRS
        assert G.number_of_edges() == 8

    def test_round_trip(self, wiring):
        assert_same(from_networkx(to_networkx(wiring)), wiring)

    def test_round_trip_real_edges_only(self, wiring):
        w = wiring.real_edges()
        assert_same(from_networkx(to_networkx(w)), w)

    def test_duplicate_edge_in_wiring(self, wiring):
        w = Wiring(torch.tensor([[0, 0], [2, 2]]), torch.ones(2), wiring.level, wiring.role)
        with pytest.raises(GraphError, match="duplicate edge 0 -> 2"):
            to_networkx(w)

    def test_string_ids_natural_order(self):
        G = nx.DiGraph([("n10", "n2"), ("n2", "n3"), ("n1", "n2")])
        assert node_order(G) == ["n1", "n2", "n3", "n10"]
        w = from_networkx(G)
        assert w.edge_index.tolist() == [[0, 3, 1], [1, 1, 2]]
        assert w.role.tolist() == [INPUT, HIDDEN, OUTPUT, INPUT]
        assert w.level.tolist() == [0, 1, 2, 0]
        assert w.weight.tolist() == [1.0, 1.0, 1.0]
        assert w.real is None and w.attrs == {"static": True}

    def test_int_ids_any_insertion_order(self):
        G = nx.DiGraph()
        G.add_edges_from([(3, 1), (0, 1), (1, 2)])
        w = from_networkx(G)
        assert w.edge_index.tolist() == [[0, 3, 1], [1, 1, 2]]

    def test_missing_level_cycle(self):
        G = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
        with pytest.raises(GraphError, match="cycle 'a' -> 'b' -> 'c' -> 'a'.*static=False"):
            from_networkx(G)

    def test_missing_level_dynamic(self):
        G = nx.DiGraph([(0, 1), (1, 0), (1, 2)])
        w = from_networkx(G, static=False)
        assert w.level.tolist() == [0, 0, 0]
        G.graph["static"] = False
        assert from_networkx(G).level.tolist() == [0, 0, 0]

    def test_static_level_order_checked(self):
        G = nx.DiGraph([(0, 1)])
        nx.set_node_attributes(G, {0: 1, 1: 0}, "level")
        assert from_networkx(G).level.tolist() == [1, 0]  # unknown kind: not checked
        with pytest.raises(GraphError, match="edge 0 -> 1 goes from level 1 to level 0"):
            from_networkx(G, static=True)

    @pytest.mark.parametrize("weight", ["heavy", None, True, [1.0]])
    def test_non_numeric_weight(self, weight):
        G = nx.DiGraph()
        G.add_edge("x", "y", weight=weight)
        if weight is None:
            assert from_networkx(G).weight.tolist() == [1.0]
        else:
            with pytest.raises(GraphError, match="edge 'x' -> 'y' has non-numeric weight"):
                from_networkx(G)

    def test_unknown_role(self):
        G = nx.DiGraph([(0, 1)])
        G.nodes[1]["role"] = "sink"
        with pytest.raises(GraphError, match="node 1 has unknown role 'sink'"):
            from_networkx(G)

    @pytest.mark.parametrize("level, match", [(-1, "negative level"), (1.5, "integers"), ("2", "integers")])
    def test_bad_level(self, level, match):
        G = nx.DiGraph([(0, 1)])
        nx.set_node_attributes(G, {0: 0, 1: level}, "level")
        with pytest.raises(GraphError, match=f"node 1 .*{match}"):
            from_networkx(G)

    def test_partial_levels(self):
        G = nx.DiGraph([(0, 1)])
        G.nodes[0]["level"] = 0
        with pytest.raises(GraphError, match="node 1 has no level"):
            from_networkx(G)

    def test_undirected_and_multigraph(self):
        with pytest.raises(GraphError, match="directed"):
            from_networkx(nx.Graph([(0, 1)]))
        with pytest.raises(GraphError, match="duplicate edge 0 -> 1"):
            from_networkx(nx.MultiDiGraph([(0, 1), (0, 1)]))
        assert from_networkx(nx.MultiDiGraph([(0, 1)])).num_edges == 1


# ----------------------------------------------------------------------------- PyG

class TestPyg:
    def test_round_trip(self, wiring):
        data = to_pyg(wiring)
        assert data.num_nodes == 5
        assert data.edge_index.tolist() == wiring.edge_index.tolist()
        assert data.edge_weight.tolist() == wiring.weight.tolist()
        assert data.real.tolist() == wiring.real.tolist()
        assert_same(from_pyg(data), wiring)

    def test_without_real(self, wiring):
        data = to_pyg(wiring.real_edges())
        assert "real" not in data
        assert_same(from_pyg(data), wiring.real_edges())

    def test_defaults(self):
        Data = wio.convert._pyg_data()  # imports torch_geometric with its torch.jit warning silenced
        w = from_pyg(Data(edge_index=torch.tensor([[0, 1, 0], [1, 2, 2]]), num_nodes=4))
        assert w.weight.tolist() == [1.0, 1.0, 1.0]
        assert w.level.tolist() == [0, 1, 2, 0]
        assert w.role.tolist() == [INPUT, HIDDEN, OUTPUT, INPUT]


# ----------------------------------------------------------------------------- GraphML

class TestGraphml:
    def test_round_trip(self, wiring, tmp_path):
        path = tmp_path / "wiring.graphml"
        write_graphml(wiring, path)
        assert_same(read_graphml(path), wiring)
        assert [p.name for p in tmp_path.iterdir()] == ["wiring.graphml"]  # no temp file left

    def test_plain_scalar_attributes(self, wiring, tmp_path):
        path = tmp_path / "w.graphml"
        w = Wiring(wiring.edge_index, wiring.weight, wiring.level, wiring.role, None,
                   {**ATTRS, "seed": None, "k": torch.tensor(4)})
        write_graphml(w, path)
        G = nx.read_graphml(path)  # a plain reader
        assert G.graph["k"] == 4 and "seed" not in G.graph
        assert G.nodes["4"] == {"level": 2, "role": "output"}
        assert isinstance(G.edges["0", "2"]["signed_weight"], float)
        text = path.read_text()
        for name in ("level", "role", "signed_weight", "k", "density", "preset"):
            assert f'attr.name="{name}"' in text
        assert 'attr.name="weight"' not in text          # NetworkX's default weight: see below

    def test_networkx_defaults_see_the_topology_not_the_signed_weights(self, wiring, tmp_path):
        # NetworkX reads an edge attribute "weight" by default: the file must not hand it the
        # signed weights (a longest path of 0.5 + 2.0 "edges", a negative "distance")
        path = tmp_path / "w.graphml"
        write_graphml(wiring.real_edges(), path)
        for G in (nx.read_graphml(path), to_networkx(wiring.real_edges())):
            assert all("weight" not in data for _, _, data in G.edges(data=True))
            assert nx.dag_longest_path_length(G) == nx.dag_longest_path_length(G, weight=None) == 2
            source, target = sorted((n for n in G if str(n) in ("0", "4")), key=str)
            assert nx.shortest_path_length(G, source, target, weight="weight") == 1   # the edge 0 -> 4
            # the values, when asked for: 0 -> 4 (2.0) beats 0 -> 2 -> 4 (0.5 + 0.75)
            assert nx.dag_longest_path_length(G, weight="signed_weight") == pytest.approx(2.0)

    def test_older_files_with_weight_still_load(self, wiring, tmp_path):
        # files written before the attribute was renamed (and other tools' files) call it "weight"
        path = tmp_path / "old.graphml"
        write_graphml(wiring, path)
        path.write_text(path.read_text().replace('attr.name="signed_weight"', 'attr.name="weight"'))
        assert 'attr.name="weight"' in path.read_text()
        assert_same(read_graphml(path), wiring)
        assert_same(read_wiring_file(path), wiring)
        G = to_networkx(wiring)
        for _, _, data in G.edges(data=True):
            data["weight"] = data.pop("signed_weight")
        assert_same(from_networkx(G), wiring)
        G.edges[0, 2]["signed_weight"] = 9.0             # both: the signed weight wins
        assert edges_of(from_networkx(G))[0, 2] == 9.0

    def test_non_scalar_attribute(self, wiring, tmp_path):
        wiring.attrs["sizes"] = [2, 2, 1]
        with pytest.raises(GraphError, match="attrs\\['sizes'\\] is a list"):
            write_graphml(wiring, tmp_path / "w.graphml")
        assert list(tmp_path.iterdir()) == []

    def test_overwrite_is_atomic_replace(self, wiring, tmp_path):
        path = tmp_path / "w.graphml"
        path.write_text("old")
        write_graphml(wiring, path)
        assert read_graphml(path).num_edges == 8

    def test_read_plain_networkx_file(self, tmp_path):
        G = nx.DiGraph()
        G.add_edge("a", "b", capacity=3)
        G.add_edge("b", "c")
        G.add_edge("a", "c")
        G.add_edge("d", "c")
        G.nodes["a"]["color"] = "red"
        G.graph["name"] = "toy"
        path = tmp_path / "plain.graphml"
        nx.write_graphml(G, path)
        w = read_graphml(path)
        assert edges_of(w) == {(0, 1): 1.0, (0, 2): 1.0, (1, 2): 1.0, (3, 2): 1.0}
        assert w.level.tolist() == [0, 1, 2, 0]
        assert w.role.tolist() == [INPUT, HIDDEN, OUTPUT, INPUT]
        assert w.attrs == {"name": "toy", "static": True}

    def test_read_plain_networkx_file_with_weights(self, tmp_path):
        G = nx.DiGraph()
        G.add_weighted_edges_from([(0, 1, 2.5), (1, 2, -1.0), (0, 2, 3)])
        path = tmp_path / "weighted.graphml"
        nx.write_graphml(G, path)
        assert edges_of(read_graphml(path)) == {(0, 1): 2.5, (1, 2): -1.0, (0, 2): 3.0}

    def test_missing_file(self, tmp_path):
        with pytest.raises(WiringFileError, match="does not exist"):
            read_graphml(tmp_path / "nope.graphml")

    def test_malformed_xml(self, tmp_path):
        path = tmp_path / "bad.graphml"
        path.write_text("<graphml><graph><node id='0'></graph>")
        with pytest.raises(WiringFileError, match="not well-formed XML"):
            read_graphml(path)

    def test_not_graphml(self, tmp_path):
        path = tmp_path / "other.graphml"
        path.write_text("<html><body/></html>")
        with pytest.raises(WiringFileError, match="could not be read as GraphML"):
            read_graphml(path)

    def test_entities_refused(self, tmp_path):
        path = tmp_path / "lol.graphml"
        path.write_text('<?xml version="1.0"?><!DOCTYPE g [<!ENTITY a "aaaa">]><graphml>&a;</graphml>')
        with pytest.raises(WiringFileError, match="entities"):
            read_graphml(path)

    def test_size_limit(self, wiring, tmp_path):
        path = tmp_path / "w.graphml"
        write_graphml(wiring, path)
        with pytest.raises(WiringFileError, match="over the limit max_bytes=100"):
            read_graphml(path, max_bytes=100)

    def test_count_limits(self, wiring, tmp_path):
        path = tmp_path / "w.graphml"
        write_graphml(wiring, path)
        with pytest.raises(WiringFileError, match="max_nodes=4"):
            read_graphml(path, max_nodes=4)
        with pytest.raises(WiringFileError, match="max_edges=7"):
            read_graphml(path, max_edges=7)
        assert read_graphml(path, max_nodes=5, max_edges=8).num_edges == 8

    def test_cycle_without_levels(self, tmp_path):
        path = tmp_path / "cycle.graphml"
        nx.write_graphml(nx.DiGraph([(0, 1), (1, 2), (2, 0)]), path)
        with pytest.raises(WiringFileError, match=r"cycle\.graphml.*cycle '0' -> '1' -> '2' -> '0'"):
            read_graphml(path)
        assert read_graphml(path, static=False).level.tolist() == [0, 0, 0]

    def test_non_numeric_weight(self, tmp_path):
        G = nx.DiGraph()
        G.add_edge(0, 1, weight="heavy")
        path = tmp_path / "w.graphml"
        nx.write_graphml(G, path)
        with pytest.raises(WiringFileError, match="edge '0' -> '1' has non-numeric weight 'heavy'"):
            read_graphml(path)

    def test_badly_typed_value(self, tmp_path):
        path = tmp_path / "w.graphml"
        nx.write_graphml(nx.DiGraph([(0, 1, {"weight": 1.0})]), path)
        path.write_text(path.read_text().replace(">1.0<", ">abc<"))
        with pytest.raises(WiringFileError, match="could not be read"):
            read_graphml(path)

    def test_duplicate_edge(self, tmp_path):
        path = tmp_path / "dup.graphml"
        path.write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
            '<graph edgedefault="directed">\n'
            '<node id="a"/><node id="b"/>\n'
            '<edge source="a" target="b"/><edge source="a" target="b"/>\n'
            '</graph></graphml>\n')
        with pytest.raises(WiringFileError, match="duplicate edge 'a' -> 'b'"):
            read_graphml(path)

    def test_dynamic_wiring(self, tmp_path):
        level = torch.zeros(4, dtype=torch.long)
        role = torch.tensor([INPUT, HIDDEN, HIDDEN, OUTPUT])
        w = Wiring(torch.tensor([[0, 2, 1, 2], [1, 1, 2, 3]]), torch.tensor([1.0, -0.5, 0.25, 2.0]),
                   level, role, attrs={"static": False, "mode": "dnw"})
        path = tmp_path / "dyn.graphml"
        write_graphml(w, path)
        assert_same(read_graphml(path), w)


def test_write_edgelist(wiring, tmp_path):
    path = tmp_path / "w.txt"
    write_edgelist(wiring, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "# nodes 5 edges 8"
    assert "# mode: dnw" in lines
    assert lines[len(ATTRS) + 1] == "# source target weight real"
    rows = [line.split() for line in lines if not line.startswith("#")]
    assert rows[0] == ["0", "2", "0.5", "1"]
    assert len(rows) == 8
    assert [float(r[2]) for r in rows] == pytest.approx(wiring.weight.tolist())


# ----------------------------------------------------------------------------- history

def small_history():
    g = static_graph([2, 2, 1])
    h = WiringHistory.from_graph(g, {"mode": "dnw", "seed": 0})
    h.append(0, torch.tensor([0, 3, 4, 6]), torch.tensor([0.5, -1.25, 2.0, 0.75]))
    h.append(50, torch.tensor([6, 1, 3, 4]), torch.tensor([0.5, 0.25, -1.5, 2.0]))  # unsorted
    mask = torch.zeros(8, dtype=torch.bool)
    mask[[1, 2, 4, 7]] = True
    h.append(100, mask, torch.arange(8, dtype=torch.float32))  # mask + all weights
    return g, h


class TestHistory:
    def test_frames(self):
        g, h = small_history()
        assert len(h) == 3 and h.steps == [0, 50, 100]
        f = h.frame(1)
        assert f.edge_index.tolist() == g.edge_index[:, [1, 3, 4, 6]].tolist()
        assert f.weight.tolist() == [0.25, -1.5, 2.0, 0.5]
        assert f.level.tolist() == g.level.tolist() and f.role.tolist() == g.role.tolist()
        assert f.attrs == {"mode": "dnw", "seed": 0, "static": True, "candidates": 8,
                           "step": 50, "k": 4, "density": 0.5}
        assert h.frame(-1).weight.tolist() == [1.0, 2.0, 4.0, 7.0]
        assert h.real_index(2).tolist() == [1, 2, 4, 7]
        assert [f.attrs["step"] for f in h] == [0, 50, 100]
        with pytest.raises(IndexError):
            h.frame(3)

    def test_save_plain_torch_load(self, tmp_path):
        g, h = small_history()
        path = tmp_path / "history.pt"
        h.save(path)
        state = torch.load(path, weights_only=True)
        assert set(state) == {"format", "version", "num_candidates", "edge_id", "edges", "level", "role",
                              "steps", "ptr", "index", "weight", "attrs"}
        assert state["format"] == "wiring-history" and state["version"] == 2
        assert state["num_candidates"] == 8
        # only candidates real in some snapshot are stored: snapshots use {0, 1, 2, 3, 4, 6, 7}
        used = sorted(set(state["index"].tolist()))
        assert state["edge_id"].tolist() == used
        assert state["edges"].tolist() == g.edge_index[:, used].tolist()
        assert state["steps"].tolist() == [0, 50, 100]
        assert state["ptr"].tolist() == [0, 4, 8, 12]
        assert state["index"].dtype == torch.int32 and state["weight"].dtype == torch.float16
        assert state["index"][4:8].tolist() == [1, 3, 4, 6]
        assert state["attrs"] == {"mode": "dnw", "seed": 0, "static": True, "candidates": 8}

    def test_load_equals_appended(self, tmp_path):
        _, h = small_history()
        path = tmp_path / "history.pt"
        h.save(path)
        loaded = WiringHistory.load(path)
        assert loaded.steps == h.steps
        for i in range(len(h)):
            assert_same(loaded.frame(i), h.frame(i))

    def test_empty_history(self, tmp_path):
        g = static_graph([2, 1])
        h = WiringHistory.from_graph(g)
        h.save(tmp_path / "h.pt")
        assert len(WiringHistory.load(tmp_path / "h.pt")) == 0

    def test_bytes_per_edge(self, tmp_path):
        g = static_graph([32, 192, 192, 192, 192, 100])  # the default graph: 325,760 candidates
        gen = torch.Generator().manual_seed(0)
        h = WiringHistory.from_graph(g)
        h.save(tmp_path / "empty.pt")
        snapshots, k = 5, 12000
        real = torch.randperm(g.num_candidates, generator=gen)[:k]
        for step in range(snapshots):      # a few hundred edges swap between snapshots
            real[torch.randint(0, real.numel(), (300,), generator=gen)] = torch.randint(0, g.num_candidates, (300,),
                                                                             generator=gen)
            real = torch.unique(real)
            h.append(step, real, torch.randn(real.numel(), generator=gen))
        h.save(tmp_path / "full.pt")
        used = torch.unique(torch.cat([h.real_index(i) for i in range(snapshots)])).numel()
        stored = os.path.getsize(tmp_path / "full.pt") - os.path.getsize(tmp_path / "empty.pt")
        # 6 bytes per real edge per snapshot, 12 per distinct edge ever real, no per-candidate cost
        assert stored < 6.2 * sum(h.real_index(i).numel() for i in range(snapshots)) + 12.2 * used, stored
        assert os.path.getsize(tmp_path / "full.pt") < 600_000

    def test_append_errors(self):
        _, h = small_history()
        with pytest.raises(GraphError, match="outside"):
            h.append(1, torch.tensor([8]), torch.tensor([1.0]))
        with pytest.raises(GraphError, match="duplicate"):
            h.append(1, torch.tensor([1, 1]), torch.tensor([1.0, 2.0]))
        with pytest.raises(GraphError, match="weight"):
            h.append(1, torch.tensor([1, 2]), torch.tensor([1.0]))
        with pytest.raises(GraphError, match="step"):
            h.append(1.5, torch.tensor([1]), torch.tensor([1.0]))
        assert len(h) == 3

    def test_load_errors(self, tmp_path):
        with pytest.raises(WiringFileError, match="does not exist"):
            WiringHistory.load(tmp_path / "nope.pt")
        (tmp_path / "junk.pt").write_bytes(b"not a zip")
        with pytest.raises(WiringFileError, match="could not be loaded"):
            WiringHistory.load(tmp_path / "junk.pt")
        torch.save({"format": "other"}, tmp_path / "other.pt")
        with pytest.raises(WiringFileError, match="not a wiring history"):
            WiringHistory.load(tmp_path / "other.pt")


# ----------------------------------------------------------------------------- metrics and runs

def test_load_metrics_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0, "loss": 2.3}\n\n{"epoch": 1, "loss": 1.9}\n{"epoch": 2, "lo')
    assert load_metrics(path) == [{"epoch": 0, "loss": 2.3}, {"epoch": 1, "loss": 1.9}]


def test_load_metrics_bad_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\n{oops\n{"epoch": 1}\n')
    with pytest.raises(WiringFileError, match="line 2"):
        load_metrics(path)


def test_load_run(wiring, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: tiny\nedges: 4\nlr: 0.1\n")
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "acc": 0.5}) + "\n")
    _, h = small_history()
    h.save(run / "history.pt")
    write_graphml(wiring, run / "wiring.graphml")
    write_graphml(wiring.real_edges(), run / "initial.graphml")
    data = load_run(run)
    assert isinstance(data, RunData)
    assert data.config == {"model": "tiny", "edges": 4, "lr": 0.1}
    assert data.metrics == [{"epoch": 0, "acc": 0.5}]
    assert data.history.steps == [0, 50, 100]
    assert_same(data.final, wiring)
    assert_same(data.initial, wiring.real_edges())


def test_load_run_partial(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n')
    data = load_run(tmp_path)
    assert data.config == {} and data.history is None and data.final is None and data.initial is None


def test_load_run_errors(tmp_path):
    with pytest.raises(WiringFileError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(WiringFileError, match="expected at least one of config.yaml"):
        load_run(tmp_path)
    (tmp_path / "config.yaml").write_text("- a list\n")
    with pytest.raises(WiringFileError, match="not a mapping"):
        load_run(tmp_path)


def test_runs_with_several_wirings(tmp_path):
    from run_dirs import make_multi_wiring_run
    run = make_multi_wiring_run(tmp_path / "run", {"stages-10-graph": 5, "stages-2-graph": 7})
    assert run_wirings(run) == ["stages-2-graph", "stages-10-graph"]            # natural order
    data = load_run(run)                                                       # several: none chosen
    assert data.wiring_name is None and data.history is None and data.final is None
    assert data.wirings == ["stages-2-graph", "stages-10-graph"] and data.metrics
    data = load_run(run, "stages-10-graph")
    assert data.wiring_name == "stages-10-graph" and data.final.num_edges == 5
    assert data.history.steps == [0, 5, 10] and data.initial.num_edges == 5
    with pytest.raises(WiringFileError, match="no wiring 'stages-3-graph'; it holds: stages-2-graph"):
        load_run(run, "stages-3-graph")
    (run / "wiring-stages-10-graph.graphml").unlink()
    (run / "history-stages-10-graph.pt").unlink()
    (run / "initial-stages-10-graph.graphml").unlink()
    data = load_run(run)                                                       # one left: read it
    assert data.wiring_name == "stages-2-graph" and data.final.num_edges == 7


def test_single_wiring_runs_name_their_wiring_empty(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n')
    assert run_wirings(tmp_path) == [] and load_run(tmp_path).wiring_name is None
    _, h = small_history()
    h.save(tmp_path / "history.pt")
    assert run_wirings(tmp_path) == [""] and load_run(tmp_path).wiring_name == ""
