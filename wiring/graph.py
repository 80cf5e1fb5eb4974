"""Neural graphs: channel nodes, candidate edges, and their validation.

A :class:`NeuralGraph` is the structure a wiring is learned on. It holds no
weights and no training state, only:

* ``num_nodes`` nodes, each with a ``level`` and a ``role``
  (:data:`INPUT`, :data:`HIDDEN` or :data:`OUTPUT`);
* the candidate edges ``edge_index`` of shape ``[2, C]`` (``torch.long``; row 0 is
  the source, row 1 the target), sorted by ``(target, source)`` so that the
  candidates of one target, and in a static graph those of one level, are
  contiguous (CSR order);
* ``blocks``: rectangles of (target range, source range, candidate range) that
  cover the candidates in order. The hallucinated-edge gradient of a block is one
  dense product when the block is complete (see :mod:`wiring.ops`).

Two kinds of graph:

* **static** (feed-forward): node ids are numbered level by level, and every
  candidate goes from a lower level to a strictly higher one. Every subset of
  the candidates is therefore a DAG and the graph runs level by level. Level 0
  holds the input nodes, the last level the output nodes.
* **dynamic** (recurrent or continuous time): any ordered pair may be a
  candidate, cycles allowed; self-loops only when asked for. Levels are all 0.

Invalid input raises :class:`GraphError` (a ``ValueError``) with a message that
names the problem: wrong dtype or shape, indices out of range, duplicates,
self-loops, an edge against the level order of a static graph, a cycle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from wiring.lazy import lazy_module

from wiring.errors import UserError

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

INPUT, HIDDEN, OUTPUT = 0, 1, 2
ROLE_NAMES = ("input", "hidden", "output")


class GraphError(UserError, ValueError):
    """A neural graph or a budget of edges is invalid; the message says why."""


@dataclass(frozen=True)
class Block:
    """Candidates ``[cand_start, cand_end)`` all have targets in
    ``[target_start, target_end)`` and sources in ``[source_start, source_end)``.

    ``complete`` means they are every pair of that rectangle, in row-major
    ``(target, source)`` order, so their gradients are one dense matrix product.
    """

    target_start: int
    target_end: int
    source_start: int
    source_end: int
    cand_start: int
    cand_end: int
    complete: bool

    @property
    def fill(self) -> float:
        """Fraction of the rectangle's pairs that are candidates."""
        area = (self.target_end - self.target_start) * (self.source_end - self.source_start)
        return (self.cand_end - self.cand_start) / max(area, 1)


@dataclass(frozen=True, eq=False)
class NeuralGraph:
    """Nodes with levels and roles, and the sorted candidate ``edge_index``.

    Build one with :func:`static_graph`, :func:`dynamic_graph` or
    :func:`from_edge_index`; they validate and sort. Example::

        >>> g = static_graph([2, 2, 1])        # 5 nodes: 2 inputs, 2 hidden, 1 output
        >>> g.edge_index.tolist()
        [[0, 1, 0, 1, 0, 1, 2, 3], [2, 2, 3, 3, 4, 4, 4, 4]]
        >>> g.num_candidates, g.level_sizes
        (8, [2, 2, 1])
    """

    edge_index: Tensor
    level: Tensor
    role: Tensor
    static: bool
    allow_self_loops: bool
    blocks: tuple[Block, ...]

    @property
    def num_nodes(self) -> int:
        return int(self.level.numel())

    @property
    def num_candidates(self) -> int:
        return int(self.edge_index.size(1))

    @property
    def num_levels(self) -> int:
        return int(self.level.max().item()) + 1 if self.num_nodes else 0

    @property
    def level_sizes(self) -> list[int]:
        return torch.bincount(self.level, minlength=self.num_levels).tolist()

    @property
    def level_ptr(self) -> list[int]:
        """Node id where each level starts, plus ``num_nodes`` at the end."""
        ptr = [0]
        for size in self.level_sizes:
            ptr.append(ptr[-1] + size)
        return ptr

    @property
    def candidate_level_ptr(self) -> list[int]:
        """Static graphs: candidates whose target lies in level ``l`` are
        ``[ptr[l], ptr[l + 1])`` (level 0 receives none)."""
        targets = self.edge_index[1]
        bounds = torch.tensor(self.level_ptr, dtype=torch.long)
        return torch.searchsorted(targets, bounds).tolist()

    def nodes_with_role(self, role: int) -> Tensor:
        return (self.role == role).nonzero().flatten()

    def describe(self) -> str:
        kind = "static" if self.static else "dynamic"
        counts = {name: int((self.role == i).sum()) for i, name in enumerate(ROLE_NAMES)}
        levels = f" levels {self.level_sizes}" if self.static else ""
        return (f"{kind} graph: {self.num_nodes} nodes ({counts['input']} input, "
                f"{counts['hidden']} hidden, {counts['output']} output){levels}, "
                f"{self.num_candidates} candidate edges")


