"""Tests for wiring.presets: initial wirings (random_k, er, ws, ba, complete, graphml).

The structured presets are checked against their generators recomputed here with
NetworkX and ``ring_order``: the initial top-k must sit on the generator's edges
that are candidates (all of them when there are fewer than k, k of them otherwise).
"""
from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from wiring.graph import INPUT, OUTPUT, GraphError, Wiring, dynamic_graph, static_graph
from wiring.ops import topk_mask
from wiring.presets import PRESETS, init_std, initial_weights, ring_order, with_real_set

SMALL = [4, 6, 6, 2]            # 18 nodes, 116 candidates


def real_set(w: torch.Tensor, k: int) -> set[int]:
    return set(topk_mask(w, k).nonzero().flatten().tolist())


def generator_candidates(graph, undirected: nx.Graph) -> tuple[set[int], int]:
    """Candidate indices of the generator's edges oriented low -> high after ring order,
    and how many generator edges were not candidates."""
    order = ring_order(graph)
    index = {tuple(e): i for i, e in enumerate(graph.edge_index.t().tolist())}
    hits, misses = set(), 0
    for a, b in undirected.edges():
        u, v = sorted((order[a], order[b]))
        if (u, v) in index:
            hits.add(index[(u, v)])
        else:
            misses += 1
    return hits, misses


# ----------------------------------------------------------------------------- ring order

def test_ring_order_exact():
    assert ring_order(static_graph([2, 2, 1])) == [0, 2, 4, 1, 3]
    assert ring_order(static_graph([3, 3])) == [0, 3, 1, 4, 2, 5]
    assert ring_order(static_graph([1, 2, 4])) == [0, 1, 3, 4, 2, 5, 6]
    assert ring_order(dynamic_graph(5)) == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- std / distribution

def test_init_std_values():
    g = static_graph(SMALL)           # 116 candidates into 14 receiving nodes
    assert init_std(g) == pytest.approx(math.sqrt(2.0 / (116 / 14)), rel=1e-12)
    assert init_std(dynamic_graph(5)) == pytest.approx(math.sqrt(2.0 / 4), rel=1e-12)
    assert init_std(static_graph([2, 2, 1])) == pytest.approx(math.sqrt(2.0 / (8 / 3)), rel=1e-12)


GENERATED = ["random_k", "er", "ws", "ba"]


@pytest.mark.parametrize("graph", [static_graph(SMALL), dynamic_graph(8)], ids=["static", "dynamic"])
@pytest.mark.parametrize("name", GENERATED + ["complete"])
def test_reproducible_and_seed_dependent(graph, name):
    k = graph.num_candidates if name == "complete" else 10
    a = initial_weights(name, graph, k, seed=3)
    b = initial_weights(name, graph, k, seed=3)
    c = initial_weights(name, graph, k, seed=4)
    assert a.shape == (graph.num_candidates,) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("graph", [static_graph(SMALL), dynamic_graph(8)], ids=["static", "dynamic"])
@pytest.mark.parametrize("name", GENERATED)
def test_same_magnitudes_as_iid(graph, name):
    """Structured presets only move the i.i.d. magnitudes around: the multiset of |w|
    equals that of random_k with the same seed."""
    ref = initial_weights("random_k", graph, 10, seed=5).abs().sort().values
    w = initial_weights(name, graph, 10, seed=5)
    assert torch.equal(w.abs().sort().values, ref)


def test_complete_equals_iid_weights():
    g = static_graph(SMALL)
    assert torch.equal(initial_weights("complete", g, g.num_candidates, seed=2),
                       initial_weights("random_k", g, 5, seed=2))


@pytest.mark.parametrize("name", GENERATED + ["complete"])
def test_distribution_scale_is_init_std(name):
    g = static_graph([20, 40, 40, 10])         # 4,200 candidates
    k = g.num_candidates if name == "complete" else 300
    w = initial_weights(name, g, k, seed=0)
    std = init_std(g)
    assert w.std().item() == pytest.approx(std, rel=0.05)
    assert abs(w.mean().item()) < 0.1 * std
    # signs are random: about half negative
    assert 0.45 < (w < 0).float().mean().item() < 0.55


