"""Wirings to and from NetworkX and PyG, and the checks every reader shares.

Contract: :func:`to_networkx` gives a ``nx.DiGraph`` with nodes ``0..N-1`` carrying
``level`` (int) and ``role`` (``"input"``, ``"hidden"`` or ``"output"``), edges carrying
``signed_weight`` (float, :data:`EDGE_WEIGHT`) and, when the wiring has a ``real`` mask, ``real``
(bool); graph attributes are ``w.attrs``. There is deliberately no ``weight`` edge attribute:
NetworkX reads ``weight`` by default (``dag_longest_path_length``, ``shortest_path``, ...),
and a signed edge weight is neither a length nor a cost, so those calls see every edge as 1
(the topology: ``nx.dag_longest_path_length(G)`` is the longest path in edges); pass
``weight="signed_weight"`` to use the learned values. :func:`from_networkx` reads
``signed_weight``, else ``weight`` (older files of this project, graphs made elsewhere), else
1.0; it also reads graphs that lack the other attributes (roles from the degrees, levels from
the generations of a DAG, or a dynamic wiring where there are cycles) and returns the edges
sorted by ``(target, source)``, the candidates' order.
:func:`to_pyg` / :func:`from_pyg`: a ``torch_geometric.data.Data`` with ``edge_index``,
``edge_weight``, ``level``, ``role``, ``num_nodes``, ``attrs`` and ``real`` when present.
A file problem is a :class:`WiringFileError` (a :class:`~wiring.graph.GraphError`) naming
the file.

>>> import torch
>>> from wiring.graph import INPUT, OUTPUT, Wiring
>>> w = Wiring(torch.tensor([[0, 1, 0], [2, 2, 3]]), torch.tensor([0.5, -1.0, 2.0]),
...            torch.tensor([0, 0, 1, 1]), torch.tensor([INPUT, INPUT, OUTPUT, OUTPUT]))
>>> G = to_networkx(w)
>>> G.number_of_nodes(), G.number_of_edges(), G.nodes[3]["role"], G.edges[1, 2]["signed_weight"]
(4, 3, 'output', -1.0)
>>> nx.dag_longest_path_length(G)             # NetworkX's default weight: 1 per edge
1
>>> from_networkx(G).edge_index.tolist()      # sorted by (target, source)
[[0, 1, 0], [2, 2, 3]]
"""
from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from wiring.graph import HIDDEN, INPUT, OUTPUT, ROLE_NAMES, GraphError, Wiring, _generations, find_cycle
from wiring.lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

PathLike = str | os.PathLike

#: the edge attribute holding an edge's signed weight in NetworkX graphs and GraphML files
EDGE_WEIGHT = "signed_weight"
#: what older files of this project (and most other tools) call it; read when EDGE_WEIGHT is absent
LEGACY_EDGE_WEIGHT = "weight"


class WiringFileError(GraphError):
    """A wiring file or run folder is missing, too large, malformed or invalid."""


