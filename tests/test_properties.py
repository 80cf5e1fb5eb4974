"""Property-based tests (hypothesis): graph builders, ``topk_mask`` and the GraphML round trip.

Each property runs on a few dozen random cases (``max_examples`` modest, no deadline:
the machine is shared); the module is skipped when hypothesis is not installed.
"""
from __future__ import annotations

import itertools
import math
import random
import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from wiring.graph import (  # noqa: E402
    HIDDEN,
    INPUT,
    OUTPUT,
    GraphError,
    Wiring,
    dynamic_graph,
    from_edge_index,
    static_graph,
)
from wiring.io import read_graphml, write_graphml  # noqa: E402
from wiring.ops import topk_mask  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- helpers

def keys(edge_index: torch.Tensor, num_nodes: int) -> list[int]:
    """The (target, source) sort key of every candidate."""
    return (edge_index[1] * num_nodes + edge_index[0]).tolist()


def assert_sorted_unique(edge_index: torch.Tensor, num_nodes: int) -> None:
    k = keys(edge_index, num_nodes)
    assert all(a < b for a, b in zip(k, k[1:])), "candidates must be strictly sorted by (target, source)"


def assert_blocks_cover(g) -> None:
    """Blocks are contiguous candidate ranges covering 0..C once, in order, each inside its rectangle."""
    position = 0
    src, dst = g.edge_index
    for b in g.blocks:
        assert b.cand_start == position and b.cand_end > b.cand_start
        s, d = src[b.cand_start:b.cand_end], dst[b.cand_start:b.cand_end]
        assert bool(((d >= b.target_start) & (d < b.target_end)).all())
        assert bool(((s >= b.source_start) & (s < b.source_end)).all())
        area = (b.target_end - b.target_start) * (b.source_end - b.source_start)
        assert b.complete == (b.cand_end - b.cand_start == area)
        if b.complete:                    # every pair of the rectangle, row-major (target, source)
            rows = torch.arange(b.target_start, b.target_end).repeat_interleave(b.source_end - b.source_start)
            cols = torch.arange(b.source_start, b.source_end).repeat(b.target_end - b.target_start)
            assert torch.equal(d, rows) and torch.equal(s, cols)
        position = b.cand_end
    assert position == g.num_candidates


def reference_generations(n: int, edges: list[tuple[int, int]]) -> list[int]:
    """Longest-path level of every node of a DAG (0 for nodes without in-edges)."""
    preds: dict[int, list[int]] = {v: [] for v in range(n)}
    for u, v in edges:
        preds[v].append(u)
    level: dict[int, int] = {}

    def of(v: int) -> int:
        if v not in level:
            level[v] = 1 + max((of(u) for u in preds[v]), default=-1)
        return level[v]

    return [of(v) for v in range(n)]


@st.composite
def dags(draw, max_nodes: int = 12):
    """(num_nodes, edges): a random DAG on 2..max_nodes nodes, at least one edge, random ids."""
    n = draw(st.integers(2, max_nodes))
    order = draw(st.permutations(range(n)))          # a hidden topological order
    pairs = [(order[i], order[j]) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=min(len(pairs), 30), unique=True))
    return n, chosen


def relabel_by_level(n: int, edges: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    """The same DAG with node ids numbered level by level; returns its edges and levels."""
    level = reference_generations(n, edges)
    new_id = {old: new for new, old in enumerate(sorted(range(n), key=lambda v: (level[v], v)))}
    levels = [0] * n
    for old, new in new_id.items():
        levels[new] = level[old]
    return [(new_id[u], new_id[v]) for u, v in edges], levels


# ----------------------------------------------------------------------------- static_graph

@FEW
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=6),
       cap=st.one_of(st.none(), st.integers(1, 12)), seed=st.integers(0, 2**16))
def test_static_graph_counts_order_levels_blocks(sizes, cap, seed):
    g = static_graph(sizes, max_in_degree=cap, seed=seed)
    n = sum(sizes)
    prefix = list(itertools.accumulate(sizes))          # nodes below level l+1
    expected = sum(size * (prefix[l - 1] if cap is None else min(cap, prefix[l - 1]))
                   for l, size in enumerate(sizes) if l)
    assert g.num_nodes == n and g.num_candidates == expected
    assert g.level_sizes == sizes and g.static
    assert g.level.tolist() == [l for l, s in enumerate(sizes) for _ in range(s)]
    assert_sorted_unique(g.edge_index, n)
    src_level, dst_level = g.level[g.edge_index[0]], g.level[g.edge_index[1]]
    assert bool((src_level < dst_level).all()), "every candidate goes to a strictly higher level"
    in_degree = torch.bincount(g.edge_index[1], minlength=n)
    for l, size in enumerate(sizes):
        nodes = slice(prefix[l] - size, prefix[l])
        allowed = 0 if l == 0 else (prefix[l - 1] if cap is None else min(cap, prefix[l - 1]))
        assert in_degree[nodes].tolist() == [allowed] * size
    assert g.role[:sizes[0]].eq(INPUT).all() and g.role[n - sizes[-1]:].eq(OUTPUT).all()
    assert g.role[sizes[0]:n - sizes[-1]].eq(HIDDEN).all()
    assert_blocks_cover(g)
    if cap is None:
        assert all(b.complete for b in g.blocks) and len(g.blocks) == len(sizes) - 1
    assert g.candidate_level_ptr[-1] == g.num_candidates


