"""Wirings in and out: NetworkX, PyG, GraphML, edge lists, histories, run folders (graph tools floor).

Pure functions of a :class:`~wiring.graph.Wiring`; nothing here knows of models,
training state or the command line, so the viz can import it freely.

One module per format, all re-exported here (``wiring.io.read_graphml`` ...):
:mod:`~wiring.io.convert` (NetworkX, PyG), :mod:`~wiring.io.graphml` (GraphML, edge lists),
:mod:`~wiring.io.history` (:class:`WiringHistory`) and :mod:`~wiring.io.rundir` (every
run-folder file name, the lock, :func:`load_run`).

Contract
--------
* :func:`to_networkx` / :func:`from_networkx`: a ``nx.DiGraph`` with nodes
  ``0..N-1`` carrying ``level`` (int) and ``role`` (``"input"``, ``"hidden"`` or
  ``"output"``), edges carrying ``signed_weight`` (float; no ``weight``, so NetworkX's
  weighted defaults count each edge as 1) and, when the wiring has a ``real`` mask,
  ``real`` (bool); graph attributes are ``w.attrs``. :func:`from_networkx` reads
  ``weight`` where ``signed_weight`` is absent (older files) and also reads graphs
  that lack those attributes (see there)
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

from wiring.files import atomic_path, atomic_write
from wiring.graph import GraphError
from wiring.io.convert import WiringFileError, from_networkx, from_pyg, node_order, to_networkx, to_pyg
from wiring.io.graphml import read_graphml, read_wiring_file, write_edgelist, write_graphml
from wiring.io.history import WiringHistory
from wiring.io.rundir import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RUN_FILES,
    RUNS_ROOT,
    SPARSE_FILE,
    TB_DIR,
    WIRING_OPTION_HELP,
    RunData,
    RunFolderBusy,
    RunLock,
    load_metrics,
    find_run_folder,
    load_run,
    run_files,
    run_folder_name,
    run_paths,
    run_wirings,
    temp_files,
    unchosen_wiring,
    wiring_file,
    wiring_key,
)

__all__ = [
    "WiringFileError",
    "to_networkx",
    "from_networkx",
    "node_order",
    "to_pyg",
    "from_pyg",
    "write_graphml",
    "read_graphml",
    "read_wiring_file",
    "write_edgelist",
    "WiringHistory",
    "load_metrics",
    "RunData",
    "load_run",
    "RUN_FILES",
    "atomic_path",
    "atomic_write",
    "GraphError",
    "CONFIG_FILE",
    "METRICS_FILE",
    "CHECKPOINT_FILE",
    "BEST_FILE",
    "SPARSE_FILE",
    "LOCK_FILE",
    "TB_DIR",
    "wiring_key",
    "wiring_file",
    "run_files",
    "run_paths",
    "RUNS_ROOT",
    "run_folder_name",
    "find_run_folder",
    "temp_files",
    "RunLock",
    "RunFolderBusy",
    "WIRING_OPTION_HELP",
    "run_wirings",
    "unchosen_wiring",
]