def plain_scalar(value: Any) -> Any:
    """``value`` as a plain Python int/float/str/bool (tensors and numpy scalars
    unwrapped), None for None; anything else raises TypeError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    raise TypeError(type(value).__name__)


def plain_attrs(attrs: dict | None, *, strict: bool) -> dict:
    """Attributes reduced to plain scalars. ``strict``: anything else is an error;
    otherwise it is dropped (``node_default`` dicts of a GraphML reader...)."""
    out = {}
    for key, value in (attrs or {}).items():
        try:
            out[str(key)] = plain_scalar(value)
        except TypeError as err:
            if strict:
                raise GraphError(f"attrs[{key!r}] is a {err}; wiring attributes must be "
                                 f"int, float, str, bool or None") from None
    return out


def existing_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise WiringFileError(f"{what} {path} does not exist")
    if not path.is_file():
        raise WiringFileError(f"{what} {path} is not a file")
    return path


def check_wiring(w: Wiring) -> None:
    n, ei = w.num_nodes, w.edge_index
    if ei.dim() != 2 or ei.size(0) != 2:
        raise GraphError(f"edge_index must have shape [2, E], got {list(ei.shape)}")
    if w.weight.shape != (ei.size(1),):
        raise GraphError(f"weight must have shape [{ei.size(1)}], got {list(w.weight.shape)}")
    if w.role.shape != (n,):
        raise GraphError(f"role must have one entry per node ({n}), got {list(w.role.shape)}")
    if w.real is not None and w.real.shape != (ei.size(1),):
        raise GraphError(f"real must have shape [{ei.size(1)}], got {list(w.real.shape)}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise GraphError(f"edge_index refers to a node outside 0..{n - 1}")
    if w.weight.numel() and not bool(torch.isfinite(w.weight).all()):
        raise GraphError(f"{int((~torch.isfinite(w.weight)).sum())} edge weights are not finite")


def _infer_roles(edge_index: Tensor, num_nodes: int) -> Tensor:
    """No in-edges: input; else no out-edges: output; else hidden."""
    indeg = torch.bincount(edge_index[1], minlength=num_nodes)
    outdeg = torch.bincount(edge_index[0], minlength=num_nodes)
    role = torch.full((num_nodes,), HIDDEN, dtype=torch.long)
    role[outdeg == 0] = OUTPUT
    role[indeg == 0] = INPUT
    return role


def _sort_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Permutation that sorts edges by ``(target, source)``."""
    return torch.argsort(edge_index[1] * num_nodes + edge_index[0], stable=True)


def natural_key(node: Any) -> tuple:
    parts = re.split(r"([0-9]+)", str(node))
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts) if p)


def to_networkx(w: Wiring) -> nx.DiGraph:
    """The wiring as a ``nx.DiGraph`` (nodes ``0..N-1``; see the module docstring).

    >>> w = Wiring(torch.tensor([[0, 1], [2, 2]]), torch.tensor([0.5, -1.0]),
    ...            torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2]), attrs={"k": 2})
    >>> G = to_networkx(w)
    >>> G.nodes[2], G.edges[1, 2], G.graph
    ({'level': 1, 'role': 'output'}, {'signed_weight': -1.0}, {'k': 2})
    """
    check_wiring(w)
    G = nx.DiGraph()
    G.graph.update(w.attrs or {})
    G.add_nodes_from((i, {"level": int(lvl), "role": ROLE_NAMES[int(r)]})
                     for i, (lvl, r) in enumerate(zip(w.level.tolist(), w.role.tolist())))
    src, dst = w.edge_index.tolist()
    weight = w.weight.detach().double().tolist()
    if w.real is None:
        G.add_edges_from((u, v, {EDGE_WEIGHT: x}) for u, v, x in zip(src, dst, weight))
    else:
        real = w.real.bool().tolist()
        G.add_edges_from((u, v, {EDGE_WEIGHT: x, "real": r}) for u, v, x, r in zip(src, dst, weight, real))
    if G.number_of_edges() != w.num_edges:
        key = w.edge_index[1] * max(w.num_nodes, 1) + w.edge_index[0]
        uniq, counts = torch.unique(key, return_counts=True)
        dup = int(uniq[counts > 1][0])
        raise GraphError(f"duplicate edge {dup % w.num_nodes} -> {dup // w.num_nodes}")
    return G


def node_order(G: nx.Graph) -> list:
    """The node ids of ``G`` in the order :func:`from_networkx` numbers them:
    natural order of ``str(id)`` (digit runs compared as numbers), so ints
    ``0..N-1`` keep their ids and ``"n2"`` comes before ``"n10"``.

    >>> node_order(nx.DiGraph([("n10", "n2"), ("n2", "a")]))
    ['a', 'n2', 'n10']
    """
    return sorted(G.nodes, key=natural_key)


