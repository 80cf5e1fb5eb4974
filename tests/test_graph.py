"""Tests for wiring.graph: builders, candidate order, blocks, validation, cycles.

Graphs are tiny and built by hand; expected results are exact.
"""
from __future__ import annotations

import pytest
import torch

from wiring.graph import (
    HIDDEN,
    INPUT,
    OUTPUT,
    Block,
    GraphError,
    NeuralGraph,
    Wiring,
    check_edges,
    density,
    dynamic_graph,
    find_cycle,
    from_edge_index,
    static_graph,
    validate_edge_index,
)

TINY = [32, 192, 192, 192, 192, 100]


def ei(src, dst):
    return torch.tensor([src, dst], dtype=torch.long)


def sort_keys(g: NeuralGraph) -> torch.Tensor:
    return g.edge_index[1] * g.num_nodes + g.edge_index[0]


def assert_strictly_sorted(g: NeuralGraph) -> None:
    key = sort_keys(g)
    assert bool((key[1:] > key[:-1]).all()), "candidates must be sorted by (target, source), no duplicates"


def assert_blocks_cover(g: NeuralGraph) -> None:
    """Blocks tile the candidate range in order, and each candidate lies in its rectangle."""
    pos = 0
    for b in g.blocks:
        assert b.cand_start == pos
        assert b.cand_end > b.cand_start
        src, dst = g.edge_index[:, b.cand_start:b.cand_end]
        assert bool(((dst >= b.target_start) & (dst < b.target_end)).all())
        assert bool(((src >= b.source_start) & (src < b.source_end)).all())
        area = (b.target_end - b.target_start) * (b.source_end - b.source_start)
        assert b.complete == (b.cand_end - b.cand_start == area)
        assert b.fill == pytest.approx((b.cand_end - b.cand_start) / area)
        pos = b.cand_end
    assert pos == g.num_candidates


# ----------------------------------------------------------------------------- static_graph

def test_static_graph_small_exact():
    g = static_graph([2, 2, 1])
    assert g.static and not g.allow_self_loops
    assert g.num_nodes == 5
    assert g.num_candidates == 8
    assert g.edge_index.dtype == torch.long
    assert g.edge_index.tolist() == [[0, 1, 0, 1, 0, 1, 2, 3], [2, 2, 3, 3, 4, 4, 4, 4]]
    assert g.level.tolist() == [0, 0, 1, 1, 2]
    assert g.role.tolist() == [INPUT, INPUT, HIDDEN, HIDDEN, OUTPUT]
    assert g.level_sizes == [2, 2, 1]
    assert g.num_levels == 3
    assert g.level_ptr == [0, 2, 4, 5]
    assert g.candidate_level_ptr == [0, 0, 4, 8]
    assert g.blocks == (Block(2, 4, 0, 2, 0, 4, True), Block(4, 5, 0, 4, 4, 8, True))
    assert g.nodes_with_role(INPUT).tolist() == [0, 1]
    assert g.nodes_with_role(HIDDEN).tolist() == [2, 3]
    assert g.nodes_with_role(OUTPUT).tolist() == [4]
    assert g.describe() == ("static graph: 5 nodes (2 input, 2 hidden, 1 output) levels [2, 2, 1], "
                            "8 candidate edges")


@pytest.mark.parametrize("sizes", [[1, 1], [2, 3], [3, 1, 4], [2, 2, 2, 2], [5, 1, 1, 3]])
def test_static_graph_counts(sizes):
    g = static_graph(sizes)
    expected = sum(size * sum(sizes[:i]) for i, size in enumerate(sizes))
    assert g.num_candidates == expected
    assert g.num_nodes == sum(sizes)
    assert g.level_sizes == sizes
    assert_strictly_sorted(g)
    assert_blocks_cover(g)
    assert all(b.complete for b in g.blocks)
    assert len(g.blocks) == len(sizes) - 1
    # every candidate goes from a lower level to a strictly higher one
    src, dst = g.edge_index
    assert bool((g.level[src] < g.level[dst]).all())


