"""Initial wirings (``--graph``): a registry of name -> initial candidate weights.

A preset is a function ``(graph, k, seed, **options) -> Tensor [C]`` giving every
candidate an initial weight; the initial real set is then the top-k of ``|w|``.
All presets are reproducible from ``seed`` and share one weight distribution,
chosen by ``init`` (:data:`INITS`):

* ``"authors"``: PyTorch's default of the authors' dense formulation, a 1x1
  convolution from every node that can send to every node that can receive:
  i.i.d. ``U(-1/sqrt(S), 1/sqrt(S))`` with ``S`` the number of distinct source
  nodes of the candidates (:func:`fan_in`; the tiny classifier's 800, a
  MobileNetV1 stage's ``c_in + (blocks - 1) c_out``), the same bound for every
  candidate (``kaiming_uniform(a=sqrt(5))`` over that fan-in);
* ``"kaiming"`` (this engine before the authors' init): i.i.d. normal with std
  ``sqrt(2 / f)``, ``f`` the mean number of candidate in-edges of a receiving
  node (:func:`init_std`); about 3.6x the authors' std for the tiny classifier.

Every edge feeds a normalisation, so the forward does not depend on the scale,
but the learning does (the step size relative to the weights). Structured presets
only decide *which* candidates receive the k largest magnitudes.

* ``random_k``: i.i.d. weights, so the initial real set is a uniformly random
  k-edge subset of the candidates (the DNW default).
* ``er`` / ``ws`` / ``ba``: RandWire-style (Xie et al. 2019). An undirected
  Erdos-Renyi (p), Watts-Strogatz (k_ws, p) or Barabasi-Albert (m) graph is
  generated with NetworkX on the nodes, each edge is oriented from the lower to
  the higher node id (the level order of a static graph), and the edges that are
  candidates receive the k largest magnitudes. The generator visits nodes in
  "ring order" (levels interleaved, see :func:`ring_order`) so that neighbours on
  the Watts-Strogatz ring and early Barabasi-Albert hubs span levels instead of
  sitting inside one. Default parameters aim at k candidate edges; if the
  generator yields more, a random k of them are kept, if fewer, the rest of the
  real set is random candidates.
* ``complete``: every candidate real (k must equal C).
* ``graphml``: start from a saved wiring (``wiring=`` a :class:`wiring.graph.Wiring`
  on the same nodes); its edges, which must be candidates, become the real set
  with their saved weights.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import networkx as nx
from wiring.lazy import lazy_module

from wiring.graph import GraphError, NeuralGraph, Wiring, check_edges

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

Preset = Callable[..., "Tensor"]
PRESETS: dict[str, Preset] = {}
#: the initial weight distributions (see the module doc); the engine's default is "kaiming"
INITS = ("authors", "kaiming")


def register(name: str) -> Callable[[Preset], Preset]:
    """Decorator adding a preset to :data:`PRESETS` under ``name``."""
    def add(fn: Preset) -> Preset:
        PRESETS[name] = fn
        return fn
    return add


def initial_weights(name: str, graph: NeuralGraph, k: int, seed: int = 0, *, init: str = "kaiming",
                    **options) -> Tensor:
    """Initial candidate weights of preset ``name`` (validated ``k``), drawn from ``init``.

    >>> from wiring.graph import static_graph
    >>> g = static_graph([2, 2, 1])
    >>> w = initial_weights("random_k", g, 3, seed=0)
    >>> w.shape, torch.equal(w, initial_weights("random_k", g, 3, seed=0))
    (torch.Size([8]), True)
    """
    if name not in PRESETS:
        raise GraphError(f"unknown graph preset {name!r}; expected one of {', '.join(PRESETS)}")
    if init not in INITS:
        raise GraphError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    check_edges(k, graph.num_candidates)
    return PRESETS[name](graph, k, seed, init=init, **options)


def init_std(graph: NeuralGraph) -> float:
    """Kaiming std ``sqrt(2 / mean candidate fan-in of a receiving node)``."""
    receivers = torch.unique(graph.edge_index[1]).numel()
    return math.sqrt(2.0 / (graph.num_candidates / receivers))


def fan_in(graph: NeuralGraph) -> int:
    """The fan-in of the authors' dense formulation: the distinct source nodes of the
    candidates (every node that may send an edge).

    >>> from wiring.graph import static_graph, dynamic_graph
    >>> fan_in(static_graph([32, 192, 192, 192, 192, 100])), fan_in(dynamic_graph(800))
    (800, 800)
    """
    return int(torch.unique(graph.edge_index[0]).numel())


def authors_bound(graph: NeuralGraph) -> float:
    """``1 / sqrt(fan_in)``: the bound of the authors' ``U(-b, b)`` edge weights."""
    return 1.0 / math.sqrt(fan_in(graph))