# ----------------------------------------------------------------------------- dynamic_graph

@FEW
@given(n=st.integers(2, 16), self_loops=st.booleans(), data=st.data())
def test_dynamic_graph_counts_no_duplicates_and_loops_only_when_asked(n, self_loops, data):
    inputs = data.draw(st.integers(0, n // 2))
    outputs = data.draw(st.integers(0, n - inputs))
    g = dynamic_graph(n, inputs=inputs, outputs=outputs, self_loops=self_loops)
    assert g.num_candidates == (n * n if self_loops else n * (n - 1))
    assert_sorted_unique(g.edge_index, n)               # strictly increasing keys: no duplicates
    loops = int((g.edge_index[0] == g.edge_index[1]).sum())
    assert loops == (n if self_loops else 0)
    assert not g.static and g.level.eq(0).all() and g.allow_self_loops == self_loops
    assert g.role.tolist() == [INPUT] * inputs + [HIDDEN] * (n - inputs - outputs) + [OUTPUT] * outputs
    assert len(g.blocks) == 1
    assert_blocks_cover(g)


# ----------------------------------------------------------------------------- from_edge_index

@FEW
@given(dag=dags())
def test_from_edge_index_levels_are_the_generations_of_a_dag(dag):
    n, edges = dag
    relabelled, levels = relabel_by_level(n, edges)
    # Inferred levels: the longest-path generations, as a reference computes them.
    edge_index = torch.tensor(relabelled, dtype=torch.long).t()
    g = from_edge_index(edge_index, num_nodes=n)
    assert g.level.tolist() == levels
    assert g.num_candidates == len(edges)
    assert_sorted_unique(g.edge_index, n)
    assert sorted(map(tuple, g.edge_index.t().tolist())) == sorted(relabelled)
    src_level, dst_level = g.level[g.edge_index[0]], g.level[g.edge_index[1]]
    assert bool((src_level < dst_level).all())
    # Valid generations: a node of level l > 0 has a predecessor of level exactly l - 1.
    for v in range(n):
        if levels[v]:
            assert any(levels[u] == levels[v] - 1 for u, w in relabelled if w == v)
    assert_blocks_cover(g)
    # The same edges with the ids of the draw: accepted exactly when they are numbered level by level.
    raw_levels = reference_generations(n, edges)
    numbered = all(a <= b for a, b in zip(raw_levels, raw_levels[1:]))
    raw = torch.tensor(edges, dtype=torch.long).t()
    if numbered:
        assert from_edge_index(raw, num_nodes=n).level.tolist() == raw_levels
    else:
        with pytest.raises(GraphError, match="level by level"):
            from_edge_index(raw, num_nodes=n)


@FEW
@given(dag=dags(), pick=st.integers(0, 10**6))
def test_from_edge_index_rejects_a_back_edge(dag, pick):
    n, edges = dag
    relabelled, levels = relabel_by_level(n, edges)
    u, v = relabelled[pick % len(relabelled)]
    # Reversing an existing edge closes a cycle: no generations exist.
    cyclic = torch.tensor(relabelled + [(v, u)], dtype=torch.long).t()
    with pytest.raises(GraphError, match="cycle"):
        from_edge_index(cyclic, num_nodes=n)
    # With explicit levels, any edge that does not go up a level is refused, cycle or not.
    a, b = random.Random(pick).sample(range(n), 2)
    if levels[a] < levels[b]:
        a, b = b, a
    if (a, b) not in relabelled:
        back = torch.tensor(relabelled + [(a, b)], dtype=torch.long).t()
        with pytest.raises(GraphError, match="higher level"):
            from_edge_index(back, levels, num_nodes=n)
    # A dynamic graph takes the same cycle.
    assert from_edge_index(cyclic, num_nodes=n, static=False).num_candidates == len(edges) + 1


# ----------------------------------------------------------------------------- topk_mask

def reference_topk(values: list[float], k: int) -> list[bool]:
    """Stable sort by (-|w|, index); NaN counts as the smallest magnitude."""
    mag = [-1.0 if math.isnan(x) else abs(x) for x in values]
    keep = set(sorted(range(len(values)), key=lambda i: (-mag[i], i))[:k])
    return [i in keep for i in range(len(values))]


# Few distinct magnitudes so that ties (including +-x and -0.0 / 0.0) are common.
tied = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 1e-30, -1e30, float("inf"), float("nan")])
values = st.lists(st.one_of(tied, st.floats(-1e6, 1e6, width=32)), min_size=1, max_size=200)