def test_static_graph_tiny_classifier():
    g = static_graph(TINY)
    assert g.num_candidates == 325_760
    assert g.num_nodes == 900
    assert g.level_sizes == TINY
    assert_strictly_sorted(g)
    assert_blocks_cover(g)
    assert len(g.blocks) == 5 and all(b.complete for b in g.blocks)
    ptr = g.level_ptr
    cptr = g.candidate_level_ptr
    assert ptr == [0, 32, 224, 416, 608, 800, 900]
    for lvl, b in enumerate(g.blocks, start=1):
        assert (b.target_start, b.target_end) == (ptr[lvl], ptr[lvl + 1])
        assert (b.source_start, b.source_end) == (0, ptr[lvl])
        assert (b.cand_start, b.cand_end) == (cptr[lvl], cptr[lvl + 1])
        assert b.fill == 1.0
    assert g.nodes_with_role(INPUT).numel() == 32
    assert g.nodes_with_role(OUTPUT).numel() == 100
    assert g.nodes_with_role(HIDDEN).numel() == 768


def test_static_graph_max_in_degree_caps_each_target():
    sizes = [5, 4, 6, 3]
    cap = 3
    g = static_graph(sizes, max_in_degree=cap, seed=7)
    assert_strictly_sorted(g)
    assert_blocks_cover(g)
    indeg = torch.bincount(g.edge_index[1], minlength=g.num_nodes)
    ptr = g.level_ptr
    for lvl in range(1, len(sizes)):
        expected = min(cap, ptr[lvl])
        assert indeg[ptr[lvl]:ptr[lvl + 1]].tolist() == [expected] * sizes[lvl]
    assert indeg[:ptr[1]].tolist() == [0] * sizes[0]
    assert g.num_candidates == 4 * 3 + 6 * 3 + 3 * 3
    src, dst = g.edge_index
    assert bool((g.level[src] < g.level[dst]).all())
    assert not any(b.complete for b in g.blocks)  # 3 < 5 sources everywhere


def test_static_graph_max_in_degree_seed_reproducible():
    a = static_graph([8, 6, 5], max_in_degree=3, seed=1)
    b = static_graph([8, 6, 5], max_in_degree=3, seed=1)
    c = static_graph([8, 6, 5], max_in_degree=3, seed=2)
    assert torch.equal(a.edge_index, b.edge_index)
    assert a.blocks == b.blocks
    assert not torch.equal(a.edge_index, c.edge_index)
    assert a.num_candidates == c.num_candidates == 6 * 3 + 5 * 3


def test_static_graph_max_in_degree_at_least_sources_is_complete():
    full = static_graph([2, 3, 1])
    capped = static_graph([2, 3, 1], max_in_degree=5)
    assert torch.equal(full.edge_index, capped.edge_index)
    # the docstring case: level 1 keeps both of its 2 sources, level 2 keeps 2 of 5
    g = static_graph([2, 3, 1], max_in_degree=2)
    assert g.num_candidates == 8
    assert [b.complete for b in g.blocks] == [True, False]


@pytest.mark.parametrize("sizes, word", [([4], "2 levels"), ([], "2 levels"), ([2, 0, 1], "at least one node"),
                                         ([2, -1], "at least one node")])
def test_static_graph_bad_sizes(sizes, word):
    with pytest.raises(GraphError, match=word):
        static_graph(sizes)


@pytest.mark.parametrize("cap", [0, -2])
def test_static_graph_bad_max_in_degree(cap):
    with pytest.raises(GraphError, match="max_in_degree"):
        static_graph([2, 2], max_in_degree=cap)


# ----------------------------------------------------------------------------- dynamic_graph

def test_dynamic_graph_without_self_loops():
    g = dynamic_graph(4, inputs=1, outputs=2)
    assert not g.static and not g.allow_self_loops
    assert g.num_candidates == 4 * 3
    assert g.num_nodes == 4
    src, dst = g.edge_index
    assert not bool((src == dst).any())
    assert_strictly_sorted(g)
    assert g.edge_index[:, :3].tolist() == [[1, 2, 3], [0, 0, 0]]
    assert g.level.tolist() == [0, 0, 0, 0]
    assert g.role.tolist() == [INPUT, HIDDEN, OUTPUT, OUTPUT]
    assert g.blocks == (Block(0, 4, 0, 4, 0, 12, False),)
    assert g.blocks[0].fill == pytest.approx(12 / 16)
    assert g.describe() == "dynamic graph: 4 nodes (1 input, 1 hidden, 2 output), 12 candidate edges"


