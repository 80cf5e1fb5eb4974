"""Tests for wiring.topology, on hand-built graphs of 4-6 nodes."""
import doctest
import time

import networkx as nx
import pytest
import torch

import wiring.topology as topology
from wiring.graph import HIDDEN, INPUT, OUTPUT, Wiring, static_graph
from wiring.io import to_networkx
from wiring.topology import (
    churn,
    cycle_stats,
    dead_nodes,
    degree_stats,
    depth,
    generations,
    level_edges,
    summary,
)


def make(edges, roles, levels=None, nodes=None):
    G = nx.DiGraph()
    G.add_nodes_from(range(len(roles)) if nodes is None else nodes)
    G.add_edges_from(edges)
    nx.set_node_attributes(G, dict(enumerate(roles)), "role")
    if levels is not None:
        nx.set_node_attributes(G, dict(enumerate(levels)), "level")
    return G


@pytest.fixture
def dag():
    """Inputs 0, 1; hidden 2, 3, 4; output 5.

    0 -> 2 -> 3 -> 5, 0 -> 5, 1 -> 4 (4 feeds nothing), 1 reaches no output.
    """
    return make([(0, 2), (2, 3), (3, 5), (0, 5), (1, 4)],
                ["input", "input", "hidden", "hidden", "hidden", "output"],
                [0, 0, 1, 2, 2, 3])


@pytest.fixture
def cyclic():
    """0 (input) -> 1 -> 2 -> 1, 2 -> 3 (output), 3 -> 3, 4 hidden isolated."""
    return make([(0, 1), (1, 2), (2, 1), (2, 3), (3, 3)],
                ["input", "hidden", "hidden", "output", "hidden"], [0] * 5)


def test_doctests():
    assert doctest.testmod(topology).failed == 0


class TestDepth:
    def test_longest_path(self, dag):
        assert depth(dag) == 3

    def test_chain(self):
        assert depth(make([(0, 1), (1, 2), (2, 3)], ["input", "hidden", "hidden", "output"])) == 3

    def test_no_input_reaches_output(self):
        G = make([(0, 1), (2, 3)], ["input", "hidden", "hidden", "output"])
        assert depth(G) == 0

    def test_path_must_start_at_an_input(self):
        # 2 -> 3 -> 4 -> 5 is longer but 2 is not an input and not reached from one
        G = make([(0, 5), (2, 3), (3, 4), (4, 5)], ["input", "input", "hidden", "hidden", "hidden", "output"])
        assert depth(G) == 1

    def test_cycle_raises(self, cyclic):
        with pytest.raises(ValueError, match="cycle.*cycle_stats"):
            depth(cyclic)

    def test_roles_inferred_without_attributes(self):
        assert depth(nx.DiGraph([(0, 1), (1, 2), (0, 2), (3, 2)])) == 2


class TestGenerations:
    def test_dag(self, dag):
        assert generations(dag) == [[0, 1], [2, 4], [3], [5]]

    def test_cycle_raises(self, cyclic):
        with pytest.raises(ValueError, match="acyclic"):
            generations(cyclic)


class TestDeadNodes:
    def test_dag(self, dag):
        # 1: input reaching no output; 4: fed by 1 but feeds nothing
        assert dead_nodes(dag) == {1, 4}

    def test_node_fed_by_nothing(self):
        # 2 feeds the output but nothing feeds 2
        G = make([(0, 1), (1, 3), (2, 3)], ["input", "hidden", "hidden", "output"])
        assert dead_nodes(G) == {2}

    def test_output_not_reached(self):
        G = make([(0, 2), (1, 3)], ["input", "hidden", "output", "output"])
        assert dead_nodes(G) == {1, 3}

    def test_cyclic(self, cyclic):
        assert dead_nodes(cyclic) == {4}

    def test_all_live(self):
        assert dead_nodes(make([(0, 1), (1, 2)], ["input", "hidden", "output"])) == set()


def test_degree_stats(dag):
    assert degree_stats(dag) == {
        "in_mean": 5 / 6, "in_max": 2, "in_min": 0,
        "out_mean": 5 / 6, "out_max": 2, "out_min": 0,
        "zero_in": 2, "zero_out": 2,
    }


