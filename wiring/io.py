"""Wirings in and out: NetworkX, PyG, GraphML, edge lists, histories, run folders.

Pure functions of a :class:`~wiring.graph.Wiring`; nothing here knows of models,
training state or the command line, so the viz can import it freely.

Contract
--------
* :func:`to_networkx` / :func:`from_networkx`: a ``nx.DiGraph`` with nodes
  ``0..N-1`` carrying ``level`` (int) and ``role`` (``"input"``, ``"hidden"`` or
  ``"output"``), edges carrying ``weight`` (float) and, when the wiring has a
  ``real`` mask, ``real`` (bool); graph attributes are ``w.attrs``.
  :func:`from_networkx` also reads graphs that lack those attributes (see there)
  and returns the edges sorted by ``(target, source)``, the candidates' order.
* :func:`to_pyg` / :func:`from_pyg`: a ``torch_geometric.data.Data`` with
  ``edge_index``, ``edge_weight``, ``level``, ``role``, ``num_nodes``, ``attrs``
  and ``real`` when present.
* :func:`write_graphml` / :func:`read_graphml`: every attribute a plain scalar so
  any GraphML reader opens the file; writes are atomic (temporary file in the same
  folder, then ``os.replace``). Reading checks the size before parsing and the node
  and edge counts before building anything.
* :func:`write_edgelist`: ``source target weight`` per line (plus ``real`` as 0/1
  when the wiring has a mask) after a ``#`` header with the attributes.
* :class:`WiringHistory`: the snapshots of a wiring during training, about 6 bytes
  per real edge per snapshot; saved as a ``.pt`` of tensors and plain types only.
* :func:`load_metrics` and :func:`load_run`: the files of a run folder. The names of every
  file ``wiring.train`` writes there are spelled once, here (``CHECKPOINT_FILE``...,
  :func:`run_files`), with the folder's lock (:class:`RunLock`).

Every problem with a file raises :class:`WiringFileError` (a :class:`GraphError`,
hence a ``ValueError``) with a one-line message naming the file; invalid graph
content raises :class:`GraphError` naming the node or edge.
"""
from __future__ import annotations

import io as _io
import json
import math
import numbers
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import networkx as nx
import torch
from torch import Tensor

from wiring.files import NotText, atomic_path, atomic_write, load_refusal, read_text
from wiring.graph import HIDDEN, INPUT, OUTPUT, ROLE_NAMES, GraphError, Wiring, _generations, find_cycle

__all__ = [
    "WiringFileError", "to_networkx", "from_networkx", "node_order", "to_pyg", "from_pyg",
    "write_graphml", "read_graphml", "read_wiring_file", "write_edgelist", "WiringHistory", "load_metrics",
    "RunData", "load_run", "RUN_FILES", "atomic_path", "atomic_write", "GraphError",
    "CONFIG_FILE", "METRICS_FILE", "CHECKPOINT_FILE", "BEST_FILE", "SPARSE_FILE", "LOCK_FILE",
    "wiring_key", "wiring_file", "run_files", "temp_files", "RunLock", "RunFolderBusy",
]

PathLike = str | os.PathLike


class WiringFileError(GraphError):
    """A wiring file or run folder is missing, too large, malformed or invalid."""


# ----------------------------------------------------------------------------- helpers