def _iid(graph: NeuralGraph, seed: int, init: str = "kaiming") -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    if init == "authors":
        bound = authors_bound(graph)
        return (torch.rand(graph.num_candidates, generator=gen) * 2.0 - 1.0) * bound
    return torch.randn(graph.num_candidates, generator=gen) * init_std(graph)


def with_real_set(weight: Tensor, chosen: Tensor, k: int, seed: int) -> Tensor:
    """Rearrange ``weight``'s magnitudes so the k largest sit on ``chosen``.

    ``chosen`` (candidate indices, distinct) gets a random k of itself, filled up
    with random other candidates if it has fewer than k. Signs stay random.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    c = weight.numel()
    chosen = chosen[torch.randperm(chosen.numel(), generator=gen)][:k]
    if chosen.numel() < k:
        rest = torch.ones(c, dtype=torch.bool)
        rest[chosen] = False
        others = rest.nonzero().flatten()
        extra = others[torch.randperm(others.numel(), generator=gen)[:k - chosen.numel()]]
        chosen = torch.cat([chosen, extra])
    is_chosen = torch.zeros(c, dtype=torch.bool)
    is_chosen[chosen] = True
    mags = weight.abs().sort(descending=True).values
    signs = torch.where(torch.rand(c, generator=gen) < 0.5, -1.0, 1.0)
    out = torch.empty_like(weight)
    out[chosen] = mags[:k][torch.randperm(k, generator=gen)]
    others = (~is_chosen).nonzero().flatten()
    out[others] = mags[k:][torch.randperm(c - k, generator=gen)]
    return out * signs


def ring_order(graph: NeuralGraph) -> list[int]:
    """Node ids in the order a structured generator visits them.

    Static graphs interleave levels by relative position within the level
    (node at fraction f of its level sorts by ``(f, level)``); dynamic graphs keep
    id order. For levels [2, 2, 1] the order is [0, 2, 4, 1, 3].
    """
    if not graph.static:
        return list(range(graph.num_nodes))
    ptr = graph.level_ptr
    keys = []
    for v in range(graph.num_nodes):
        lvl = int(graph.level[v])
        keys.append(((v - ptr[lvl]) / (ptr[lvl + 1] - ptr[lvl]), lvl, v))
    return [v for _, _, v in sorted(keys)]


def _structured(graph: NeuralGraph, k: int, seed: int, undirected: nx.Graph, init: str = "kaiming") -> Tensor:
    order = ring_order(graph)
    n = graph.num_nodes
    pairs = [(order[a], order[b]) for a, b in undirected.edges()]
    key = torch.tensor([max(u, v) * n + min(u, v) for u, v in pairs], dtype=torch.long)
    cand_key = graph.edge_index[1] * n + graph.edge_index[0]   # sorted ascending
    pos = torch.searchsorted(cand_key, key).clamp(max=cand_key.numel() - 1)
    hit = cand_key[pos] == key
    return with_real_set(_iid(graph, seed, init), torch.unique(pos[hit]), k, seed)


def _pairs_available(graph: NeuralGraph) -> int:
    """Unordered node pairs that map onto a low -> high candidate."""
    n = graph.num_nodes
    return graph.num_candidates if graph.static else n * (n - 1) // 2


@register("random_k")
def random_k(graph: NeuralGraph, k: int, seed: int = 0, init: str = "kaiming") -> Tensor:
    """I.i.d. weights: the initial top-k is a uniformly random k-edge graph."""
    return _iid(graph, seed, init)


@register("er")
def erdos_renyi(graph: NeuralGraph, k: int, seed: int = 0, p: float | None = None,
                init: str = "kaiming") -> Tensor:
    """Erdos-Renyi G(n, p); default p gives k candidate edges in expectation."""
    n = graph.num_nodes
    p = min(1.0, k / _pairs_available(graph)) if p is None else p
    if graph.static:
        # Every cross-level pair is a candidate and no other pair is: G(n, p)
        # restricted to the candidates is each candidate kept with probability p.
        gen = torch.Generator().manual_seed(seed + 2)
        chosen = (torch.rand(graph.num_candidates, generator=gen) < p).nonzero().flatten()
        return with_real_set(_iid(graph, seed, init), chosen, k, seed)
    return _structured(graph, k, seed, nx.fast_gnp_random_graph(n, p, seed=seed), init)


@register("ws")
def watts_strogatz(graph: NeuralGraph, k: int, seed: int = 0, neighbours: int | None = None,
                   p: float = 0.75, init: str = "kaiming") -> Tensor:
    """Watts-Strogatz ring lattice with rewiring probability p (RandWire: 0.75)."""
    n = graph.num_nodes
    if neighbours is None:
        neighbours = max(2, 2 * round(k / n))
    return _structured(graph, k, seed, nx.watts_strogatz_graph(n, min(neighbours, n - 1), p, seed=seed), init)


@register("ba")
def barabasi_albert(graph: NeuralGraph, k: int, seed: int = 0, m: int | None = None,
                    init: str = "kaiming") -> Tensor:
    """Barabasi-Albert preferential attachment with m edges per new node."""
    n = graph.num_nodes
    m = max(1, min(n - 1, round(k / n))) if m is None else m
    return _structured(graph, k, seed, nx.barabasi_albert_graph(n, m, seed=seed), init)


@register("complete")
def complete(graph: NeuralGraph, k: int, seed: int = 0, init: str = "kaiming") -> Tensor:
    """Every candidate is real: k must be the number of candidates."""
    if k != graph.num_candidates:
        raise GraphError(f"the complete preset makes all {graph.num_candidates} candidates real, "
                         f"but edges={k}; use edges={graph.num_candidates}")
    return _iid(graph, seed, init)


#: the smallest magnitude a starting wiring's edge gets (see :func:`from_wiring`)
MIN_SAVED = 1e-6


@register("graphml")
def from_wiring(graph: NeuralGraph, k: int, seed: int = 0, wiring: Wiring | None = None,
                init: str = "kaiming") -> Tensor:
    """The real edges of a saved wiring become the initial real set.

    Its edges keep their weights (the k largest by magnitude if it has more than
    k); every other candidate gets a random weight smaller in magnitude than all of
    them, so the top-k is exactly the saved wiring (filled up at random if short),
    whatever its weights: a saved weight smaller in magnitude than ``MIN_SAVED``
    (0 included) starts at ``+-MIN_SAVED`` (its sign; + for 0), so that it still
    ranks above every other candidate.
    """
    if wiring is None:
        raise GraphError("the graphml preset needs a wiring (--graph-file FILE.graphml)")
    if wiring.num_nodes != graph.num_nodes:
        raise GraphError(f"the wiring file has {wiring.num_nodes} nodes but the model's graph has "
                         f"{graph.num_nodes}")
    real = wiring.real_edges()
    n = graph.num_nodes
    if real.num_edges and (int(real.edge_index.min()) < 0 or int(real.edge_index.max()) >= n):
        raise GraphError(f"the wiring file refers to a node outside 0..{n - 1}")
    cand_key = graph.edge_index[1] * n + graph.edge_index[0]
    key = real.edge_index[1] * n + real.edge_index[0]
    pos = torch.searchsorted(cand_key, key).clamp(max=cand_key.numel() - 1)
    missing = (cand_key[pos] != key).nonzero().flatten()
    if missing.numel():
        u, v = real.edge_index[:, missing[0]].tolist()
        raise GraphError(f"edge {u} -> {v} of the wiring file is not a candidate edge of this graph "
                         f"({missing.numel()} such edges)")
    saved = real.weight.to(torch.float32)
    if not bool(torch.isfinite(saved).all()):
        raise GraphError("the wiring file has weights that are not finite in float32")
    # an all-zero (or tiny) file must still be the real set: no candidate can rank below 0
    saved = torch.where(saved.abs() < MIN_SAVED, torch.where(saved < 0, -MIN_SAVED, MIN_SAVED), saved)
    order = saved.abs().argsort(descending=True, stable=True)[:k]
    pos, saved = pos[order], saved[order]
    floor = float(saved.abs().min()) if saved.numel() else (
        init_std(graph) if init == "kaiming" else authors_bound(graph))
    # Every other candidate below half the smallest saved magnitude ...
    base = _iid(graph, seed, init)
    base = base / base.abs().max().clamp_min(1e-12) * (0.5 * floor)
    if saved.numel() < k:
        # ... except a random fill-up of the real set, just above them.
        free = torch.ones(graph.num_candidates, dtype=torch.bool)
        free[pos] = False
        free = free.nonzero().flatten()
        gen = torch.Generator().manual_seed(seed + 3)
        fill = free[torch.randperm(free.numel(), generator=gen)[:k - saved.numel()]]
        base[fill] = torch.where(base[fill] < 0, -0.75 * floor, 0.75 * floor)
    base[pos] = saved
    return base
