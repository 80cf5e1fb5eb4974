"""The module that owns one graph's wiring: what models need from the engine.

:class:`WiredGraph` holds a :class:`~wiring.graph.NeuralGraph`'s candidate
``edge_index`` (buffer), one learned weight per candidate (parameter), the budget
``k`` and a :mod:`~wiring.modes` mode. Each forward a model asks it once for the
:meth:`~WiredGraph.select`-ion of real edges, then aggregates node features with
it, either level by level (static graphs, :meth:`~WiredGraph.run_static`) or over
all nodes at once (dynamic graphs, :meth:`~WiredGraph.aggregate`). Gradients
follow :func:`wiring.ops.propagate`. ``init`` picks the candidates' initial
distribution (:data:`wiring.presets.INITS`; the models pass ``"authors"``).

Example, a 5-node static graph trained in a plain loop::

    >>> from wiring.graph import static_graph
    >>> layer = WiredGraph(static_graph([2, 2, 1]), edges=3, seed=0)
    >>> x0 = torch.randn(2, 6)                       # 2 input nodes, 6 features
    >>> states = layer.run_static(x0, lambda level, inp: torch.relu(inp))
    >>> [tuple(s.shape) for s in states]
    [(2, 6), (2, 6), (1, 6)]
    >>> int(layer.real_mask().sum()), layer.density
    (3, 0.375)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from wiring.graph import OUTPUT, Block, GraphError, NeuralGraph, Wiring
from wiring.modes import Mode, Selection, clear_optimizer_state, make_mode
from wiring.ops import propagate
from wiring.presets import authors_bound, init_std, initial_weights
from wiring.topk import topk_mask

NodeOp = Callable[[int, Tensor], Tensor]


class WiredGraph(nn.Module):
    """Learned wiring of one graph: candidate weights, real-edge selection, aggregation."""

    def __init__(self, graph: NeuralGraph, edges: int | None, mode: str | Mode = "dnw", preset: str = "random_k",
                 seed: int = 0, preset_options: dict | None = None, mode_options: dict | None = None,
                 init: str = "kaiming", candidate_grad_every: int = 1) -> None:
        """``edges``: the budget k (None: every candidate), checked once, by the preset that
        draws the initial weights (:func:`wiring.presets.initial_weights`).
        ``candidate_grad_every = N > 1``
        gives the hallucinated edges a weight gradient only on every N-th training forward
        (real edges get theirs every step): an opt-in speed knob; 1 is exact DNW."""
        super().__init__()
        self.graph = graph
        if isinstance(candidate_grad_every, bool) or not isinstance(candidate_grad_every, int) \
                or candidate_grad_every < 1:
            raise GraphError(f"candidate_grad_every must be an integer of at least 1, got {candidate_grad_every!r}")
        self.k = graph.num_candidates if edges is None else edges
        weight = initial_weights(preset, graph, self.k, seed, init=init, **(preset_options or {}))   # checks k
        self.mode = mode if isinstance(mode, Mode) else make_mode(mode, self.k, **(mode_options or {}))
        self.preset, self.seed, self.init = preset, seed, init
        self.weight = nn.Parameter(weight)
        # Structure buffers follow the module's device but are not saved: the graph
        # rebuilds them. Checkpoints hold the weights and the frozen real set.
        self.register_buffer("edge_index", graph.edge_index.clone(), persistent=False)
        self.register_buffer("level", graph.level.clone(), persistent=False)
        self.register_buffer("role", graph.role.clone(), persistent=False)
        self.register_buffer("frozen_mask", torch.zeros(graph.num_candidates, dtype=torch.bool))
        self.freeze_top_k()
        self._node_ptr = graph.level_ptr
        self._cand_ptr = graph.candidate_level_ptr if graph.static else [0, graph.num_candidates]
        self._level_blocks: dict[int, tuple[Block, ...]] = {}
        if graph.static:
            self._index_levels()
        #: hallucinated-edge gradients only every N training forwards (1 = exact DNW)
        self.candidate_grad_every = candidate_grad_every
        self._training_forwards = 0
        self._grow_score: Tensor | None = None      # a rewiring mode's, between backward and optimizer step

    def _index_levels(self) -> None:
        """Each target level's candidates in level-local ids (targets from 0, candidates
        from 0), computed once so no forward translates indices again."""
        by_level = {int(self.graph.level[b.target_start]): b for b in self.graph.blocks}
        for level in range(1, len(self._node_ptr) - 1):
            c0, c1 = self._cand_ptr[level], self._cand_ptr[level + 1]
            t0 = self._node_ptr[level]
            ei = self.graph.edge_index[:, c0:c1]
            self.register_buffer(f"_level_edges_{level}", torch.stack([ei[0], ei[1] - t0]), persistent=False)
            b = by_level.get(level)
            self._level_blocks[level] = () if b is None else (
                Block(b.target_start - t0, b.target_end - t0, b.source_start, b.source_end,
                      b.cand_start - c0, b.cand_end - c0, b.complete),)

    # ------------------------------------------------------------------ wiring state
    @property
    def num_candidates(self) -> int:
        return self.graph.num_candidates

    @property
    def density(self) -> float:
        return self.k / self.num_candidates

    def freeze(self, mask: Tensor) -> None:
        """Store ``mask`` as the frozen real set (used by fixed / fine_tune / lottery, and by
        rigl / set, whose :meth:`rewire` replaces it)."""
        if mask.dtype != torch.bool or mask.shape != (self.num_candidates,):
            raise GraphError(f"a frozen real set must be a bool tensor of shape [{self.num_candidates}]")
        if self.mode.uses_frozen and int(mask.sum()) != self.k:
            raise GraphError(f"the frozen real set has {int(mask.sum())} edges, expected k={self.k}")
        self.frozen_mask.copy_(mask)

    @torch.no_grad()
    def freeze_top_k(self, weight: Tensor | None = None) -> None:
        """Freeze the top-k of ``weight`` (default: the layer's own weights) as the real set:
        the initial wiring, or a trained run's for ``fine_tune`` / ``lottery``."""
        self.freeze(topk_mask(self.weight if weight is None else weight, self.k))

    def select(self) -> Selection:
        """The real edges for this forward (call once per forward).

        With ``candidate_grad_every = N > 1`` a mode that gives every candidate a
        gradient does so only on every N-th training forward; a rewiring mode (``rigl``)
        only on the forwards of its update steps (:meth:`wiring.modes.DynamicSparse.update_due`)."""
        selection = self.mode.select(self.weight, self.frozen_mask, self.training)
        if self.training and torch.is_grad_enabled():
            self._training_forwards += 1
            t = self._training_forwards
            due = self.mode.update_due(t) if self.mode.updates else (t - 1) % self.candidate_grad_every == 0
            if selection.grad_all and not due:
                selection = Selection(selection.mask, False)
        return selection

    # ------------------------------------------------------------------ rewiring (rigl, set)
    @torch.no_grad()
    def after_backward(self) -> None:
        """For a rewiring mode whose update is due after the training step just run (the
        ``t``-th training forward): keep its growth scores (RigL: every candidate's ``|g|``; SET:
        seeded random numbers) and leave the optimizer the real edges' gradient only. A no-op
        otherwise. Call between ``loss.backward()`` and ``optimizer.step()``."""
        self._grow_score = None
        t = self._training_forwards
        if not (self.mode.updates and self.mode.update_due(t)):
            return
        grad = self.weight.grad
        self._grow_score = self.mode.grow_score(grad, self.weight.shape, t, salt=self.seed).to(self.weight.device)
        if grad is not None:
            grad.masked_fill_(~self.frozen_mask, 0.0)

    @torch.no_grad()
    def rewire(self, optimizer: torch.optim.Optimizer | None = None) -> int:
        """The update :meth:`after_backward` prepared, after the optimizer step: drop the real
        edges of smallest ``|w|``, grow as many by the kept scores (:func:`wiring.modes.drop_and_grow`);
        a grown edge's weight starts at 0 (``rigl``) or drawn like the initial weights (``set``)
        and its optimizer state at 0. Returns the edges grown (0 when no update was due)."""
        score, self._grow_score = self._grow_score, None
        if score is None:
            return 0
        t = self._training_forwards
        new, grown = self.mode.rewire(self.frozen_mask, self.weight, score, t)
        count = int(grown.sum())
        if count:
            if self.mode.grow_init == "random":
                gen = self.mode.generator(t, salt=self.seed + 1)
                values = (torch.rand(count, generator=gen) * 2.0 - 1.0) * authors_bound(self.graph) \
                    if self.init == "authors" else torch.randn(count, generator=gen) * init_std(self.graph)
                self.weight[grown] = values.to(self.weight)
            else:
                self.weight[grown] = 0.0
            clear_optimizer_state(optimizer, self.weight, grown)
        self.freeze(new)
        return count

    @torch.no_grad()
    def real_mask(self) -> Tensor:
        """The real edges at evaluation: exactly k of them (all for ``complete``)."""
        return self.mode.select(self.weight, self.frozen_mask, False).mask.clone()

    @torch.no_grad()
    def check_invariants(self) -> None:
        """Raise :class:`GraphError` unless the wiring is sound: finite weights, the
        evaluation real set has exactly k edges (all for ``complete``), candidate indices
        in range and, for static graphs, every real edge going to a higher level."""
        if not bool(torch.isfinite(self.weight).all()):
            bad = int((~torch.isfinite(self.weight)).sum())
            raise GraphError(f"{bad} edge weights are not finite")
        mask = self.real_mask()
        expected = self.num_candidates if self.mode.all_real else self.k
        if int(mask.sum()) != expected:
            raise GraphError(f"{int(mask.sum())} real edges, expected {expected}")
        ei = self.edge_index[:, mask]
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= self.graph.num_nodes):
            raise GraphError("a real edge refers to a node out of range")
        if self.graph.static and bool((self.level[ei[0]] >= self.level[ei[1]]).any()):
            raise GraphError("a real edge of a static graph does not go to a higher level: the wiring has a cycle")

    @torch.no_grad()
    def live_nodes(self, outputs: Tensor | None = None) -> Tensor:
        """Bool ``[num_nodes]``: the nodes with a path along the evaluation-time real
        edges to a node of ``outputs`` (default: the output-role nodes; outputs reach
        themselves).

        >>> from wiring.graph import static_graph
        >>> layer = WiredGraph(static_graph([2, 2, 1]), edges=8)       # every candidate real
        >>> layer.live_nodes().tolist()
        [True, True, True, True, True]
        >>> layer.live_nodes(torch.tensor([False, False, True, False, False])).tolist()
        [True, True, True, False, False]
        """
        graph = self.graph
        live = (graph.role == OUTPUT) if outputs is None else outputs.to(torch.bool).cpu().clone()
        if live.shape != (graph.num_nodes,):
            raise GraphError(f"outputs must be a bool mask of {graph.num_nodes} nodes")
        real = self.real_mask().cpu()
        src, dst = self.edge_index.cpu()[:, real]
        if graph.static:
            target_level = graph.level[dst]
            for level in range(graph.num_levels - 1, 0, -1):      # sources lie on lower levels
                pick = (target_level == level) & live[dst]
                live[src[pick]] = True
            return live
        while True:                                               # dynamic: fixed point
            grown = live.clone()
            grown[src[live[dst]]] = True
            if torch.equal(grown, live):
                return live
            live = grown

    def level_candidates(self, level: int) -> tuple[Tensor, slice, slice, tuple[Block, ...]]:
        """A static graph's candidates into ``level``: their ``edge_index`` with sources as
        node ids and targets counted from the level's first node, their slice of the
        candidate list, the level's slice of the nodes, and their blocks (level-local)."""
        c0, c1 = self._cand_ptr[level], self._cand_ptr[level + 1]
        t0, t1 = self._node_ptr[level], self._node_ptr[level + 1]
        return getattr(self, f"_level_edges_{level}"), slice(c0, c1), slice(t0, t1), self._level_blocks[level]

    # ------------------------------------------------------------------ aggregation
    def aggregate(self, x: Tensor, selection: Selection, level: int | None = None) -> Tensor:
        """Inputs ``I_v = sum over real (u, v) of w_uv x[u]``.

        Static graphs: the targets of ``level`` from the states of all lower
        levels, ``x`` ``[first node of level, F]``. Dynamic graphs (``level`` None):
        all nodes from all nodes, ``x`` ``[N, F]``.
        """
        if level is None:
            if self.graph.static:
                raise GraphError("a static graph aggregates level by level: pass level=")
            n = self.graph.num_nodes
            return propagate(x, self.weight, self.edge_index, selection.mask, num_targets=n,
                             blocks=self.graph.blocks, grad_all=selection.grad_all)
        c0, c1 = self._cand_ptr[level], self._cand_ptr[level + 1]
        t0, t1 = self._node_ptr[level], self._node_ptr[level + 1]
        return propagate(x, self.weight[c0:c1], getattr(self, f"_level_edges_{level}"), selection.mask[c0:c1],
                         num_targets=t1 - t0, blocks=self._level_blocks[level], grad_all=selection.grad_all)

    def run_static(self, inputs: Tensor, node_op: NodeOp, selection: Selection | None = None) -> list[Tensor]:
        """Run a static graph level by level; returns the states of every level.

        ``inputs`` are the level-0 states ``[n_0, F]``; ``node_op(level, I)`` maps
        a level's inputs to its states (the model decides what the output level does).
        """
        if not self.graph.static:
            raise GraphError("run_static needs a static graph; dynamic graphs use aggregate()")
        if inputs.size(0) != self._node_ptr[1]:
            raise GraphError(f"expected {self._node_ptr[1]} input node rows, got {inputs.size(0)}")
        selection = self.select() if selection is None else selection
        states = [inputs]
        for level in range(1, len(self._node_ptr) - 1):
            prefix = states[0] if level == 1 else torch.cat(states)
            states.append(node_op(level, self.aggregate(prefix, selection, level)))
        return states

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def wiring(self, all_candidates: bool = False, **attrs) -> Wiring:
        """The current wiring as plain data (real edges, or all candidates with ``real``)."""
        mask = self.real_mask().cpu()
        weight = self.weight.detach().cpu()
        edge_index = self.edge_index.cpu()
        meta = {"k": self.k, "density": self.density, "candidates": self.num_candidates,
                "preset": self.preset, "mode": self.mode.name, "seed": self.seed,
                "static": self.graph.static, **attrs}
        if all_candidates:
            return Wiring(edge_index.clone(), weight.clone(), self.level.cpu().clone(),
                          self.role.cpu().clone(), mask, meta)
        return Wiring(edge_index[:, mask], weight[mask], self.level.cpu().clone(), self.role.cpu().clone(),
                      None, meta)

    def extra_repr(self) -> str:
        return (f"{self.graph.describe()}, edges={self.k} (density {self.density:.4f}), "
                f"mode={self.mode.name}, preset={self.preset}")