def _plain_scalar(value: Any) -> Any:
    """``value`` as a plain Python int/float/str/bool (tensors and numpy scalars
    unwrapped), None for None; anything else raises TypeError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    raise TypeError(type(value).__name__)


def _plain_attrs(attrs: dict | None, *, strict: bool) -> dict:
    """Attributes reduced to plain scalars. ``strict``: anything else is an error;
    otherwise it is dropped (``node_default`` dicts of a GraphML reader...)."""
    out = {}
    for key, value in (attrs or {}).items():
        try:
            out[str(key)] = _plain_scalar(value)
        except TypeError as err:
            if strict:
                raise GraphError(f"attrs[{key!r}] is a {err}; wiring attributes must be "
                                 f"int, float, str, bool or None") from None
    return out


# the name atomic_path gives its temporary file: .<stem>.<pid>.<8 hex>.tmp<suffix>
_TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.(?P<pid>[0-9]+)\.(?P<hex>[0-9a-f]{8})\.tmp(?P<suffix>.*)")


def _existing_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise WiringFileError(f"{what} {path} does not exist")
    if not path.is_file():
        raise WiringFileError(f"{what} {path} is not a file")
    return path


def _check_wiring(w: Wiring) -> None:
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


def _natural_key(node: Any) -> tuple:
    parts = re.split(r"([0-9]+)", str(node))
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts) if p)


# ----------------------------------------------------------------------------- NetworkX

def to_networkx(w: Wiring) -> nx.DiGraph:
    """The wiring as a ``nx.DiGraph`` (nodes ``0..N-1``; see the module docstring).

    >>> w = Wiring(torch.tensor([[0, 1], [2, 2]]), torch.tensor([0.5, -1.0]),
    ...            torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2]), attrs={"k": 2})
    >>> G = to_networkx(w)
    >>> G.nodes[2], G.edges[1, 2], G.graph
    ({'level': 1, 'role': 'output'}, {'weight': -1.0}, {'k': 2})
    """
    _check_wiring(w)
    G = nx.DiGraph()
    G.graph.update(w.attrs or {})
    G.add_nodes_from((i, {"level": int(lvl), "role": ROLE_NAMES[int(r)]})
                     for i, (lvl, r) in enumerate(zip(w.level.tolist(), w.role.tolist())))
    src, dst = w.edge_index.tolist()
    weight = w.weight.detach().double().tolist()
    if w.real is None:
        G.add_edges_from((u, v, {"weight": x}) for u, v, x in zip(src, dst, weight))
    else:
        real = w.real.bool().tolist()
        G.add_edges_from((u, v, {"weight": x, "real": r}) for u, v, x, r in zip(src, dst, weight, real))
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
    return sorted(G.nodes, key=_natural_key)


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

    * ``weight``: 1.0;
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
        x = _get(data, "weight", edge_default, 1.0)
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
    attrs = _plain_attrs({k: v for k, v in G.graph.items()
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


# ----------------------------------------------------------------------------- PyG

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
    _check_wiring(w)
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
    if not isinstance(edge_index, Tensor):
        raise GraphError("the PyG data has no edge_index tensor")
    edge_index = edge_index.long()
    n = int(data.num_nodes) if data.num_nodes is not None else \
        (int(edge_index.max()) + 1 if edge_index.numel() else 0)
    weight = getattr(data, "edge_weight", None)
    weight = torch.ones(edge_index.size(1)) if weight is None else weight
    attrs = _plain_attrs(getattr(data, "attrs", None), strict=False)
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
    _check_wiring(w)
    return w


# ----------------------------------------------------------------------------- GraphML

def _graphml_graph(w: Wiring) -> nx.DiGraph:
    G = to_networkx(w)
    G.graph.clear()
    for key, value in _plain_attrs(w.attrs, strict=True).items():
        if value is not None and key not in ("node_default", "edge_default"):
            G.graph[key] = value
    return G


def write_graphml(w: Wiring, path: PathLike) -> None:
    """Write the wiring as GraphML, atomically. Node data ``level`` (long) and
    ``role`` (string); edge data ``weight`` (double) and ``real`` (boolean) when
    the wiring has a mask; graph data = ``w.attrs`` without None values (a
    non-scalar attribute is a :class:`GraphError`).

    >>> import tempfile
    >>> w = Wiring(torch.tensor([[0, 1], [2, 2]]), torch.tensor([0.5, -1.0]),
    ...            torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2]), attrs={"k": 2, "seed": None})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_graphml(w, f"{d}/w.graphml")
    ...     read_graphml(f"{d}/w.graphml").attrs
    {'k': 2}
    """
    G = _graphml_graph(w)
    atomic_write(path, lambda f: nx.write_graphml(G, f), binary=True)


def read_graphml(path: PathLike, *, static: bool | None = None, max_bytes: int = 200_000_000,
                 max_nodes: int = 1_000_000, max_edges: int = 20_000_000) -> Wiring:
    """Read a GraphML file into a :class:`Wiring` (any directed GraphML graph; the
    attributes are interpreted as in :func:`from_networkx`).

    The file size is checked before parsing and the node and edge counts before a
    graph is built; entity declarations are refused. Raises
    :class:`WiringFileError` naming the file for any problem.
    """
    path = _existing_file(path, "GraphML file")
    size = path.stat().st_size
    if size > max_bytes:
        raise WiringFileError(f"GraphML file {path} is {size:,} bytes, over the limit max_bytes={max_bytes:,}")
    data = path.read_bytes()
    if b"<!ENTITY" in data:
        raise WiringFileError(f"GraphML file {path} declares XML entities, which are not allowed")
    from xml.etree.ElementTree import ParseError, iterparse
    nodes = edges = 0
    try:
        for _, elem in iterparse(_io.BytesIO(data), events=("end",)):
            tag = elem.tag.rsplit("}", 1)[-1] if isinstance(elem.tag, str) else ""
            if tag == "node":
                nodes += 1
                if nodes > max_nodes:
                    raise WiringFileError(f"GraphML file {path} has more than max_nodes={max_nodes:,} nodes")
            elif tag == "edge":
                edges += 1
                if edges > max_edges:
                    raise WiringFileError(f"GraphML file {path} has more than max_edges={max_edges:,} edges")
            if tag in ("node", "edge"):
                elem.clear()
    except ParseError as err:
        raise WiringFileError(f"GraphML file {path} is not well-formed XML: {err}") from None
    try:
        G = nx.read_graphml(_io.BytesIO(data))
    except (nx.NetworkXError, ParseError, ValueError, KeyError, TypeError) as err:
        raise WiringFileError(f"GraphML file {path} could not be read as GraphML: "
                              f"{type(err).__name__}: {err}") from None
    try:
        return from_networkx(G, static=static)
    except GraphError as err:
        raise WiringFileError(f"GraphML file {path}: {err}") from None


def read_wiring_file(path: PathLike) -> Wiring:
    """A GraphML file as the commands read one (``viz.render``, ``viz.plots``,
    ``viz.explore``, ``wiring.analyze``): as :func:`read_graphml` reads it, except that
    a file without node levels whose cycle rules out a layered reading (a graph
    NetworkX wrote, say) is read as a dynamic wiring (``static=False``: every level 0)
    instead of refused. Any other problem is the :class:`WiringFileError` of the
    layered reading.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "ring.graphml"
    >>> nx.write_graphml(nx.DiGraph([(0, 1), (1, 2), (2, 0)]), path)
    >>> w = read_wiring_file(path)
    >>> w.num_edges, w.level.tolist(), w.attrs["static"]
    (3, [0, 0, 0], False)
    """
    try:
        return read_graphml(path)
    except WiringFileError as layered:
        try:
            wiring = read_graphml(path, static=False)
        except WiringFileError:
            raise layered from None
        if bool(wiring.level.any()):          # the file's own levels: its layered reading's error stands
            raise layered from None
        return wiring


def write_edgelist(w: Wiring, path: PathLike) -> None:
    """Write ``source target weight`` per edge (and ``real`` as 0/1 when the wiring
    has a mask) after a ``#`` header: ``# nodes N edges E``, one ``# key: value``
    line per attribute, and the column names. Atomic.

    >>> import tempfile
    >>> w = Wiring(torch.tensor([[0, 1], [2, 2]]), torch.tensor([0.5, -1.0]),
    ...            torch.tensor([0, 0, 1]), torch.tensor([0, 0, 2]), attrs={"k": 2})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_edgelist(w, f"{d}/w.txt")
    ...     print(open(f"{d}/w.txt").read(), end="")
    # nodes 3 edges 2
    # k: 2
    # source target weight
    0 2 0.5
    1 2 -1
    """
    _check_wiring(w)
    src, dst = w.edge_index.tolist()
    weight = w.weight.detach().double().tolist()
    real = None if w.real is None else w.real.bool().tolist()

    def write(f) -> None:
        f.write(f"# nodes {w.num_nodes} edges {w.num_edges}\n")
        for key, value in (w.attrs or {}).items():
            f.write(f"# {key}: {value}\n")
        f.write("# source target weight" + (" real\n" if real is not None else "\n"))
        if real is None:
            f.writelines(f"{u} {v} {x:.9g}\n" for u, v, x in zip(src, dst, weight))
        else:
            f.writelines(f"{u} {v} {x:.9g} {int(r)}\n" for u, v, x, r in zip(src, dst, weight, real))

    atomic_write(path, write, binary=False)


# ----------------------------------------------------------------------------- history

_F16_MAX = 65504.0


class WiringHistory:
    """Snapshots of the real edges of one candidate set during training.

    The static part is stored once: ``candidates`` ``[2, C]``, ``level`` ``[N]``,
    ``role`` ``[N]``, ``attrs``. Each snapshot stores its ``step``, the sorted
    indices of its real candidates (int32) and their weights (float16, clamped to
    +-65504): 6 bytes per real edge.

    :meth:`save` writes a ``.pt`` file that ``torch.load(path, weights_only=True)``
    opens without this class: a dict with keys

    * ``format``: ``"wiring-history"``, ``version``: 2;
    * ``num_candidates``: C (int); ``edge_id``: int32 ``[U]``, the sorted ids of the
      candidates real in at least one snapshot, and ``edges``: int32 ``[2, U]``, their
      (source, target): candidates never real are not stored, which keeps the file
      small (12,000 real edges of 325,760 candidates: ~0.2 MB, not 5 MB);
    * ``level``, ``role``: int64 ``[N]``;
    * ``steps``: int64 ``[S]``;
    * ``ptr``: int64 ``[S + 1]``: snapshot ``i`` is ``index[ptr[i]:ptr[i+1]]``;
    * ``index``: int32 ``[sum k]`` candidate indices, sorted within a snapshot;
    * ``weight``: float16 ``[sum k]``, aligned with ``index``;
    * ``attrs``: dict of plain scalars.

    >>> h = WiringHistory(torch.tensor([[0, 1, 0, 1], [2, 2, 3, 3]]), torch.tensor([0, 0, 1, 1]),
    ...                   torch.tensor([0, 0, 2, 2]), {"mode": "dnw"})
    >>> h.append(0, torch.tensor([3, 0]), torch.tensor([-2.0, 0.5]))
    >>> h.append(10, torch.tensor([1, 2]), torch.tensor([1.0, 0.25]))
    >>> len(h), h.steps
    (2, [0, 10])
    >>> f = h.frame(0)
    >>> f.edge_index.tolist(), f.weight.tolist(), f.attrs["step"], f.attrs["k"]
    ([[0, 1], [2, 3]], [0.5, -2.0], 0, 2)
    """

    def __init__(self, candidates: Tensor, level: Tensor, role: Tensor, attrs: dict | None = None):
        candidates = torch.as_tensor(candidates)
        if candidates.dim() != 2 or candidates.size(0) != 2:
            raise GraphError(f"candidates must have shape [2, C], got {list(candidates.shape)}")
        self.candidates = candidates.long().clone().contiguous()
        self.level = torch.as_tensor(level).long().clone()
        self.role = torch.as_tensor(role).long().clone()
        if self.role.shape != self.level.shape or self.level.dim() != 1:
            raise GraphError("level and role must be 1-D with one entry per node")
        if self.num_candidates >= 2**31:
            raise GraphError(f"{self.num_candidates} candidates do not fit int32 indices")
        self.attrs = _plain_attrs(attrs, strict=True)
        self._steps: list[int] = []
        self._index: list[Tensor] = []
        self._weight: list[Tensor] = []

    @classmethod
    def from_graph(cls, graph, attrs: dict | None = None) -> "WiringHistory":
        """A history over the candidates of a :class:`~wiring.graph.NeuralGraph`."""
        attrs = dict(attrs or {})
        attrs.setdefault("static", bool(graph.static))
        attrs.setdefault("candidates", graph.num_candidates)
        return cls(graph.edge_index, graph.level, graph.role, attrs)

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.size(1))

    @property
    def steps(self) -> list[int]:
        return list(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def append(self, step: int, real_index: Tensor, weight: Tensor) -> None:
        """Add a snapshot. ``real_index``: candidate indices ``[k]`` (any order) or a
        bool mask ``[C]``; ``weight``: the real edges' weights ``[k]`` in the order of
        ``real_index`` (ascending for a mask), or all ``C`` candidate weights."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise GraphError(f"step must be an integer, got {step!r}")
        c = self.num_candidates
        real_index = torch.as_tensor(real_index).detach().cpu()
        weight = torch.as_tensor(weight).detach().cpu()
        if real_index.dtype == torch.bool:
            if real_index.shape != (c,):
                raise GraphError(f"a real mask must have shape [{c}], got {list(real_index.shape)}")
            real_index = real_index.nonzero().flatten()
        if real_index.dim() != 1 or real_index.is_floating_point() or real_index.is_complex():
            raise GraphError(f"real_index must be a 1-D integer tensor, got {real_index.dtype} "
                             f"{list(real_index.shape)}")
        real_index = real_index.long()
        k = real_index.numel()
        if weight.dim() != 1 or weight.numel() not in (k, c):
            raise GraphError(f"weight must have {k} (real) or {c} (all) entries, got {list(weight.shape)}")
        if k and (int(real_index.min()) < 0 or int(real_index.max()) >= c):
            raise GraphError(f"real_index refers to a candidate outside 0..{c - 1}")
        if weight.numel() != k:
            weight = weight[real_index]
        order = torch.argsort(real_index)
        real_index, weight = real_index[order], weight[order]
        if k > 1 and bool((real_index[1:] == real_index[:-1]).any()):
            raise GraphError("real_index has duplicate candidates")
        self._steps.append(int(step))
        self._index.append(real_index.to(torch.int32))
        self._weight.append(weight.float().clamp(-_F16_MAX, _F16_MAX).to(torch.float16))

    def _check(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"snapshot {i} out of range for a history of {len(self)}")
        return i % len(self)

    def real_index(self, i: int) -> Tensor:
        """Sorted candidate indices (int64) of the real edges of snapshot ``i``."""
        return self._index[self._check(i)].long()

    def frame(self, i: int) -> Wiring:
        """Snapshot ``i`` as a :class:`Wiring` of its real edges (float32 weights);
        ``attrs`` adds ``step``, ``k``, ``candidates`` and ``density``."""
        i = self._check(i)
        index = self._index[i].long()
        k = int(index.numel())
        attrs = dict(self.attrs)
        attrs.update(step=self._steps[i], k=k, candidates=self.num_candidates,
                     density=k / max(self.num_candidates, 1))
        return Wiring(self.candidates[:, index], self._weight[i].float(), self.level, self.role, None, attrs)

    def __iter__(self) -> Iterator[Wiring]:
        return (self.frame(i) for i in range(len(self)))

    def state(self) -> dict:
        """The dict :meth:`save` writes (see the class docstring for the keys)."""
        ptr = [0]
        for index in self._index:
            ptr.append(ptr[-1] + int(index.numel()))
        index = torch.cat(self._index) if self._index else torch.zeros(0, dtype=torch.int32)
        used = torch.unique(index.long())
        return {
            "format": "wiring-history", "version": 2,
            "num_candidates": self.num_candidates,
            "edge_id": used.to(torch.int32),
            "edges": self.candidates[:, used].to(torch.int32),
            "level": self.level, "role": self.role,
            "steps": torch.tensor(self._steps, dtype=torch.long),
            "ptr": torch.tensor(ptr, dtype=torch.long),
            "index": index,
            "weight": torch.cat(self._weight) if self._weight else torch.zeros(0, dtype=torch.float16),
            "attrs": dict(self.attrs),
        }

    def save(self, path: PathLike) -> None:
        """Write the history atomically as a ``weights_only``-loadable ``.pt``."""
        state = self.state()
        atomic_write(path, lambda f: torch.save(state, f), binary=True)

    @classmethod
    def load(cls, path: PathLike) -> "WiringHistory":
        """Read a file written by :meth:`save` (checked; errors name the file)."""
        path = _existing_file(path, "history file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a bad file
            raise WiringFileError(f"history file {path} could not be loaded: {load_refusal(err)}") from None
        try:
            return cls._from_state(state)
        except (GraphError, KeyError, TypeError, ValueError) as err:
            raise WiringFileError(f"history file {path} is invalid: {err}") from None

    @classmethod
    def _from_state(cls, state: dict) -> "WiringHistory":
        if not isinstance(state, dict) or state.get("format") != "wiring-history":
            raise GraphError("not a wiring history (format key missing)")
        if state.get("version") != 2:
            raise GraphError(f"unsupported version {state.get('version')!r}")
        expected = {"edge_id": torch.int32, "edges": torch.int32, "level": None, "role": None, "steps": None,
                    "ptr": None, "index": torch.int32, "weight": torch.float16}
        for key, dtype in expected.items():
            if not isinstance(state.get(key), Tensor):
                raise GraphError(f"key {key!r} missing or not a tensor")
            if dtype is not None and state[key].dtype != dtype:
                raise GraphError(f"key {key!r} has dtype {state[key].dtype}, expected {dtype}")
        c = state.get("num_candidates")
        edge_id, edges = state["edge_id"].long(), state["edges"].long()
        if not isinstance(c, int) or c < 0 or edges.shape != (2, edge_id.numel()) \
                or (edge_id.numel() and (int(edge_id.min()) < 0 or int(edge_id.max()) >= c)):
            raise GraphError("num_candidates, edge_id and edges do not fit together")
        # Candidates never real in any snapshot are not stored; they read as -1.
        candidates = torch.full((2, c), -1, dtype=torch.long)
        candidates[:, edge_id] = edges
        h = cls(candidates, state["level"], state["role"], state.get("attrs") or {})
        steps, ptr, index, weight = state["steps"], state["ptr"], state["index"], state["weight"]
        known = torch.zeros(c, dtype=torch.bool)
        known[edge_id] = True
        s = steps.numel()
        if ptr.shape != (s + 1,) or int(ptr[0]) != 0 or int(ptr[-1]) != index.numel() \
                or index.shape != weight.shape or index.dim() != 1 or bool((ptr[1:] < ptr[:-1]).any()):
            raise GraphError("steps, ptr, index and weight do not fit together")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= h.num_candidates
                              or not bool(known[index.long()].all())):
            raise GraphError("index refers to a candidate out of range or not in edge_id")
        bounds = ptr.tolist()
        for i, step in enumerate(steps.tolist()):
            h._steps.append(int(step))
            h._index.append(index[bounds[i]:bounds[i + 1]].clone())
            h._weight.append(weight[bounds[i]:bounds[i + 1]].clone())
        return h


