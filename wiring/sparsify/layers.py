"""The DNW layers for any model: :func:`sparsify` swaps ``nn.Conv2d`` / ``nn.Linear`` for them.

Contract: a :class:`DNWConv2d` / :class:`DNWLinear` computes ``F.conv2d(x, w * mask)`` (or
``F.linear``) with the real set the top-k of ``|w|`` of its :class:`SparseBudget` (one budget
over all layers, ``scope="global"``, or one per layer), recomputed every training step;
the gradient to ``weight`` follows the mode (:data:`SPARSE_MODES`, table in
:mod:`wiring.sparsify`). :func:`budget_of`, :func:`real_masks`, :func:`num_real` and
:func:`check_sparse` read a sparsified model's state without changing it.

>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> net = sparsify(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), edges=5)
>>> num_real(net), real_masks(net)["1"].sum().item()
(5, 5)
"""
from __future__ import annotations

import fnmatch
import math
from collections import OrderedDict
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wiring.graph import apportion
from wiring.modes import SPARSE_MODES, clear_optimizer_state, make_mode, mode_class
from wiring.ops import topk_mask

SCOPES = ("global", "layer")

Skip = str | Callable[[str, nn.Module], bool]


class _StraightThrough(torch.autograd.Function):
    """``weight * mask`` forward; the gradient goes to every entry (identity)."""

    @staticmethod
    def forward(ctx, weight: Tensor, mask: Tensor) -> Tensor:
        return torch.where(mask, weight, 0.0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class SparseBudget:
    """The real-weight budget shared by the layers of one :func:`sparsify` call.

    Holds the layers (in module order), the total ``k``, the ``scope`` and the
    ``mode``; :meth:`masks` returns every layer's boolean real mask, computed once
    per version of the weights (see the module docstring) and cached.
    """

    def __init__(self, layers: "OrderedDict[str, nn.Module]", k: int, scope: str, mode: str,
                 mode_options: dict | None = None) -> None:
        self.names = list(layers)
        self.layers = list(layers.values())
        self.k, self.scope, self.mode = k, scope, mode
        self.sizes = [m.weight.numel() for m in self.layers]
        self.total = sum(self.sizes)
        self.layer_k = apportion(k, self.sizes, self.sizes) if scope == "layer" else None
        self._key: tuple | None = None
        self._masks: list[Tensor] | None = None
        #: how many times the top-k has been computed (once per weight update)
        self.recomputes = 0
        #: a rewiring mode (rigl, set): its rule object, the training steps taken (the training
        #: loop's wiring monitor sets it) and the growth scores between backward and optimizer step
        self.rule = make_mode(mode, k, **(mode_options or {})) if mode_class(mode).updates else None
        self.steps = 0
        self._grow_scores: list[Tensor] | None = None

    def __repr__(self) -> str:
        return (f"SparseBudget(k={self.k}, total={self.total}, density={self.k / self.total:.4f}, "
                f"scope={self.scope!r}, mode={self.mode!r}, layers={len(self.layers)})")

    def _version_key(self) -> tuple | None:
        key = []
        for m in self.layers:
            w = m.weight
            try:
                key.append((id(w), w.data_ptr(), w._version, w.device))
            except RuntimeError:     # inference tensors have no version counter
                return None
        return tuple(key)

    def invalidate(self) -> None:
        """Forget the cached masks (only needed after changing weights in a way that
        bypasses the version counter, e.g. through ``.data``)."""
        self._key = self._masks = None

    def masks(self) -> list[Tensor]:
        """Every layer's real mask (bool, the weight's shape), in layer order."""
        if mode_class(self.mode).uses_frozen:
            return [m.frozen_mask for m in self.layers]
        key = self._version_key()
        if key is not None and key == self._key and self._masks is not None:
            return self._masks
        masks = self.compute()
        self._key, self._masks = key, masks
        return masks

    @torch.no_grad()
    def compute(self) -> list[Tensor]:
        """The top-k masks of the current weights (no caching)."""
        self.recomputes += 1
        weights = [m.weight.detach() for m in self.layers]
        if self.scope == "layer":
            return [topk_mask(w.flatten(), k).view_as(w) if k > 0 else torch.zeros_like(w, dtype=torch.bool)
                    for w, k in zip(weights, self.layer_k)]
        device = weights[0].device
        flat = torch.cat([w.flatten().to(device=device, dtype=torch.float32) for w in weights])
        mask = topk_mask(flat, self.k)
        return [part.view_as(w).to(w.device) for part, w in zip(torch.split(mask, self.sizes), weights)]

    def dense_gradient(self) -> bool:
        """Whether the next training step gives every entry a gradient: always for ``dnw``, on a
        rewiring mode's update steps for ``rigl``, never otherwise."""
        if not mode_class(self.mode).grad_all:
            return False
        return self.rule is None or self.rule.update_due(self.steps + 1)

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        """A rewiring mode's growth scores when its update is due after training step ``step``
        (RigL: ``|g|`` of every entry; SET: seeded random numbers), and the optimizer left the
        real entries' gradient only (see :meth:`wiring.layer.WiredGraph.after_backward`)."""
        self._grow_scores = None
        if self.rule is None or not self.rule.update_due(step):
            return
        self._grow_scores = []
        for i, m in enumerate(self.layers):
            grad = m.weight.grad
            self._grow_scores.append(self.rule.grow_score(grad, m.weight.shape, step, salt=i).to(m.weight.device))
            if grad is not None:
                grad.masked_fill_(~m.frozen_mask, 0.0)

    @torch.no_grad()
    def rewire(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> int:
        """The update :meth:`after_backward` prepared (after the optimizer step): per layer
        (``scope="layer"``, each keeping its k) or over all layers at once (``"global"``); grown
        entries start at 0 (rigl) or ``U(+-1/sqrt(fan-in))``, PyTorch's default init (set), with
        no optimizer state. Sets :attr:`steps`; returns the entries grown."""
        self.steps = step
        scores, self._grow_scores = self._grow_scores, None
        if scores is None:
            return 0
        masks = [m.frozen_mask.flatten() for m in self.layers]
        weights = [m.weight.detach().flatten() for m in self.layers]
        flat_scores = [s.flatten() for s in scores]
        if self.scope == "layer":
            results = [self.rule.rewire(r, w, g, step, k=k) for r, w, g, k in zip(masks, weights, flat_scores, self.layer_k)]
        else:
            device = weights[0].device
            new, grown = self.rule.rewire(torch.cat([r.to(device) for r in masks]),
                                          torch.cat([w.to(device, torch.float32) for w in weights]),
                                          torch.cat([g.to(device) for g in flat_scores]), step, k=self.k)
            results = list(zip(torch.split(new, self.sizes), torch.split(grown, self.sizes)))
        count = 0
        for i, (m, (new, grown)) in enumerate(zip(self.layers, results)):
            new, grown = new.view_as(m.weight).to(m.weight.device), grown.view_as(m.weight).to(m.weight.device)
            n = int(grown.sum())
            if n:
                if self.rule.grow_init == "random":
                    bound = 1.0 / math.sqrt(max(m.weight[0].numel(), 1))
                    gen = self.rule.generator(step, salt=len(self.layers) + i)
                    m.weight[grown] = ((torch.rand(n, generator=gen) * 2.0 - 1.0) * bound).to(m.weight)
                else:
                    m.weight[grown] = 0.0
                clear_optimizer_state(optimizer, m.weight, grown)
            m.frozen_mask.copy_(new)
            count += n
        return count

    def mask_of(self, layer: nn.Module) -> Tensor:
        index = layer.__dict__.get("_dnw_index")
        if index is None or index >= len(self.layers) or self.layers[index] is not layer:
            raise RuntimeError(f"{type(layer).__name__} is not a layer of this budget")
        return self.masks()[index]


class DNWMixin:
    """What :class:`DNWConv2d` and :class:`DNWLinear` add to their dense parents."""

    weight: Tensor
    _dnw_budget: SparseBudget

    @property
    def budget(self) -> SparseBudget:
        budget = self.__dict__.get("_dnw_budget")
        if budget is None:
            raise RuntimeError(f"{type(self).__name__} has no budget: build it with wiring.sparsify.sparsify()")
        return budget

    @property
    def mode(self) -> str:
        return self.budget.mode

    def real_mask(self) -> Tensor:
        """Boolean mask of the real weights (the weight's shape)."""
        mask = self.budget.mask_of(self)
        return mask if mask.device == self.weight.device else mask.to(self.weight.device)

    def masked_weight(self) -> Tensor:
        """The weight the forward uses: real entries as they are, the others 0."""
        mask = self.real_mask()
        if self.budget.dense_gradient():
            return _StraightThrough.apply(self.weight, mask)
        return torch.where(mask, self.weight, 0.0)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        budget = self.__dict__.get("_dnw_budget")
        if budget is None:
            return base
        return f"{base}, dnw={budget.mode}, scope={budget.scope}"


class DNWConv2d(DNWMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight entries are DNW candidate edges (see :func:`sparsify`)."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


class DNWLinear(DNWMixin, nn.Linear):
    """``nn.Linear`` whose weight entries are DNW candidate edges (see :func:`sparsify`)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


SPARSE_OF = {nn.Conv2d: DNWConv2d, nn.Linear: DNWLinear}
DENSE_OF = {DNWConv2d: nn.Conv2d, DNWLinear: nn.Linear}


def candidate_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """The modules :func:`sparsify` can convert: exactly ``nn.Conv2d`` / ``nn.Linear``
    (subclasses such as attention's ``out_proj`` are left alone: their parents read
    the weight directly), in ``named_modules`` order."""
    return OrderedDict((n, m) for n, m in model.named_modules() if type(m) in SPARSE_OF)


def sparse_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """The DNW layers of ``model`` by module name."""
    return OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, DNWMixin))


def _matches(rule: Skip, name: str, module: nn.Module) -> bool:
    if callable(rule):
        return bool(rule(name, module))
    if any(c in rule for c in "*?["):
        return fnmatch.fnmatchcase(name, rule)
    return name == rule or name.startswith(rule + ".")


def _check_budget(total: int, density: float | None, edges: int | None) -> int:
    if (density is None) == (edges is None):
        raise ValueError("sparsify needs exactly one of density= (a fraction) or edges= (a count of real weights)")
    if edges is not None:
        if isinstance(edges, bool) or not isinstance(edges, int):
            raise ValueError(f"edges must be an integer, got {edges!r}")
        if not 1 <= edges <= total:
            raise ValueError(f"edges={edges} must be between 1 and the {total} weights of the sparsified layers")
        return edges
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ValueError(f"density must be a number in (0, 1], got {density!r}")
    k = round(density * total)
    if k < 1:
        raise ValueError(f"density={density} of {total} weights leaves no real weight")
    return k


def sparsify(model: nn.Module, *, density: float | None = None, edges: int | None = None,
             scope: str = "layer", skip: Iterable[Skip] = (), mode: str = "dnw",
             keep_first_last_dense: bool = False, mode_options: dict | None = None) -> nn.Module:
    """Make the ``nn.Conv2d`` / ``nn.Linear`` layers of ``model`` DNW layers, in place.

    ``edges``: the number of real weights over all sparsified layers (or ``density``,
    a fraction of them: ``k = round(density * total)``). ``scope``: ``"layer"`` (the
    default: each layer keeps the same fraction, the counts adding up to exactly ``k``)
    or ``"global"`` (one top-k over all layers; see the pitfall in the module docstring). ``skip``: module names (exact, a dotted prefix
    such as ``"layer1"``, or a glob such as ``"*.downsample.*"``) or predicates
    ``(name, module) -> bool`` whose layers stay dense; a name that matches nothing is
    an error. ``keep_first_last_dense``: also leave the first convolution (the first
    candidate layer if there is none) and the last linear layer (the last candidate
    if there is none) dense. ``mode``: one of :data:`SPARSE_MODES`; ``fixed`` freezes
    the initial top-k in a ``frozen_mask`` buffer (saved in the state dict), as do ``rigl`` and
    ``set``, which rewire it in training (``mode_options``: their ``update_every``, ``drop_fraction``,
    ``drop_schedule``, ``drop_until``, ``total_steps``, ``seed``; see :class:`wiring.modes.DynamicSparse`).

    Modules are converted by changing their class: parameters, hooks and an
    optimizer's references stay valid and state-dict keys do not change (plus
    ``frozen_mask`` in ``fixed`` mode). Returns ``model``.
    """
    if mode not in SPARSE_MODES:
        raise ValueError(f"unknown sparse mode {mode!r}; expected one of {', '.join(SPARSE_MODES)}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    if sparse_layers(model):
        raise ValueError("the model is already sparsified; densify() it first")
    candidates = candidate_layers(model)
    rules = [skip] if isinstance(skip, str) or callable(skip) else list(skip)
    for rule in rules:
        if not callable(rule) and not isinstance(rule, str):
            raise TypeError(f"skip entries must be module names or predicates, got {rule!r}")
        if isinstance(rule, str) and not any(_matches(rule, n, m) for n, m in model.named_modules()):
            raise ValueError(f"skip: no module is called {rule!r}")
    chosen = OrderedDict((n, m) for n, m in candidates.items() if not any(_matches(r, n, m) for r in rules))
    if keep_first_last_dense and candidates:
        names = list(candidates)
        convs = [n for n in names if type(candidates[n]) is nn.Conv2d]
        linears = [n for n in names if type(candidates[n]) is nn.Linear]
        for name in ((convs or names)[0], (linears or names)[-1]):
            chosen.pop(name, None)
    if not chosen:
        raise ValueError("no nn.Conv2d or nn.Linear layer is left to sparsify")
    total = sum(m.weight.numel() for m in chosen.values())
    k = _check_budget(total, density, edges)
    budget = SparseBudget(chosen, k, scope, mode, mode_options)
    initial = budget.compute() if mode_class(mode).uses_frozen else None
    for i, m in enumerate(chosen.values()):
        m.__class__ = SPARSE_OF[type(m)]
        m.__dict__["_dnw_budget"] = budget
        m.__dict__["_dnw_index"] = i
        if initial is not None:
            m.register_buffer("frozen_mask", initial[i])
    return model


def budget_of(model: nn.Module) -> SparseBudget | None:
    """The :class:`SparseBudget` of ``model``'s DNW layers (None when it has none)."""
    budgets = {id(m.budget): m.budget for m in sparse_layers(model).values()}
    if len(budgets) > 1:
        raise ValueError(f"the model has {len(budgets)} separate budgets; sparsify it once")
    return next(iter(budgets.values()), None)


def real_masks(model: nn.Module) -> "OrderedDict[str, Tensor]":
    """Every DNW layer's current real mask, by module name."""
    return OrderedDict((n, m.real_mask()) for n, m in sparse_layers(model).items())


def num_real(model: nn.Module) -> int:
    """The number of real weights over the DNW layers (the budget ``k``)."""
    return sum(int(mask.sum()) for mask in real_masks(model).values())


def check_sparse(model: nn.Module) -> None:
    """Raise ``ValueError`` unless the DNW layers hold exactly ``k`` real weights
    (and, per layer, their share for ``scope="layer"``) and every weight is finite."""
    budget = budget_of(model)
    if budget is None:
        return
    masks = budget.masks()
    got = sum(int(m.sum()) for m in masks)
    if got != budget.k:
        raise ValueError(f"{got} real weights instead of k = {budget.k}")
    for name, layer, mask, k in zip(budget.names, budget.layers, masks, budget.layer_k or [None] * len(masks)):
        if k is not None and int(mask.sum()) != k:
            raise ValueError(f"layer {name}: {int(mask.sum())} real weights instead of {k}")
        if not torch.isfinite(layer.weight).all():
            raise ValueError(f"layer {name}: non-finite weights")