# ----------------------------------------------------------------------------- structured presets

def check_against_generator(w, k, hits):
    real = real_set(w, k)
    assert len(real) == k
    if len(hits) >= k:
        assert real <= hits
    else:
        assert hits <= real


@pytest.mark.parametrize("k, more", [(5, True), (40, False)])
def test_ws_static_uses_generator_edges(k, more):
    g = static_graph(SMALL)
    n, seed = g.num_nodes, 11
    neighbours = max(2, 2 * round(k / n))
    hits, misses = generator_candidates(g, nx.watts_strogatz_graph(n, neighbours, 0.75, seed=seed))
    assert (len(hits) >= k) is more
    check_against_generator(initial_weights("ws", g, k, seed=seed), k, hits)


@pytest.mark.parametrize("k, more", [(5, True), (40, False)])
def test_ba_static_uses_generator_edges(k, more):
    g = static_graph(SMALL)
    n, seed = g.num_nodes, 2
    m = max(1, min(n - 1, round(k / n)))
    hits, _ = generator_candidates(g, nx.barabasi_albert_graph(n, m, seed=seed))
    assert (len(hits) >= k) is more
    check_against_generator(initial_weights("ba", g, k, seed=seed), k, hits)


def test_ws_and_ba_explicit_options():
    g = static_graph(SMALL)
    # ring lattice without rewiring: 18 * 4 / 2 = 36 edges; those across levels are candidates
    hits, misses = generator_candidates(g, nx.watts_strogatz_graph(18, 4, 0.0, seed=0))
    assert len(hits) + misses == 36 and len(hits) > 8
    check_against_generator(initial_weights("ws", g, 8, seed=0, neighbours=4, p=0.0), 8, hits)
    hits, _ = generator_candidates(g, nx.barabasi_albert_graph(18, 3, seed=1))
    check_against_generator(initial_weights("ba", g, 12, seed=1, m=3), 12, hits)


def test_ring_order_spreads_ws_lattice_across_levels():
    """With ring order, the lattice neighbours of a node mostly lie in other levels,
    so most generator edges are candidates (in id order, consecutive ids share a level)."""
    g = static_graph(SMALL)
    lattice = nx.watts_strogatz_graph(18, 2, 0.0, seed=0)     # the ring 0-1-...-17-0
    hits, misses = generator_candidates(g, lattice)
    assert len(hits) >= 14
    same_level = sum(int(g.level[a] == g.level[b]) for a, b in lattice.edges())
    assert same_level >= 12      # without ring order the ring would stay inside levels


@pytest.mark.parametrize("k, more", [(5, True), (60, False)])
def test_er_dynamic_uses_networkx(k, more):
    g = dynamic_graph(10)
    seed = 4
    p = min(1.0, k / (10 * 9 // 2))
    hits, misses = generator_candidates(g, nx.fast_gnp_random_graph(10, p, seed=seed))
    assert misses == 0                          # every low -> high pair is a candidate
    assert (len(hits) >= k) is more
    check_against_generator(initial_weights("er", g, k, seed=seed), k, hits)
    # only forward (low -> high) edges come from the generator
    src, dst = g.edge_index
    assert all(int(src[i]) < int(dst[i]) for i in hits)


@pytest.mark.parametrize("k, p", [(5, None), (5, 0.2), (40, 0.1)])
def test_er_static_keeps_each_candidate_with_p(k, p):
    """On a static graph G(n, p) restricted to the candidates is each candidate kept
    independently with probability p (drawn with the preset's generator, seed + 2)."""
    g = static_graph(SMALL)
    seed = 9
    pp = min(1.0, k / g.num_candidates) if p is None else p
    gen = torch.Generator().manual_seed(seed + 2)
    hits = set((torch.rand(g.num_candidates, generator=gen) < pp).nonzero().flatten().tolist())
    opts = {} if p is None else {"p": p}
    check_against_generator(initial_weights("er", g, k, seed=seed, **opts), k, hits)


def test_with_real_set_exact():
    w = torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5, -0.6])
    out = with_real_set(w, torch.tensor([0, 1]), 2, seed=0)
    assert real_set(out, 2) == {0, 1}
    assert sorted(out[[0, 1]].abs().tolist()) == pytest.approx([0.5, 0.6])
    out = with_real_set(w, torch.tensor([5, 0, 2, 3]), 2, seed=0)
    assert real_set(out, 2) <= {5, 0, 2, 3}
    out = with_real_set(w, torch.tensor([4]), 3, seed=0)
    assert 4 in real_set(out, 3)
    assert sorted(out.abs().tolist()) == pytest.approx(sorted(w.abs().tolist()))