def test_dynamic_graph_with_self_loops():
    g = dynamic_graph(3, self_loops=True)
    assert g.allow_self_loops and not g.static
    assert g.num_candidates == 9
    assert g.edge_index.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1, 2, 2, 2]]
    assert g.role.tolist() == [HIDDEN] * 3
    assert g.blocks == (Block(0, 3, 0, 3, 0, 9, True),)
    one = dynamic_graph(1, self_loops=True)
    assert one.edge_index.tolist() == [[0], [0]]


def test_dynamic_graph_roles_by_id():
    g = dynamic_graph(5, inputs=[0, 3], outputs=[4])
    assert g.role.tolist() == [INPUT, HIDDEN, HIDDEN, INPUT, OUTPUT]
    with pytest.raises(GraphError, match="both an input and an output"):
        dynamic_graph(4, inputs=[1, 2], outputs=[2])
    with pytest.raises(GraphError, match="at least 2 nodes"):
        dynamic_graph(1)


def test_dynamic_graph_cycles_are_fine():
    g = dynamic_graph(3)
    assert find_cycle(g.edge_index, 3) is not None


# ----------------------------------------------------------------------------- from_edge_index

def test_from_edge_index_generations_chain_and_diamond():
    g = from_edge_index(ei([0, 0, 1], [1, 2, 2]))
    assert g.level.tolist() == [0, 1, 2]
    assert g.role.tolist() == [INPUT, HIDDEN, OUTPUT]
    # diamond: longest-path levels
    g = from_edge_index(ei([0, 0, 1, 2], [1, 2, 3, 3]))
    assert g.level.tolist() == [0, 1, 1, 2]
    assert g.level_sizes == [1, 2, 1]
    assert g.role.tolist() == [INPUT, HIDDEN, HIDDEN, OUTPUT]
    # a skip edge does not lower the level: 0->1->2->3 plus 0->3
    g = from_edge_index(ei([0, 1, 2, 0], [1, 2, 3, 3]))
    assert g.level.tolist() == [0, 1, 2, 3]
    # two roots
    g = from_edge_index(ei([0, 1, 2], [2, 2, 3]))
    assert g.level.tolist() == [0, 0, 1, 2]
    assert g.role.tolist() == [INPUT, INPUT, HIDDEN, OUTPUT]


def test_from_edge_index_sorts_and_builds_blocks():
    g = from_edge_index(ei([2, 0, 1, 0], [3, 2, 3, 3]), level=[0, 0, 1, 2])
    assert g.edge_index.tolist() == [[0, 0, 1, 2], [2, 3, 3, 3]]
    assert g.blocks == (Block(2, 3, 0, 2, 0, 1, False), Block(3, 4, 0, 3, 1, 4, True))
    assert_blocks_cover(g)


def test_from_edge_index_dynamic_defaults():
    g = from_edge_index(ei([0, 1, 2], [1, 2, 0]), static=False)
    assert g.level.tolist() == [0, 0, 0]
    assert g.role.tolist() == [HIDDEN] * 3
    assert g.edge_index.tolist() == [[2, 0, 1], [0, 1, 2]]
    g = from_edge_index(ei([0, 1], [0, 0]), static=False, allow_self_loops=True)
    assert g.allow_self_loops
    assert g.edge_index.tolist() == [[0, 1], [0, 0]]


def test_from_edge_index_explicit_num_nodes_and_roles():
    g = from_edge_index(ei([0], [1]), level=[0, 1, 1], role=[INPUT, OUTPUT, OUTPUT], num_nodes=3)
    assert g.num_nodes == 3
    assert g.role.tolist() == [INPUT, OUTPUT, OUTPUT]
    assert g.nodes_with_role(OUTPUT).tolist() == [1, 2]


# ----------------------------------------------------------------------------- validation errors

@pytest.mark.parametrize("k, word", [(0, "at least 1"), (-3, "at least 1"), (9, "more than"),
                                     (2.0, "integer"), ("3", "integer"), (True, "integer"), (None, "integer")])