def test_degree_stats_empty():
    assert degree_stats(nx.DiGraph())["zero_in"] == 0


def test_level_edges(dag):
    assert level_edges(dag) == {(0, 1): 1, (0, 2): 1, (0, 3): 1, (1, 2): 1, (2, 3): 1}
    assert list(level_edges(dag)) == sorted(level_edges(dag))


class TestChurn:
    def test_sets(self):
        assert churn({(0, 1), (1, 2), (2, 3)}, {(1, 2), (0, 3)}) == {"added": 1, "removed": 2, "kept": 1}

    def test_wirings_use_real_edges(self):
        level, role = torch.tensor([0, 0, 1, 1]), torch.tensor([INPUT, INPUT, OUTPUT, OUTPUT])
        a = Wiring(torch.tensor([[0, 1, 0], [2, 2, 3]]), torch.ones(3), level, role,
                   real=torch.tensor([True, True, False]))
        b = Wiring(torch.tensor([[0, 1], [3, 2]]), torch.ones(2), level, role)
        assert churn(a, b) == {"added": 1, "removed": 1, "kept": 1}
        assert churn(a, a) == {"added": 0, "removed": 0, "kept": 2}

    def test_graphs(self, dag):
        assert churn(dag, nx.DiGraph([(0, 2)])) == {"added": 0, "removed": 4, "kept": 1}


class TestCycleStats:
    def test_cyclic(self, cyclic):
        assert cycle_stats(cyclic) == {"acyclic": False, "cyclic_components": 2,
                                       "largest_component": 2, "self_loops": 1}

    def test_acyclic(self, dag):
        assert cycle_stats(dag) == {"acyclic": True, "cyclic_components": 0,
                                    "largest_component": 0, "self_loops": 0}

    def test_big_cycle(self):
        G = make([(0, 1), (1, 2), (2, 3), (3, 0), (3, 4)], ["input"] + ["hidden"] * 3 + ["output"])
        assert cycle_stats(G)["largest_component"] == 4


class TestSummary:
    def test_dag(self, dag):
        s = summary(dag)
        assert s["nodes"] == 6 and s["edges"] == 5
        assert s["acyclic"] is True and s["depth"] == 3 and s["dead"] == 2
        assert s["zero_in"] == 2 and s["in_max"] == 2
        assert s["level_edges"] == [[0, 1, 1], [0, 2, 1], [0, 3, 1], [1, 2, 1], [2, 3, 1]]
        assert s["cyclic_components"] == 0

    def test_cyclic(self, cyclic):
        s = summary(cyclic)
        assert s["acyclic"] is False and s["depth"] is None and s["dead"] == 1
        assert s["self_loops"] == 1 and s["largest_component"] == 2
        assert s["level_edges"] == [[0, 0, 5]]

    def test_plain_values(self, dag):
        import json
        json.dumps(summary(dag))

    def test_from_wiring(self):
        level = torch.tensor([0, 0, 1, 2])
        role = torch.tensor([INPUT, INPUT, HIDDEN, OUTPUT])
        w = Wiring(torch.tensor([[0, 1, 2], [2, 2, 3]]), torch.ones(3), level, role)
        s = summary(to_networkx(w))
        assert s["depth"] == 2 and s["dead"] == 0 and s["level_edges"] == [[0, 1, 2], [1, 2, 1]]

    def test_fast_at_paper_scale(self):
        g = static_graph([32, 192, 192, 192, 192, 100])
        gen = torch.Generator().manual_seed(0)
        idx = torch.randperm(g.num_candidates, generator=gen)[:12000]
        G = to_networkx(Wiring(g.edge_index[:, idx], torch.randn(12000, generator=gen), g.level, g.role))
        summary(G)
        start = time.perf_counter()
        s = summary(G)
        elapsed = time.perf_counter() - start
        assert s["nodes"] == 900 and s["edges"] == 12000 and s["acyclic"]
        assert elapsed < 0.1, f"summary took {elapsed * 1e3:.0f} ms"
