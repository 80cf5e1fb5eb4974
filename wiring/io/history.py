"""The wiring's history during training: :class:`WiringHistory`.

Contract: snapshots of the real edges (about 6 bytes per real edge per snapshot), saved as
a ``.pt`` of tensors and plain types only (``torch.load(..., weights_only=True)`` reads it);
:meth:`WiringHistory.frame` rebuilds the wiring of any snapshot.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Iterator


from wiring.files import atomic_write, load_refusal
from wiring.graph import GraphError, Wiring
from wiring.io.convert import PathLike, WiringFileError, existing_file, plain_attrs
from wiring.lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

_F16_MAX = 65504.0      # weights are stored as float16, clamped to its range


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
        self.attrs = plain_attrs(attrs, strict=True)
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
        path = existing_file(path, "history file")
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
            if not isinstance(state.get(key), torch.Tensor):
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