def test_check_edges_rejects(k, word):
    with pytest.raises(GraphError, match=word):
        check_edges(k, 8)


def test_check_edges_accepts_bounds_and_density():
    assert check_edges(1, 8) == 1
    assert check_edges(8, 8) == 8
    assert density(2, 8) == 0.25
    assert issubclass(GraphError, ValueError)


@pytest.mark.parametrize("edge_index, num_nodes, word", [
    (ei([0, 3], [1, 2]), 3, "outside"),
    (ei([0, 1], [1, 5]), 3, "node 5"),
    (ei([-1, 0], [1, 2]), 3, "outside"),
    (ei([0, 1], [-2, 2]), 3, "node -2"),
    (ei([0, 1, 0], [2, 2, 2]), 3, "duplicate"),
    (ei([1, 1], [1, 2]), 3, "self-loop"),
    (torch.tensor([[0, 1], [1, 2]], dtype=torch.int32), 3, "dtype"),
    (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), 3, "dtype"),
    (torch.tensor([[0, 1], [1, 2], [2, 0]]), 3, "shape"),
    (torch.tensor([0, 1, 2]), 3, "shape"),
    (torch.zeros(2, 0, dtype=torch.long), 3, "no candidate"),
    ([[0, 1], [1, 2]], 3, "torch.Tensor"),
    (ei([0], [1]), 0, "at least one node"),
])
def test_validate_edge_index_errors(edge_index, num_nodes, word):
    with pytest.raises(GraphError, match=word):
        validate_edge_index(edge_index, num_nodes, allow_self_loops=False)


def test_validate_edge_index_duplicate_message_names_the_edge():
    with pytest.raises(GraphError, match=r"duplicate candidate edge 0 -> 2"):
        validate_edge_index(ei([1, 0, 0], [2, 2, 2]), 3, allow_self_loops=False)


def test_self_loops_only_where_allowed():
    loops = ei([0, 1, 1], [1, 1, 0])
    validate_edge_index(loops, 2, allow_self_loops=True)
    with pytest.raises(GraphError, match="self-loop 1 -> 1"):
        from_edge_index(loops, static=False)
    # a static graph never has self-loops, even when asked for
    with pytest.raises(GraphError, match="self-loop"):
        from_edge_index(ei([0, 1], [1, 1]), static=True, allow_self_loops=True)


@pytest.mark.parametrize("kwargs, word", [
    (dict(edge_index=ei([0, 1], [1, 2])), None),  # valid, as a control
    (dict(edge_index=ei([0, 2, 3], [1, 1, 2]), level=[0, 1, 1, 2]), "level 1 to level 1"),
    (dict(edge_index=ei([0, 2], [2, 1]), level=[0, 1, 2]), "level 2 to level 1"),
    (dict(edge_index=ei([0, 1, 2], [1, 2, 0]), level=[0, 1, 2]), "cycle 0 -> 1 -> 2 -> 0"),
    (dict(edge_index=ei([0, 1, 2], [1, 2, 0])), "acyclic"),
    (dict(edge_index=ei([0, 1, 2, 3], [1, 2, 3, 1])), "cycle 1 -> 2 -> 3 -> 1"),
    (dict(edge_index=ei([0, 1], [2, 2]), level=[0, 0]), "outside"),
    (dict(edge_index=ei([0, 1], [2, 2]), level=[0, 0, 1, 1], num_nodes=3), "one entry per node"),
    (dict(edge_index=ei([0, 1], [2, 2]), level=[0, 1], num_nodes=3), "one entry per node"),
    (dict(edge_index=ei([0, 1], [2, 2]), role=[0, 2], num_nodes=3), "one entry per node"),
    (dict(edge_index=ei([0, 1], [1, 2]), role=[0, 1, 3]), "roles must be"),
    (dict(edge_index=ei([0, 0], [1, 2]), level=[0, 2, 1]), "level by level"),
    (dict(edge_index=ei([0, 0], [1, 2]), level=[0, 2, 2]), "none empty"),
    (dict(edge_index=ei([0, 0], [1, 2]), level=[-1, 0, 0]), "non-negative"),
    (dict(edge_index=ei([0, 1], [2, 3]), level=[0, 0, 1]), "outside"),
    (dict(edge_index=ei([0, 0], [1, 1])), "duplicate"),
    (dict(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=2), "no candidate"),
])
def test_from_edge_index_errors(kwargs, word):
    if word is None:
        from_edge_index(**kwargs)
        return
    with pytest.raises(GraphError, match=word):
        from_edge_index(**kwargs)