# ----------------------------------------------------------------------------- complete

def test_complete_needs_all_candidates():
    g = static_graph([2, 2, 1])
    with pytest.raises(GraphError, match="8"):
        initial_weights("complete", g, 7)
    w = initial_weights("complete", g, 8)
    assert topk_mask(w, 8).all()


# ----------------------------------------------------------------------------- graphml

G5 = static_graph([2, 2, 1])       # candidates: 0->2 1->2 0->3 1->3 0->4 1->4 2->4 3->4


def saved(edges, weights, graph=G5):
    return Wiring(torch.tensor(edges, dtype=torch.long).t(), torch.tensor(weights),
                  graph.level.clone(), graph.role.clone())


def index_of(graph, u, v):
    return graph.edge_index.t().tolist().index([u, v])


FILE_EDGES = [(0, 2), (1, 3), (2, 4), (3, 4)]
FILE_WEIGHTS = [0.9, -0.4, 1.5, -0.05]


def test_graphml_exact_real_set_and_weights():
    w = initial_weights("graphml", G5, 4, seed=0, wiring=saved(FILE_EDGES, FILE_WEIGHTS))
    idx = [index_of(G5, u, v) for u, v in FILE_EDGES]
    assert real_set(w, 4) == set(idx)
    assert torch.equal(w[idx], torch.tensor(FILE_WEIGHTS))      # saved weights, bit for bit
    others = torch.ones(8, dtype=torch.bool)
    others[idx] = False
    assert w[others].abs().max().item() <= 0.5 * 0.05 + 1e-9
    assert w[others].abs().min().item() > 0


def test_graphml_fill_up_when_fewer_than_k():
    wiring = saved(FILE_EDGES, FILE_WEIGHTS)
    idx = {index_of(G5, u, v) for u, v in FILE_EDGES}
    a = initial_weights("graphml", G5, 6, seed=0, wiring=wiring)
    real = real_set(a, 6)
    assert idx <= real and len(real) == 6
    fill = sorted(real - idx)
    assert a[fill].abs().tolist() == pytest.approx([0.75 * 0.05] * 2)
    assert a[sorted(set(range(8)) - real)].abs().max().item() <= 0.5 * 0.05 + 1e-9
    # reproducible; the fill-up follows the seed
    assert torch.equal(a, initial_weights("graphml", G5, 6, seed=0, wiring=wiring))
    fills = {tuple(sorted(real_set(initial_weights("graphml", G5, 6, seed=s, wiring=wiring), 6) - idx))
             for s in range(6)}
    assert len(fills) > 1


def test_graphml_top_k_of_file_when_more_than_k():
    w = initial_weights("graphml", G5, 2, seed=0, wiring=saved(FILE_EDGES, FILE_WEIGHTS))
    top = [index_of(G5, 2, 4), index_of(G5, 0, 2)]
    assert real_set(w, 2) == set(top)
    assert torch.equal(w[top], torch.tensor([1.5, 0.9]))
    rest = sorted(set(range(8)) - set(top))
    assert w[rest].abs().max().item() <= 0.45 + 1e-7


