"""The wiring bookkeeping of a training run, beside the loop: what is learned, what changed, what must hold.

Contract: a :class:`WiringMonitor` finds the learned real sets of any model (the
:class:`~wiring.layer.WiredGraph` submodules, :func:`find_wirings`, and the layers
:func:`wiring.sparsify.sparsify` made sparse) and

* :meth:`~WiringMonitor.epoch_swapped`: the edges real now that were not at the previous
  call (the epoch's ``swapped``);
* :meth:`~WiringMonitor.check_invariants`: every wiring's invariants (exactly k real edges,
  indices in range, static wirings acyclic, finite weights) and the sparse layers';
* :meth:`~WiringMonitor.check_same_wiring`: every rank holds the same real edges (a hash
  all-gathered; a no-op outside DDP);
* :meth:`~WiringMonitor.after_backward` / :meth:`~WiringMonitor.after_step`: the rewiring
  modes' updates (``rigl``, ``set``: :class:`wiring.modes.DynamicSparse`), the growth scores
  taken between ``loss.backward()`` and ``optimizer.step()``, the drop and growth after it;
  a no-op for every other mode;
* :meth:`~WiringMonitor.state_dict` / :meth:`~WiringMonitor.load_state_dict`: what a resumed
  run needs to go on bit-identically (each wiring's count of training forwards, for
  ``--candidate-grad-every`` and the rewiring modes' update steps; inside an epoch, the real
  sets of the epoch's start). A rewiring mode's real set itself is each layer's
  ``frozen_mask`` buffer, in the model's state dict; its random draws are seeded by the step.

A broken invariant is a :class:`WiringProblem` whose message names the wiring and the step;
the trainer stops on it. The monitor knows nothing of the loop, the data or the optimizer.

>>> import torch
>>> from torch import nn
>>> from wiring.graph import static_graph
>>> from wiring.layer import WiredGraph
>>> model = nn.Sequential(WiredGraph(static_graph([2, 2, 1]), edges=3))
>>> monitor = WiringMonitor(model)
>>> edge_budget(model), list(monitor.wirings)
((3, 8), ['0'])
>>> monitor.epoch_swapped()          # nothing changed since the monitor started
0
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from wiring.graph import GraphError
from wiring.layer import WiredGraph
from wiring.sparsify import SparseBudget, budget_of, check_sparse, real_masks
from wiring.train.distributed import same_on_all_ranks, wiring_hash


class WiringProblem(ValueError):
    """A learned wiring broke an invariant, or the ranks hold different ones."""


def find_wirings(model: nn.Module) -> dict[str, WiredGraph]:
    """The learned wirings of ``model`` by module name (``""`` if it is one)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, WiredGraph)}


def real_sets(model: nn.Module) -> dict[str, Tensor]:
    """Every learned real set of ``model``: its wirings' real edges and, for models made
    sparse with :func:`wiring.sparsify.sparsify`, each layer's real weights."""
    out = {name: w.real_mask() for name, w in find_wirings(model).items()}
    out.update({f"sparse:{name}": mask for name, mask in real_masks(model).items()})
    return out


def edge_budget(model: nn.Module) -> tuple[int, int]:
    """``(k, candidates)`` over the model's wirings and sparsified layers."""
    wirings = find_wirings(model).values()
    k = sum(w.k for w in wirings)
    candidates = sum(w.num_candidates for w in wirings)
    budget = budget_of(model)
    if budget is not None:
        k, candidates = k + budget.k, candidates + budget.total
    return k, candidates


def swapped(previous: dict[str, Tensor], now: dict[str, Tensor]) -> int:
    """Edges real in ``now`` that were not in ``previous``."""
    return sum(int((now[n] & ~previous[n]).sum()) for n in now)


class WiringMonitor:
    """The learned real sets of ``model``: changes, invariants, agreement across ranks, state."""

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        self.wirings = find_wirings(model)
        self.last_masks = real_sets(model)      # the real sets at the previous epoch_swapped()
        budget = budget_of(model)
        #: the sparsified layers' budget when its mode rewires (rigl, set), else None
        self.rewiring_budget: SparseBudget | None = budget if budget is not None and budget.rule is not None else None
        self.rewiring = [w for w in self.wirings.values() if w.mode.updates]

    def after_backward(self, step: int) -> None:
        """Between ``loss.backward()`` and ``optimizer.step()`` of training step ``step`` (from 1):
        the rewiring modes whose update is due keep their growth scores and leave the optimizer
        the real edges' gradient only."""
        for layer in self.rewiring:
            layer.after_backward()
        if self.rewiring_budget is not None:
            self.rewiring_budget.after_backward(step)

    def after_step(self, step: int, optimizer: Any = None) -> int:
        """After ``optimizer.step()`` of training step ``step``: the due updates (drop, grow, the
        grown edges' optimizer state cleared); returns the edges grown."""
        grown = sum(layer.rewire(optimizer) for layer in self.rewiring)
        if self.rewiring_budget is not None:
            grown += self.rewiring_budget.rewire(step, optimizer)
        return grown

    def real_masks(self) -> dict[str, Tensor]:
        return real_sets(self.model)

    def epoch_swapped(self) -> int:
        """Edges swapped in since the previous call (or since the monitor started)."""
        masks = self.real_masks()
        count = swapped(self.last_masks, masks)
        self.last_masks = masks
        return count

    def check_invariants(self, step: int) -> None:
        """Every wiring's invariants (:meth:`WiredGraph.check_invariants`) and, for sparsified
        layers, :func:`wiring.sparsify.check_sparse`; a :class:`WiringProblem` names the step."""
        for name, layer in self.wirings.items():
            try:
                layer.check_invariants()
            except GraphError as err:
                raise WiringProblem(f"wiring {name or 'graph'} at step {step}: {err}") from None
        try:
            check_sparse(self.model)
        except ValueError as err:
            raise WiringProblem(f"sparse layers at step {step}: {err}") from None

    def check_same_wiring(self, step: int) -> None:
        """A :class:`WiringProblem` unless every rank holds the same real edges (a hash all-gathered)."""
        for name, mask in self.real_masks().items():
            if not same_on_all_ranks(wiring_hash(mask.flatten()), self.device):
                raise WiringProblem(f"the ranks hold different real edges of wiring {name or 'graph'} "
                                    f"at step {step}")

    def state_dict(self, inside_epoch: bool) -> dict[str, Any]:
        """Each wiring's training forwards (``--candidate-grad-every`` counts them) and, for a
        run stopped inside an epoch, the real sets of the epoch's start (``last_masks``)."""
        state: dict[str, Any] = {"training_forwards": {name: int(w._training_forwards)
                                                       for name, w in self.wirings.items()}}
        if inside_epoch:
            state["last_masks"] = {name: mask.cpu() for name, mask in self.last_masks.items()}
        return state

    def load_state_dict(self, state: dict[str, Any], inside_epoch: bool) -> None:
        """The counterpart of :meth:`state_dict` (after the model's weights are loaded)."""
        forwards = state.get("training_forwards") or {}
        for name, layer in self.wirings.items():
            if name in forwards:
                layer._training_forwards = int(forwards[name])
        if self.rewiring_budget is not None:
            self.rewiring_budget.steps = int(state.get("step") or 0)
        self.last_masks = self.real_masks()
        saved = state.get("last_masks")
        if inside_epoch and isinstance(saved, dict) and saved.keys() == self.last_masks.keys():
            self.last_masks = {name: saved[name].to(mask.device).bool() for name, mask in self.last_masks.items()}