def test_static_back_edge_message_names_edge_and_levels():
    with pytest.raises(GraphError) as info:
        from_edge_index(ei([0, 2], [2, 1]), level=[0, 1, 2])
    msg = str(info.value)
    assert "edge 2 -> 1" in msg and "higher level" in msg and "DAG" in msg


def test_dynamic_graph_accepts_any_levels_order():
    # dynamic graphs ignore the level order rules entirely
    g = from_edge_index(ei([1, 0], [0, 1]), level=[0, 0], static=False)
    assert g.num_candidates == 2


# ----------------------------------------------------------------------------- find_cycle

def is_cycle(cycle, edges) -> bool:
    pairs = set(map(tuple, edges.t().tolist()))
    return (len(cycle) >= 2 and cycle[0] == cycle[-1]
            and all((a, b) in pairs for a, b in zip(cycle, cycle[1:])))


@pytest.mark.parametrize("edges, n, expected", [
    (ei([0, 1, 2], [1, 2, 0]), 3, [0, 1, 2, 0]),
    (ei([0, 1, 2, 3], [1, 2, 3, 1]), 4, [1, 2, 3, 1]),
    (ei([2], [2]), 3, [2, 2]),
    (ei([0, 1], [1, 0]), 2, [0, 1, 0]),
    (ei([0, 1, 3, 4], [1, 2, 4, 3]), 5, [3, 4, 3]),  # cycle in the second component
])
def test_find_cycle_finds(edges, n, expected):
    cycle = find_cycle(edges, n)
    assert cycle == expected
    assert is_cycle(cycle, edges)


@pytest.mark.parametrize("edges, n", [
    (ei([0, 0, 1, 2], [1, 2, 3, 3]), 4),  # diamond
    (ei([0, 1, 0], [1, 2, 2]), 3),
    (ei([3, 2, 1], [2, 1, 0]), 5),  # reversed chain plus an isolated node
])
def test_find_cycle_none_on_dags(edges, n):
    assert find_cycle(edges, n) is None


def test_find_cycle_on_builders():
    assert find_cycle(static_graph([2, 3, 2]).edge_index, 7) is None
    g = dynamic_graph(5)
    cycle = find_cycle(g.edge_index, 5)
    assert is_cycle(cycle, g.edge_index)


def test_find_cycle_random_dags_and_back_edge():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = 12
        pairs = torch.triu_indices(n, n, offset=1)
        keep = torch.rand(pairs.size(1), generator=gen) < 0.3
        edges = pairs[:, keep]
        perm = torch.randperm(n, generator=gen)
        edges = perm[edges]  # relabel: still acyclic
        assert find_cycle(edges, n) is None
        if edges.size(1):
            back = edges[:, :1].flip(0)
            cyc = find_cycle(torch.cat([edges, back], 1), n)
            assert cyc is not None and is_cycle(cyc, torch.cat([edges, back], 1))


# ----------------------------------------------------------------------------- Wiring

def test_wiring_real_edges():
    w = Wiring(ei([0, 1, 0], [2, 2, 1]), torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0, 1, 2]),
               torch.tensor([INPUT, HIDDEN, OUTPUT]), real=torch.tensor([True, False, True]), attrs={"k": 2})
    r = w.real_edges()
    assert r.edge_index.tolist() == [[0, 0], [2, 1]]
    assert r.weight.tolist() == [0.5, 2.0]
    assert r.real is None and r.attrs == {"k": 2} and r.attrs is not w.attrs
    assert r.num_edges == 2 and r.num_nodes == 3
    plain = Wiring(ei([0], [1]), torch.tensor([1.0]), torch.tensor([0, 1]), torch.tensor([INPUT, OUTPUT]))
    assert plain.real_edges() is plain and plain.attrs == {}