# ----------------------------------------------------------------------------- metrics and runs

def load_metrics(path: PathLike) -> list[dict]:
    """The records of a JSON-lines file, one dict per non-empty line. A last line
    that does not parse (a write cut short) is skipped; any other bad line is a
    :class:`WiringFileError` naming its line number.
    """
    path = _existing_file(path, "metrics file")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise WiringFileError(f"metrics file {path} line {number} is not JSON: {err}") from None
        if not isinstance(record, dict):
            raise WiringFileError(f"metrics file {path} line {number} is not a JSON object")
        records.append(record)
    return records


# ----------------------------------------------------------------------------- the run folder's files
# The one place that spells the names of the files ``wiring.train`` writes into a run folder;
# the recorder, train (--overwrite, --resume), study, export, compact and profile use these.

CONFIG_FILE = "config.yaml"          # the resolved settings
METRICS_FILE = "metrics.jsonl"       # one JSON object per epoch
CHECKPOINT_FILE = "checkpoint.pt"    # the latest state (every epoch, and where a run was stopped)
BEST_FILE = "best.pt"                # the state of the best test accuracy
SPARSE_FILE = "sparse.pt"            # real weights of models made sparse (wiring.sparsify)
LOCK_FILE = ".lock"                  # held (fcntl.flock) by the process training in the folder
# a model's only wiring writes wiring.graphml, history.pt and initial.graphml; a model with
# several (MobileNetV1-DNW: one per stage) writes wiring-NAME.graphml, history-NAME.pt and
# initial-NAME.graphml, NAME the wiring module's name with dots as dashes (wiring_key)
WIRING_FILES = (("wiring", ".graphml"), ("history", ".pt"), ("initial", ".graphml"))
#: the files :func:`load_run` reads (any one of them makes a folder a run folder)
RUN_FILES = (CONFIG_FILE, METRICS_FILE, "history.pt", "wiring.graphml", "initial.graphml")