@FEW
@given(w=values, data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_topk_mask_exactly_k_and_equals_a_stable_reference(w, data, dtype):
    k = data.draw(st.integers(1, len(w)))
    weight = torch.tensor(w, dtype=dtype)
    mask = topk_mask(weight, k)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    assert int(mask.sum()) == k
    assert mask.tolist() == reference_topk(weight.tolist(), k)
    assert torch.equal(topk_mask(weight.clone().requires_grad_(), k), mask)


@FEW
@given(w=values)
def test_topk_mask_rejects_a_budget_outside_1_to_n(w):
    for k in (0, len(w) + 1):
        with pytest.raises(GraphError):
            topk_mask(torch.tensor(w), k)


# ----------------------------------------------------------------------------- GraphML round trip

attr_keys = st.one_of(st.sampled_from(["k", "density", "preset", "mode", "seed", "step", "test_acc", "note",
                                       "weight", "level", "role", "real", "name"]),
                      st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
                      ).filter(lambda key: key not in ("static", "node_default", "edge_default"))
attr_values = st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                        st.booleans(),
                        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
                                max_size=20))


@st.composite
def wirings(draw, weight_dtype=torch.float32):
    n = draw(st.integers(1, 10))
    level = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    role = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    pairs = [(u, v) for u in range(n) for v in range(n)]
    edges = draw(st.lists(st.sampled_from(pairs), max_size=25, unique=True))
    width = 32 if weight_dtype == torch.float32 else 64
    weight = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=width),
                           min_size=len(edges), max_size=len(edges)))
    real = draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=len(edges), max_size=len(edges))))
    attrs = draw(st.dictionaries(attr_keys, attr_values, max_size=6))
    edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    return Wiring(edge_index, torch.tensor(weight, dtype=weight_dtype), torch.tensor(level),
                  torch.tensor(role), None if real is None else torch.tensor(real, dtype=torch.bool), attrs)


def round_trip(w: Wiring) -> Wiring:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.graphml"
        write_graphml(w, path)
        return read_graphml(path)


def assert_same_wiring(w: Wiring, back: Wiring, rel: float) -> None:
    n = w.num_nodes
    order = torch.argsort(w.edge_index[1] * n + w.edge_index[0])    # read_graphml sorts by (target, source)
    assert back.num_nodes == n
    assert torch.equal(back.edge_index, w.edge_index[:, order])
    assert torch.equal(back.level, w.level) and torch.equal(back.role, w.role)
    expected = w.weight[order].tolist()
    got = back.weight.tolist()
    assert all(math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or a == b for a, b in zip(got, expected)), \
        (got, expected)
    if w.real is None or not w.num_edges:       # no edge to carry a real flag
        assert back.real is None
    else:
        assert torch.equal(back.real, w.real[order])
    assert back.attrs == w.attrs
    assert all(type(back.attrs[key]) is type(value) for key, value in w.attrs.items())


@FEW
@given(w=wirings())
def test_graphml_round_trip_keeps_edges_weights_levels_roles_attrs(w):
    assert_same_wiring(w, round_trip(w), rel=1e-12)


@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(w=wirings(weight_dtype=torch.float64))
@hypothesis.example(w=Wiring(torch.tensor([[0], [1]]), torch.tensor([0.1], dtype=torch.float64),
                             torch.tensor([0, 1]), torch.tensor([INPUT, OUTPUT])))
def test_graphml_round_trip_keeps_double_weights(w):
    assert_same_wiring(w, round_trip(w), rel=1e-12)


# ----------------------------------------------------------------------------- propagate on every backend

@FEW
@given(dag=dags(), data=st.data(), mode=st.sampled_from(["dnw", "dnw_no_update"]))
def test_propagate_equals_the_dense_reference_on_every_backend(dag, data, mode):
    """Random DAGs, weights with many ties, any k (1 and C included): every installed
    backend, with its own sparse product and with the dense switch as shipped, gives the
    dense straight-through reference's output and gradients (float64)."""
    from unittest import mock

    from wiring import backends, ops
    from wiring.ops import dense_reference, dnw_propagate

    n, edges = dag
    relabelled, _ = relabel_by_level(n, edges)
    g = from_edge_index(torch.tensor(relabelled, dtype=torch.long).t(), num_nodes=n)
    c = g.num_candidates
    k = data.draw(st.integers(1, c), label="k")
    w0 = torch.tensor(data.draw(st.lists(st.integers(-3, 3), min_size=c, max_size=c), label="w"),
                      dtype=torch.float64)
    gen = torch.Generator().manual_seed(c * 31 + k)
    x0 = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    grad = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    mask = torch.tensor(reference_topk(w0.tolist(), k))

    def run(engine: bool):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = (dnw_propagate(x, g.edge_index, w, k=k, mode=mode) if engine
               else dense_reference(x, g.edge_index, w, mask, mode == "dnw"))
        (out * grad).sum().backward()
        return out.detach(), x.grad, w.grad

    reference = run(False)
    for name in backends.installed():
        for fill in (ops.DENSE_FORWARD_FILL, float("inf")):
            with backends.using(name), mock.patch.object(ops, "DENSE_FORWARD_FILL", fill):
                for got, want in zip(run(True), reference):
                    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=f"{name}, fill {fill}")