def test_graphml_all_candidates_wiring_uses_real_flag():
    real = torch.tensor([True, False, False, True, False, False, True, False])
    weights = torch.tensor([0.3, 5.0, -5.0, -0.7, 4.0, 4.0, 0.2, 3.0])   # big weights are not real
    wiring = Wiring(G5.edge_index.clone(), weights, G5.level.clone(), G5.role.clone(), real)
    w = initial_weights("graphml", G5, 3, seed=1, wiring=wiring)
    assert real_set(w, 3) == {0, 3, 6}
    assert torch.equal(w[[0, 3, 6]], torch.tensor([0.3, -0.7, 0.2]))


def test_graphml_edge_order_in_file_does_not_matter():
    a = initial_weights("graphml", G5, 4, seed=0, wiring=saved(FILE_EDGES, FILE_WEIGHTS))
    b = initial_weights("graphml", G5, 4, seed=0, wiring=saved(FILE_EDGES[::-1], FILE_WEIGHTS[::-1]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("u, v", [(2, 0), (2, 3), (4, 3), (0, 1)])
def test_graphml_non_candidate_edge_named(u, v):
    wiring = saved([(0, 2), (u, v)], [1.0, 1.0])
    with pytest.raises(GraphError, match=f"{u} -> {v}"):
        initial_weights("graphml", G5, 2, wiring=wiring)


def test_graphml_out_of_range_edge_rejected():
    # 5 -> 3 in a 5-node graph has key 3*5+5 = 20 = key of the candidate 0 -> 4
    wiring = saved([(5, 3)], [1.0])
    with pytest.raises(GraphError):
        initial_weights("graphml", G5, 1, wiring=wiring)


def test_graphml_node_count_mismatch():
    other = static_graph([2, 2, 2])
    wiring = Wiring(torch.tensor([[0], [2]]), torch.tensor([1.0]), other.level, other.role)
    with pytest.raises(GraphError, match="6 nodes"):
        initial_weights("graphml", G5, 1, wiring=wiring)


def test_graphml_needs_wiring():
    with pytest.raises(GraphError, match="graph-file"):
        initial_weights("graphml", G5, 2)


def test_graphml_dynamic_graph():
    g = dynamic_graph(4)
    wiring = Wiring(torch.tensor([[3, 0, 2], [0, 3, 1]]), torch.tensor([-2.0, 1.0, 0.5]),
                    g.level.clone(), g.role.clone())
    w = initial_weights("graphml", g, 3, seed=0, wiring=wiring)
    idx = [index_of(g, 3, 0), index_of(g, 0, 3), index_of(g, 2, 1)]
    assert real_set(w, 3) == set(idx)
    assert w[idx].tolist() == [-2.0, 1.0, 0.5]


# ----------------------------------------------------------------------------- registry / errors

def test_registry():
    assert set(PRESETS) >= {"random_k", "er", "ws", "ba", "complete", "graphml"}


def test_unknown_preset():
    with pytest.raises(GraphError) as err:
        initial_weights("smallworld", G5, 3)
    for name in ("smallworld", "random_k", "er", "ws", "ba", "complete", "graphml"):
        assert name in str(err.value)


@pytest.mark.parametrize("k", [0, -1, 9, 2.5, True])
def test_invalid_k(k):
    with pytest.raises(GraphError):
        initial_weights("random_k", G5, k)


def test_roles_untouched_for_reference():
    # sanity of the hand-made graph used above
    assert G5.role.tolist() == [INPUT, INPUT, 1, 1, OUTPUT]
    assert G5.edge_index.tolist() == [[0, 1, 0, 1, 0, 1, 2, 3], [2, 2, 3, 3, 4, 4, 4, 4]]