def wiring_key(module_name: str, count: int) -> str:
    """The NAME of a wiring's files: ``""`` for a model's only wiring, else its module name
    with dots as dashes (``stages.0.graph`` -> ``stages-0-graph``)."""
    return "" if count == 1 or not module_name else module_name.replace(".", "-")


def wiring_file(stem: str, ext: str, key: str = "") -> str:
    """``history.pt`` for a model's only wiring (``key`` ""), ``history-NAME.pt`` for wiring NAME."""
    return f"{stem}-{key}{ext}" if key else f"{stem}{ext}"


def run_files(wiring_keys=("",)) -> list[str]:
    """Every file ``wiring.train`` may write into a run folder for a model whose wirings
    have the NAMEs ``wiring_keys`` (:func:`wiring_key`; ``("",)`` a model's only wiring,
    ``()`` a model without one): what ``--overwrite`` removes, and nothing else.

    >>> run_files()
    ['config.yaml', 'metrics.jsonl', 'checkpoint.pt', 'best.pt', 'sparse.pt', 'wiring.graphml', 'history.pt', 'initial.graphml']
    """
    names = [CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BEST_FILE, SPARSE_FILE]
    names += [wiring_file(stem, ext, key) for key in wiring_keys for stem, ext in WIRING_FILES]
    return names