# ----------------------------------------------------------------------------- checks

def check_edges(k: int, num_candidates: int) -> int:
    """Validate a budget of real edges: an integer with ``1 <= k <= C``.

    >>> check_edges(3, 8)
    3
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise GraphError(f"edges must be an integer, got {k!r}")
    if k <= 0:
        raise GraphError(f"edges must be at least 1, got {k}")
    if k > num_candidates:
        raise GraphError(f"edges={k} is more than the {num_candidates} candidate edges of this graph")
    return k


def density(k: int, num_candidates: int) -> float:
    """Fraction of the candidates that are real."""
    return k / num_candidates


def apportion(total: int, weights: Sequence[float], caps: Sequence[int], minimum: int = 0) -> list[int]:
    """``total`` split into integer parts in proportion to ``weights`` by largest
    remainder (ties to the lower index), each part between ``minimum`` and its cap, the
    parts adding up to exactly ``total``: the budget of real edges over several graphs or
    layers.

    >>> apportion(10, [5, 5, 10], [5, 5, 10])
    [3, 2, 5]
    >>> apportion(4, [1, 1, 100], [10, 10, 10], minimum=1)
    [1, 1, 2]
    """
    if not minimum * len(weights) <= total <= sum(caps):
        raise GraphError(f"a budget of {total} edges cannot be split over {len(weights)} parts "
                         f"(between {minimum * len(weights)} and {sum(caps)})")
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    parts = [min(cap, max(minimum, math.floor(r))) for r, cap in zip(raw, caps)]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - math.floor(raw[i])), i))
    while sum(parts) != total:
        step = 1 if sum(parts) < total else -1
        for i in order:
            if sum(parts) == total:
                break
            if (step > 0 and parts[i] < caps[i]) or (step < 0 and parts[i] > minimum):
                parts[i] += step
    return parts


def validate_edge_index(edge_index: Tensor, num_nodes: int, *, allow_self_loops: bool) -> None:
    """Raise :class:`GraphError` unless ``edge_index`` is a valid ``[2, C]``
    long tensor of distinct in-range pairs (no self-loops unless allowed)."""
    if not isinstance(edge_index, torch.Tensor):
        raise GraphError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dtype != torch.long:
        raise GraphError(f"edge_index must have dtype torch.long, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise GraphError(f"edge_index must have shape [2, C], got {list(edge_index.shape)}")
    if edge_index.size(1) == 0:
        raise GraphError("the graph has no candidate edges")
    if num_nodes <= 0:
        raise GraphError(f"a graph needs at least one node, got num_nodes={num_nodes}")
    low, high = int(edge_index.min()), int(edge_index.max())
    if low < 0 or high >= num_nodes:
        bad = int(low) if low < 0 else int(high)
        raise GraphError(f"edge_index refers to node {bad}, outside 0..{num_nodes - 1}")
    if not allow_self_loops:
        loops = (edge_index[0] == edge_index[1]).nonzero().flatten()
        if loops.numel():
            u = int(edge_index[0, loops[0]])
            raise GraphError(f"self-loop {u} -> {u} is not allowed ({loops.numel()} in all)")
    key = edge_index[1] * num_nodes + edge_index[0]
    uniq, counts = torch.unique(key, return_counts=True)
    if uniq.numel() != key.numel():
        dup = int(uniq[counts > 1][0])
        raise GraphError(f"duplicate candidate edge {dup % num_nodes} -> {dup // num_nodes}")


def find_cycle(edge_index: Tensor, num_nodes: int) -> list[int] | None:
    """A list of nodes ``[v0, v1, ..., v0]`` forming a directed cycle, or None.

    >>> find_cycle(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    [0, 1, 2, 0]
    """
    succ: list[list[int]] = [[] for _ in range(num_nodes)]
    for u, v in edge_index.t().tolist():
        succ[u].append(v)
    state = [0] * num_nodes  # 0 new, 1 on stack, 2 done
    for root in range(num_nodes):
        if state[root]:
            continue
        stack = [(root, iter(succ[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
                path.append(nxt)
    return None


# ----------------------------------------------------------------------------- builders

def _sort_candidates(edge_index: Tensor, num_nodes: int) -> Tensor:
    key = edge_index[1] * num_nodes + edge_index[0]
    return edge_index[:, torch.argsort(key)].contiguous()


def _blocks(edge_index: Tensor, level: Tensor, static: bool) -> tuple[Block, ...]:
    """One block per target level (static), or one for the whole graph."""
    num_nodes = int(level.numel())
    cand = edge_index.size(1)
    if not static:
        return (Block(0, num_nodes, 0, num_nodes, 0, cand, cand == num_nodes * num_nodes),)
    sizes = torch.bincount(level).tolist()
    node_ptr = [0]
    for s in sizes:
        node_ptr.append(node_ptr[-1] + s)
    cand_ptr = torch.searchsorted(edge_index[1], torch.tensor(node_ptr)).tolist()
    blocks = []
    for lvl in range(1, len(sizes)):
        c0, c1 = cand_ptr[lvl], cand_ptr[lvl + 1]
        if c0 == c1:
            continue
        t0, t1, s1 = node_ptr[lvl], node_ptr[lvl + 1], node_ptr[lvl]
        complete = (c1 - c0) == (t1 - t0) * s1
        blocks.append(Block(t0, t1, 0, s1, c0, c1, complete))
    return tuple(blocks)


def from_edge_index(edge_index: Tensor, level: Tensor | Sequence[int] | None = None,
                    role: Tensor | Sequence[int] | None = None, *, num_nodes: int | None = None,
                    static: bool = True, allow_self_loops: bool = False) -> NeuralGraph:
    """Validate and sort a candidate ``edge_index`` into a :class:`NeuralGraph`.

    Static graphs need node ids numbered level by level (``level`` non-decreasing)
    and every candidate going to a strictly higher level; without ``level`` the
    levels are the topological generations of the candidates (a cycle is an error).
    Roles default to: level 0 input, last level output, others hidden (static);
    all hidden (dynamic).

    >>> g = from_edge_index(torch.tensor([[0, 0, 1], [1, 2, 2]]))
    >>> g.level.tolist(), g.role.tolist()
    ([0, 1, 2], [0, 1, 2])
    """
    if num_nodes is None:
        if level is not None:
            num_nodes = len(level)
        elif isinstance(edge_index, torch.Tensor) and edge_index.numel():
            num_nodes = int(edge_index.max()) + 1
        else:
            num_nodes = 0
    validate_edge_index(edge_index, num_nodes, allow_self_loops=allow_self_loops and not static)
    inferred = level is None and static
    if level is None:
        level = _generations(edge_index, num_nodes) if static else torch.zeros(num_nodes, dtype=torch.long)
    level = torch.as_tensor(level, dtype=torch.long)
    if level.shape != (num_nodes,):
        raise GraphError(f"level must have one entry per node ({num_nodes}), got shape {list(level.shape)}")
    if static:
        if (level < 0).any():
            raise GraphError("levels must be non-negative")
        if (level[1:] < level[:-1]).any():
            bad = int((level[1:] < level[:-1]).nonzero()[0]) + 1
            how = " (levels inferred as topological generations)" if inferred else ""
            raise GraphError(f"static graph nodes must be numbered level by level: node {bad} has "
                             f"level {int(level[bad])} after level {int(level[bad - 1])}{how}")
        present = torch.unique(level)
        if present.numel() != int(level.max()) + 1:
            raise GraphError(f"levels must be 0..L-1 with none empty, got {present.tolist()}")
        src_l, dst_l = level[edge_index[0]], level[edge_index[1]]
        back = (src_l >= dst_l).nonzero().flatten()
        if back.numel():
            i = int(back[0])
            u, v = int(edge_index[0, i]), int(edge_index[1, i])
            cycle = find_cycle(edge_index, num_nodes)
            why = f"; the candidates contain the cycle {' -> '.join(map(str, cycle))}" if cycle else ""
            raise GraphError(f"static graph edge {u} -> {v} goes from level {int(src_l[i])} to level "
                             f"{int(dst_l[i])}: every candidate must go to a higher level so that "
                             f"every wiring is a DAG{why}")
    if role is None:
        role = torch.full((num_nodes,), HIDDEN, dtype=torch.long)
        if static:
            role[level == 0] = INPUT
            role[level == level.max()] = OUTPUT
    role = torch.as_tensor(role, dtype=torch.long)
    if role.shape != (num_nodes,):
        raise GraphError(f"role must have one entry per node ({num_nodes}), got shape {list(role.shape)}")
    if ((role < INPUT) | (role > OUTPUT)).any():
        raise GraphError(f"roles must be {INPUT} (input), {HIDDEN} (hidden) or {OUTPUT} (output)")
    edge_index = _sort_candidates(edge_index, num_nodes)
    return NeuralGraph(edge_index, level, role, static, allow_self_loops and not static,
                       _blocks(edge_index, level, static))


def _generations(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Longest-path level of every node (0 for sources); a cycle is an error."""
    cycle = find_cycle(edge_index, num_nodes)
    if cycle is not None:
        raise GraphError(f"a static graph must be acyclic, found the cycle {' -> '.join(map(str, cycle))}")
    succ: list[list[int]] = [[] for _ in range(num_nodes)]
    indeg = [0] * num_nodes
    for u, v in edge_index.t().tolist():
        succ[u].append(v)
        indeg[v] += 1
    level = [0] * num_nodes
    frontier = [v for v in range(num_nodes) if indeg[v] == 0]
    while frontier:
        nxt = []
        for u in frontier:
            for v in succ[u]:
                level[v] = max(level[v], level[u] + 1)
                indeg[v] -= 1
                if indeg[v] == 0:
                    nxt.append(v)
        frontier = nxt
    return torch.tensor(level, dtype=torch.long)


def static_graph(level_sizes: Sequence[int], *, max_in_degree: int | None = None,
                 seed: int = 0) -> NeuralGraph:
    """Levels of the given sizes; candidates = every pair from a lower to a higher level.

    Level 0 holds the input nodes, the last level the output nodes. With
    ``max_in_degree`` each target keeps a random subset (seeded) of at most that
    many admissible sources, for very large graphs.

    >>> static_graph([32, 192, 192, 192, 192, 100]).num_candidates
    325760
    >>> static_graph([2, 3, 1], max_in_degree=2).num_candidates
    8
    """
    sizes = [int(s) for s in level_sizes]
    if len(sizes) < 2:
        raise GraphError(f"a static graph needs at least 2 levels, got {sizes}")
    if any(s <= 0 for s in sizes):
        raise GraphError(f"every level needs at least one node, got sizes {sizes}")
    if max_in_degree is not None and max_in_degree <= 0:
        raise GraphError(f"max_in_degree must be positive, got {max_in_degree}")
    level = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    num_nodes = int(level.numel())
    gen = torch.Generator().manual_seed(seed)
    parts = []
    start = sizes[0]
    for size in sizes[1:]:
        targets = torch.arange(start, start + size)
        if max_in_degree is None or max_in_degree >= start:
            src = torch.arange(start).repeat(size)
            dst = targets.repeat_interleave(start)
        else:
            scores = torch.rand(size, start, generator=gen)
            src = scores.topk(max_in_degree, dim=1).indices.flatten()
            dst = targets.repeat_interleave(max_in_degree)
        parts.append(torch.stack([src, dst]))
        start += size
    edge_index = torch.cat(parts, dim=1)
    return from_edge_index(edge_index, level, num_nodes=num_nodes, static=True)


def dynamic_graph(num_nodes: int, *, inputs: Sequence[int] | int = 0, outputs: Sequence[int] | int = 0,
                  self_loops: bool = False) -> NeuralGraph:
    """Every ordered pair of ``num_nodes`` nodes is a candidate (cycles allowed).

    ``inputs`` / ``outputs``: node ids with those roles, or a count taken from the
    start / end of the node range.

    >>> g = dynamic_graph(3, inputs=1, outputs=1)
    >>> g.num_candidates, g.role.tolist()
    (6, [0, 1, 2])
    """
    if num_nodes < 2 and not self_loops:
        raise GraphError(f"a dynamic graph without self-loops needs at least 2 nodes, got {num_nodes}")
    u, v = torch.meshgrid(torch.arange(num_nodes), torch.arange(num_nodes), indexing="xy")
    edge_index = torch.stack([u.flatten(), v.flatten()])
    if not self_loops:
        edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    role = torch.full((num_nodes,), HIDDEN, dtype=torch.long)
    ins = list(range(inputs)) if isinstance(inputs, int) else list(inputs)
    outs = list(range(num_nodes - outputs, num_nodes)) if isinstance(outputs, int) else list(outputs)
    if set(ins) & set(outs):
        raise GraphError("a node cannot be both an input and an output")
    role[ins] = INPUT
    role[outs] = OUTPUT
    return from_edge_index(edge_index, torch.zeros(num_nodes, dtype=torch.long), role,
                           num_nodes=num_nodes, static=False, allow_self_loops=self_loops)


@dataclass(eq=False)
class Wiring:
    """A wiring as plain data: nodes, a set of edges with weights, and metadata.

    ``edge_index`` ``[2, E]`` holds the real edges (or all candidates, where said),
    ``weight`` ``[E]`` their weights; ``real`` ``[E]`` (bool) says which are real when
    the candidates are included. ``attrs`` holds plain scalars only (``k``,
    ``density``, ``candidates``, ``preset``, ``mode``, ``seed``, ``step``, ``static``,
    ...). This is what the I/O functions read and write and what the viz reads.

    >>> w = Wiring(torch.tensor([[0, 1], [2, 2]]), torch.tensor([0.5, -1.0]),
    ...            torch.tensor([0, 0, 1]), torch.tensor([INPUT, INPUT, OUTPUT]))
    >>> w.num_nodes, w.num_edges
    (3, 2)
    """

    edge_index: Tensor
    weight: Tensor
    level: Tensor
    role: Tensor
    real: Tensor | None = None
    attrs: dict | None = None

    def __post_init__(self) -> None:
        if self.attrs is None:
            self.attrs = {}

    @property
    def num_nodes(self) -> int:
        return int(self.level.numel())

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.size(1))

    def real_edges(self) -> "Wiring":
        """The same wiring restricted to its real edges."""
        if self.real is None:
            return self
        keep = self.real
        return Wiring(self.edge_index[:, keep], self.weight[keep], self.level, self.role, None, dict(self.attrs))
