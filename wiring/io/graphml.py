"""Wiring files: GraphML (read and written) and edge lists (written).

Contract: :func:`write_graphml` writes every attribute as a plain scalar, so any GraphML
reader opens the file, atomically (a temporary file in the same folder, then
``os.replace``); :func:`read_graphml` checks the size before parsing and the node and edge
counts before building anything; :func:`read_wiring_file` also reads GraphML that NetworkX
wrote (no levels, or cycles: a dynamic wiring). :func:`write_edgelist`: ``source target
weight`` per line (plus ``real`` as 0/1 when the wiring has a mask) after a ``#`` header
with the attributes.
"""
from __future__ import annotations

import io as _io

import networkx as nx

from wiring.files import atomic_write
from wiring.graph import GraphError, Wiring
from wiring.io.convert import (
    PathLike,
    WiringFileError,
    check_wiring,
    existing_file,
    from_networkx,
    plain_attrs,
    to_networkx,
)


def _graphml_graph(w: Wiring) -> nx.DiGraph:
    G = to_networkx(w)
    G.graph.clear()
    for key, value in plain_attrs(w.attrs, strict=True).items():
        if value is not None and key not in ("node_default", "edge_default"):
            G.graph[key] = value
    return G


def write_graphml(w: Wiring, path: PathLike) -> None:
    """Write the wiring as GraphML, atomically. Node data ``level`` (long) and
    ``role`` (string); edge data ``signed_weight`` (double; no ``weight``, which
    NetworkX would read by default: see :mod:`wiring.io.convert`) and ``real``
    (boolean) when the wiring has a mask; graph data = ``w.attrs`` without None values (a
    non-scalar attribute is a :class:`GraphError`).

    >>> import tempfile, torch
    >>> from wiring.graph import Wiring
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
    attributes are interpreted as in :func:`from_networkx`: an edge's ``signed_weight``,
    else its ``weight`` as older files of this project have it).

    The file size is checked before parsing and the node and edge counts before a
    graph is built; entity declarations are refused. Raises
    :class:`WiringFileError` naming the file for any problem.
    """
    path = existing_file(path, "GraphML file")
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
    >>> from pathlib import Path
    >>> import networkx as nx
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

    >>> import tempfile, torch
    >>> from wiring.graph import Wiring
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
    check_wiring(w)
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