def temp_files(folder: PathLike, names) -> list[Path]:
    """The temporary files :func:`atomic_path` left in ``folder`` (a write cut short by a
    kill) for the files ``names``; other hidden files are not touched."""
    folder = Path(folder)
    wanted = {(Path(n).stem, Path(n).suffix) for n in names}
    out = []
    for p in folder.glob(".*.tmp*") if folder.is_dir() else []:
        match = _TEMP_NAME.fullmatch(p.name)
        if match and (match["stem"], match["suffix"]) in wanted and p.is_file():
            out.append(p)
    return out


class RunFolderBusy(WiringFileError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive lock on a run folder for the life of one training: ``fcntl.flock`` on
    ``LOCK_FILE`` in the folder, which holds the owner's pid. The kernel drops it when the
    process ends however it ends (``kill -9`` included), so a killed run never blocks its
    own ``--resume``; the owner removes the file when it lets go. :meth:`acquire` is a
    no-op while held and raises :class:`RunFolderBusy` naming the holder's pid.
    Where ``fcntl`` does not exist (Windows) the lock does nothing."""

    def __init__(self, run_dir: PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:          # pragma: no cover - not POSIX
            return self
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._holder(fd)
                os.close(fd)
                raise RunFolderBusy(f"run directory {self.run_dir} is in use by process {holder} "
                                    f"(it holds {self.path}): wait for it to end, or use another --out") from None
            try:                     # the file we locked may have been removed by its last owner
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        import time
        for _ in range(20):          # the holder writes its pid just after taking the lock
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if text.isdigit():
                return text
            time.sleep(0.05)
        return "(unknown pid)"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.unlink(self.path)  # while still holding it: a waiting process retries on the new file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()




def run_wirings(run_dir: PathLike) -> list[str]:
    """The wirings a run folder holds: ``""`` for a model's only wiring (``wiring.graphml``,
    ``history.pt``, ``initial.graphml``), else each NAME of ``wiring-NAME.graphml``,
    ``history-NAME.pt`` or ``initial-NAME.graphml``, in natural order (stage 2 before 10).
    """
    run_dir = Path(run_dir)
    names = set()
    for stem, ext in WIRING_FILES:
        if (run_dir / f"{stem}{ext}").is_file():
            names.add("")
        names.update(p.name[len(stem) + 1:-len(ext)] for p in run_dir.glob(f"{stem}-*{ext}") if p.is_file())
    return sorted(names, key=_natural_key)


@dataclass
class RunData:
    """What a run folder holds; a file that is absent gives ``{}``, ``[]`` or None."""

    path: Path
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    history: WiringHistory | None = None
    final: Wiring | None = None
    initial: Wiring | None = None
    #: every wiring the folder holds (:func:`run_wirings`) and the one read (None: none chosen)
    wirings: list[str] = field(default_factory=list)
    wiring_name: str | None = None

    def wiring_file(self, stem: str, ext: str) -> str:
        """The chosen wiring's file name: ``history.pt`` for a model's only wiring,
        ``history-NAME.pt`` for wiring NAME (``stem`` "history", ``ext`` ".pt")."""
        return wiring_file(stem, ext, self.wiring_name or "")


#: the help of the ``--wiring NAME`` option of the tools that read a run's wiring
WIRING_OPTION_HELP = ("for a run of a model with several learned graphs (MobileNetV1-DNW: one per stage), "
                      "the one to use: stages-0-graph, stages-1-graph, ... (the NAME of wiring-NAME.graphml)")


def unchosen_wiring(run: RunData) -> str | None:
    """A one-line message when ``run`` holds several wirings and none was chosen, else None."""
    if run.wiring_name is None and len(run.wirings) > 1:
        return (f"run directory {run.path} holds {len(run.wirings)} wirings ({', '.join(run.wirings)}): "
                f"choose one with --wiring NAME")
    return None


def load_run(run_dir: PathLike, wiring: str | None = None) -> RunData:
    """Read a run folder: ``config.yaml`` (``yaml.safe_load``), ``metrics.jsonl``,
    ``history.pt``, ``wiring.graphml`` (final) and ``initial.graphml``.

    For a model with several wirings, ``wiring`` names the one whose files to read
    (``history-NAME.pt``...; :func:`run_wirings` lists them). Without it the only
    wiring is read, and with several none is (``history``, ``final`` and ``initial``
    stay None, ``wirings`` says what there is).

    A missing folder, one with none of those files, or an unknown ``wiring`` is a
    :class:`WiringFileError`.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise WiringFileError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise WiringFileError(f"run directory {run_dir} is not a directory")
    names = run_wirings(run_dir)
    present = [name for name in RUN_FILES if (run_dir / name).is_file()]
    if not present and not names:
        raise WiringFileError(f"{run_dir} is not a run directory: expected at least one of "
                              f"{', '.join(RUN_FILES)}")
    if wiring is not None and wiring not in names:
        held = ", ".join(n or "(the only one)" for n in names) or "none"
        raise WiringFileError(f"run directory {run_dir} has no wiring {wiring!r}; it holds: {held}")
    chosen = wiring if wiring is not None else ("" if "" in names else names[0] if len(names) == 1 else None)
    run = RunData(run_dir, wirings=names, wiring_name=chosen)
    if CONFIG_FILE in present:
        import yaml
        try:
            config = yaml.safe_load(read_text(run_dir / CONFIG_FILE))
        except NotText as err:
            raise WiringFileError(f"config file {err}") from None
        except yaml.YAMLError as err:
            raise WiringFileError(f"config file {run_dir / CONFIG_FILE} is not valid YAML: "
                                  f"{' '.join(str(err).split())}") from None
        if config is not None and not isinstance(config, dict):
            raise WiringFileError(f"config file {run_dir / CONFIG_FILE} is not a mapping")
        run.config = config or {}
    if METRICS_FILE in present:
        run.metrics = load_metrics(run_dir / METRICS_FILE)
    if chosen is not None:
        final, history, initial = (run_dir / run.wiring_file(stem, ext) for stem, ext in WIRING_FILES)
        if history.is_file():
            run.history = WiringHistory.load(history)
        if final.is_file():
            run.final = read_graphml(final)
        if initial.is_file():
            run.initial = read_graphml(initial)
    return run