def _level_value(node: Any, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not float(value).is_integer():
        raise GraphError(f"node {node!r} has level {value!r}: levels must be integers")
    if value < 0:
        raise GraphError(f"node {node!r} has negative level {value!r}")
    return int(value)


def _role_value(node: Any, value: Any) -> int:
    if isinstance(value, str) and value in ROLE_NAMES:
        return ROLE_NAMES.index(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= 2:
        return int(value)
    raise GraphError(f"node {node!r} has unknown role {value!r}: roles are {', '.join(ROLE_NAMES)}")


def _get(data: dict, key: str, defaults: dict, fallback: Any = None) -> Any:
    """``data[key]``, else the reader's default, else ``fallback`` (None counts as absent)."""
    value = data.get(key)
    if value is None:
        value = defaults.get(key)
    return fallback if value is None else value


def _bool_value(what: str, value: Any) -> bool:
    if isinstance(value, (bool, numbers.Integral)) or type(value).__name__ == "bool_":
        if value in (0, 1):
            return bool(value)
    raise GraphError(f"{what}: it must be a bool")


def _static_value(value: Any) -> bool | None:
    return None if value is None else _bool_value(f"graph attribute static is {value!r}", value)


def from_networkx(G: nx.DiGraph, *, static: bool | None = None) -> Wiring:
    """A :class:`Wiring` from a directed graph, with or without our attributes.

    Nodes are numbered as :func:`node_order` lists them. Edges come sorted by
    ``(target, source)``. Missing data is filled in (a GraphML reader's
    ``node_default`` / ``edge_default`` first):

    * the edge weight: ``signed_weight``, else ``weight`` (older files), else 1.0;
    * ``role``: no in-edges: input; else no out-edges: output; else hidden;
    * ``level`` (on every node or none): ``static`` (the argument, else the graph
      attribute ``static``) False gives all 0; otherwise the topological
      generations, and a cycle is an error naming it.
    * ``real``: on every edge or none.

    With ``static`` True, every edge must go to a strictly higher level. Graph
    attributes that are plain scalars become ``attrs`` (others are dropped).
    Raises :class:`GraphError` naming the node or edge for a non-numeric weight,
    an unknown role, a negative or non-integer level, or parallel edges.

    >>> w = from_networkx(nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")]))
    >>> w.edge_index.tolist(), w.weight.tolist(), w.level.tolist(), w.role.tolist()
    ([[0, 0, 1], [1, 2, 2]], [1.0, 1.0, 1.0], [0, 1, 2], [0, 1, 2])
    """
    if not isinstance(G, nx.Graph):
        raise GraphError(f"expected a networkx DiGraph, got {type(G).__name__}")
    if not G.is_directed():
        raise GraphError("expected a directed graph (nx.DiGraph), got an undirected one")
    if G.is_multigraph():
        seen: set = set()
        for u, v in G.edges():
            if (u, v) in seen:
                raise GraphError(f"duplicate edge {u!r} -> {v!r}")
            seen.add((u, v))
    nodes = node_order(G)
    index = {node: i for i, node in enumerate(nodes)}
    n = len(nodes)
    node_default = G.graph.get("node_default") if isinstance(G.graph.get("node_default"), dict) else {}
    edge_default = G.graph.get("edge_default") if isinstance(G.graph.get("edge_default"), dict) else {}
    static = _static_value(G.graph.get("static")) if static is None else bool(static)

    src, dst, weight, real = [], [], [], []
    for u, v, data in G.edges(data=True):
        x = _get(data, EDGE_WEIGHT, edge_default)
        if x is None:
            x = _get(data, LEGACY_EDGE_WEIGHT, edge_default, 1.0)
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise GraphError(f"edge {u!r} -> {v!r} has non-numeric weight {x!r}")
        if not math.isfinite(float(x)):
            raise GraphError(f"edge {u!r} -> {v!r} has a non-finite weight {x!r}")
        r = _get(data, "real", edge_default)
        if r is not None:
            r = _bool_value(f"edge {u!r} -> {v!r} has real={r!r}", r)
        src.append(index[u])
        dst.append(index[v])
        weight.append(float(x))
        real.append(r)
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    has_real = [r is not None for r in real]
    if any(has_real) and not all(has_real):
        u, v = list(G.edges())[has_real.index(False)]
        raise GraphError(f"edge {u!r} -> {v!r} has no 'real' attribute while other edges have one")

    levels = [_get(G.nodes[node], "level", node_default) for node in nodes]
    given = [lvl is not None for lvl in levels]
    attrs = plain_attrs({k: v for k, v in G.graph.items()
                          if k not in ("node_default", "edge_default")}, strict=False)
    if all(given):
        level = torch.tensor([_level_value(node, lvl) for node, lvl in zip(nodes, levels)],
                             dtype=torch.long)
        if static and edge_index.numel():
            bad = (level[edge_index[0]] >= level[edge_index[1]]).nonzero().flatten()
            if bad.numel():
                i = int(bad[0])
                u, v = nodes[src[i]], nodes[dst[i]]
                raise GraphError(f"edge {u!r} -> {v!r} goes from level {int(level[src[i]])} to level "
                                 f"{int(level[dst[i]])} in a static wiring; every edge must go to a "
                                 f"higher level (pass static=False for a dynamic wiring)")
    elif any(given):
        node = nodes[given.index(False)]
        raise GraphError(f"node {node!r} has no level while other nodes have one")
    elif static is False:
        level = torch.zeros(n, dtype=torch.long)
    else:
        cycle = find_cycle(edge_index, n)
        if cycle is not None:
            names = " -> ".join(repr(nodes[i]) for i in cycle)
            raise GraphError(f"the graph has no node levels and a cycle {names}: a static wiring must "
                             f"be acyclic (pass static=False to read it as a dynamic wiring)")
        level = _generations(edge_index, n) if n else torch.zeros(0, dtype=torch.long)
        static = True
    if static is not None:
        attrs["static"] = static

    role = _infer_roles(edge_index, n)
    for i, node in enumerate(nodes):
        r = _get(G.nodes[node], "role", node_default)
        if r is not None:
            role[i] = _role_value(node, r)
    order = _sort_edges(edge_index, max(n, 1))
    return Wiring(edge_index[:, order].contiguous(),
                  torch.tensor(weight, dtype=torch.float64).reshape(-1)[order],
                  level, role,
                  torch.tensor([bool(r) for r in real], dtype=torch.bool).reshape(-1)[order]
                  if any(has_real) else None,
                  attrs)


def _pyg_data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch_geometric.data import Data
    return Data


def to_pyg(w: Wiring):
    """The wiring as a ``torch_geometric.data.Data`` (tensors shared, not copied).

    >>> w = Wiring(torch.tensor([[0, 1], [2, 2]]), torch.tensor([0.5, -1.0]),
    ...            torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2]))
    >>> d = to_pyg(w)
    >>> d.num_nodes, d.edge_weight.tolist(), d.role.tolist()
    (3, [0.5, -1.0], [0, 0, 2])
    """
    check_wiring(w)
    Data = _pyg_data()
    data = Data(edge_index=w.edge_index, edge_weight=w.weight, level=w.level, role=w.role,
                num_nodes=w.num_nodes, attrs=dict(w.attrs or {}))
    if w.real is not None:
        data.real = w.real
    return data


def from_pyg(data, *, static: bool | None = None) -> Wiring:
    """A :class:`Wiring` from a PyG ``Data`` (edge order kept).

    Missing ``edge_weight``: ones; missing ``role``: inferred from degrees; missing
    ``level``: as :func:`from_networkx` (generations unless ``static`` is False).

    >>> w = from_pyg(to_pyg(from_networkx(nx.DiGraph([(0, 1), (1, 2)]))))
    >>> w.edge_index.tolist(), w.level.tolist()
    ([[0, 1], [1, 2]], [0, 1, 2])
    """
    edge_index = getattr(data, "edge_index", None)
    if not isinstance(edge_index, torch.Tensor):
        raise GraphError("the PyG data has no edge_index tensor")
    edge_index = edge_index.long()
    n = int(data.num_nodes) if data.num_nodes is not None else \
        (int(edge_index.max()) + 1 if edge_index.numel() else 0)
    weight = getattr(data, "edge_weight", None)
    weight = torch.ones(edge_index.size(1)) if weight is None else weight
    attrs = plain_attrs(getattr(data, "attrs", None), strict=False)
    static = _static_value(attrs.get("static")) if static is None else bool(static)
    level = getattr(data, "level", None)
    if level is None:
        if static is False:
            level = torch.zeros(n, dtype=torch.long)
        else:
            level = _generations(edge_index, n)
            attrs.setdefault("static", True)
    role = getattr(data, "role", None)
    role = _infer_roles(edge_index, n) if role is None else role.long()
    real = getattr(data, "real", None)
    w = Wiring(edge_index, weight, level.long(), role, None if real is None else real.bool(), attrs)
    check_wiring(w)
    return w
