"""DNW for any PyTorch model: every weight of a convolution or linear layer is a candidate edge.

:func:`sparsify` turns the ``nn.Conv2d`` and ``nn.Linear`` modules of a model into
DNW layers (:class:`DNWConv2d`, :class:`DNWLinear`), in place. In the channel-graph
view a convolution is a bipartite graph from its input to its output channels whose
edge ``(i -> o)`` carries the kernel ``weight[o, i]``; DNW here works one level
finer, as the paper's sparse ResNet-50 did: each *weight entry* is a candidate edge,
and the real edges are the ``k`` entries of largest ``|w|`` (:func:`wiring.ops.topk_mask`:
exactly ``k``, ties to the lower index). The DNW update rule then reads:

* forward: ``F.conv2d(x, w * mask)`` (``F.linear`` likewise), the real set recomputed
  from the current weights at every training step;
* backward, by mode (:data:`SPARSE_MODES`):

  ============== ====================================== =================================
  mode           real set                               gradient to ``weight``
  ============== ====================================== =================================
  dnw            top-k of ``|w|``, every step           every entry (straight-through:
                                                        the full dense gradient)
  dnw_no_update  top-k of ``|w|``, every step           real entries only
  fixed          the initial top-k, never changing      real entries only
  ============== ====================================== =================================

  A pruned entry of a ``dnw`` layer keeps learning and swaps in when its ``|w|``
  overtakes a real one.

Budget
------
``edges`` real weights in all (or ``round(density * total)``), over the sparsified
layers only (skipped layers stay dense and are not counted). ``scope="global"``: one
top-k over the ``|w|`` of all sparsified layers together, so layers compete for the
budget; ``scope="layer"``: every layer keeps the same fraction, ``k`` apportioned by
largest remainder so the layers' counts add up to exactly ``edges`` (this is what the
authors' released sparse ResNet-50 code does: one fraction per layer), the default.

A pitfall of ``"global"``: initial weights are scaled by each layer's fan-in, so one top-k
over all layers favours the narrow ones, and at low density a wide layer can start with no
real weight at all. Its output is then constant, nothing before it gets a gradient, and
DNW cannot bring edges back (seen on a small CNN at 2%: stuck at chance; see
``docs/sparse_cnn.md``). Per-layer budgets never empty a layer.

The layers of one :func:`sparsify` call share a :class:`SparseBudget`. A global top-k
needs every layer's weights, and each layer's forward needs the result, so the budget
computes all masks at once and caches them under a key made of each weight's
identity, storage and autograd version counter (``Tensor._version``, which every
in-place update bumps: ``optimizer.step()``, ``load_state_dict``, ``copy_`` under
``no_grad``). The first layer to run after the weights change pays for one top-k
(one per layer for ``scope="layer"``); every other layer of that forward, and any
further forward before the next update (gradient accumulation, evaluation), reuses
the cached masks. :attr:`SparseBudget.recomputes` counts the top-k passes.

Also here: :func:`densify` (plain modules with the learned zeros baked in),
:func:`export_sparse` / :func:`load_sparse` (a size-honest file: int32 flat indices
and values of the real weights, plus every other tensor dense), and the topology
tools :func:`layer_density`, :func:`dead_channels` and :func:`channel_graph` (a
:class:`~wiring.graph.Wiring` of channels, for :func:`wiring.io.write_graphml`).

Example::

    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    >>> net = sparsify(net, density=0.1)
    >>> num_real(net), sum(m.weight.numel() for m in sparse_layers(net).values())
    (310, 3096)
    >>> net(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import fnmatch
import math
import os
from collections import OrderedDict
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wiring.files import atomic_write
from wiring.graph import HIDDEN, INPUT, OUTPUT, Wiring, _generations, apportion
from wiring.ops import topk_mask

__all__ = [
    "SPARSE_MODES", "SCOPES", "SparseBudget", "DNWConv2d", "DNWLinear", "sparsify", "densify",
    "sparse_layers", "budget_of", "num_real", "real_masks", "check_sparse", "export_sparse",
    "load_sparse", "layer_density", "dead_channels", "channel_graph", "candidate_layers",
]

SPARSE_MODES = ("dnw", "dnw_no_update", "fixed")
SCOPES = ("global", "layer")
EXPORT_FORMAT = "wiring.sparse"
EXPORT_VERSION = 1

Skip = str | Callable[[str, nn.Module], bool]


# ----------------------------------------------------------------------------- masking

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

    def __init__(self, layers: "OrderedDict[str, nn.Module]", k: int, scope: str, mode: str) -> None:
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
        if self.mode == "fixed":
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

    def mask_of(self, layer: nn.Module) -> Tensor:
        index = layer.__dict__.get("_dnw_index")
        if index is None or index >= len(self.layers) or self.layers[index] is not layer:
            raise RuntimeError(f"{type(layer).__name__} is not a layer of this budget")
        return self.masks()[index]


class _DNWMixin:
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
        if self.budget.mode == "dnw":
            return _StraightThrough.apply(self.weight, mask)
        return torch.where(mask, self.weight, 0.0)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        budget = self.__dict__.get("_dnw_budget")
        if budget is None:
            return base
        return f"{base}, dnw={budget.mode}, scope={budget.scope}"


class DNWConv2d(_DNWMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight entries are DNW candidate edges (see :func:`sparsify`)."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


class DNWLinear(_DNWMixin, nn.Linear):
    """``nn.Linear`` whose weight entries are DNW candidate edges (see :func:`sparsify`)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


_SPARSE_OF = {nn.Conv2d: DNWConv2d, nn.Linear: DNWLinear}
_DENSE_OF = {DNWConv2d: nn.Conv2d, DNWLinear: nn.Linear}


# ----------------------------------------------------------------------------- sparsify

def candidate_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """The modules :func:`sparsify` can convert: exactly ``nn.Conv2d`` / ``nn.Linear``
    (subclasses such as attention's ``out_proj`` are left alone: their parents read
    the weight directly), in ``named_modules`` order."""
    return OrderedDict((n, m) for n, m in model.named_modules() if type(m) in _SPARSE_OF)


def sparse_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """The DNW layers of ``model`` by module name."""
    return OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, _DNWMixin))


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
             keep_first_last_dense: bool = False) -> nn.Module:
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
    the initial top-k in a ``frozen_mask`` buffer (saved in the state dict).

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
    budget = SparseBudget(chosen, k, scope, mode)
    initial = budget.compute() if mode == "fixed" else None
    for i, m in enumerate(chosen.values()):
        m.__class__ = _SPARSE_OF[type(m)]
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


# ----------------------------------------------------------------------------- densify / export

@torch.no_grad()
def densify(model: nn.Module) -> nn.Module:
    """Turn every DNW layer back into a plain ``nn.Conv2d`` / ``nn.Linear`` whose
    weight has the pruned entries set to 0, in place (``copy.deepcopy`` first to keep
    the sparse model). Outputs are identical to the sparse model's. Returns ``model``."""
    layers = sparse_layers(model)
    masks = [m.real_mask() for m in layers.values()]     # all masks before any weight changes
    for m, mask in zip(layers.values(), masks):
        m.weight.masked_fill_(~mask, 0.0)
        m._buffers.pop("frozen_mask", None)
        m.__dict__.pop("_dnw_budget", None)
        m.__dict__.pop("_dnw_index", None)
        m.__class__ = _DENSE_OF[type(m)]
    return model


def _weight_key(prefix: str) -> str:
    return f"{prefix}.weight" if prefix else "weight"


@torch.no_grad()
def export_sparse(model: nn.Module, path: str | os.PathLike) -> int:
    """Save ``model`` holding only the real weights of its DNW layers: per layer the
    shape, the int32 flat indices and the values of the real entries; every other
    tensor of the state dict as it is. Loadable with ``torch.load(weights_only=True)``;
    :func:`load_sparse` rebuilds the state dict. Returns the file size in bytes."""
    state = model.state_dict()
    layers = sparse_layers(model)
    sparse: dict[str, dict[str, Any]] = {}
    skip_keys = set()
    for name, layer in layers.items():
        mask = layer.real_mask()
        w = layer.weight.detach()
        if w.numel() >= 2 ** 31:
            raise ValueError(f"layer {name} has {w.numel()} weights: more than int32 flat indices can address")
        index = mask.flatten().nonzero().flatten()
        wkey = _weight_key(name)
        mkey = f"{name}.frozen_mask" if f"{name}.frozen_mask" in state else None
        sparse[name] = {"shape": list(w.shape), "index": index.to(torch.int32).cpu(),
                        "values": w.flatten()[index].cpu(), "weight_key": wkey, "mask_key": mkey}
        skip_keys.update(k for k in (wkey, mkey) if k)
    payload = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
        "keys": list(state),
        "sparse": sparse,
        "dense": {k: v.detach().cpu().clone() for k, v in state.items() if k not in skip_keys},
        "k": sum(int(v["index"].numel()) for v in sparse.values()),
    }
    atomic_write(path, lambda f: torch.save(payload, f), binary=True)
    return os.path.getsize(path)


def load_sparse(path: str | os.PathLike, *, include_masks: bool = True) -> "OrderedDict[str, Tensor]":
    """The state dict saved by :func:`export_sparse` (pruned weights as 0), keys in the
    original order; ``load_state_dict`` it into the same architecture, sparsified the
    same way or :func:`densify`-ed. ``include_masks=False`` leaves out the
    ``frozen_mask`` entries of ``fixed`` layers (for a densified model)."""
    payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a sparse export ({EXPORT_FORMAT})")
    if payload.get("version") != EXPORT_VERSION:
        raise ValueError(f"{os.fspath(path)}: unsupported sparse export version {payload.get('version')!r}")
    rebuilt: dict[str, Tensor] = dict(payload["dense"])
    for name, entry in payload["sparse"].items():
        shape, index, values = entry["shape"], entry["index"].long(), entry["values"]
        numel = math.prod(shape)
        if index.numel() != values.numel() or (index.numel() and (int(index.min()) < 0 or int(index.max()) >= numel)):
            raise ValueError(f"{os.fspath(path)}: layer {name}: indices do not fit its shape {shape}")
        weight = values.new_zeros(numel)
        weight[index] = values
        rebuilt[entry["weight_key"]] = weight.view(shape)
        if entry["mask_key"] and include_masks:
            mask = torch.zeros(numel, dtype=torch.bool)
            mask[index] = True
            rebuilt[entry["mask_key"]] = mask.view(shape)
    return OrderedDict((k, rebuilt[k]) for k in payload["keys"] if k in rebuilt)


# ----------------------------------------------------------------------------- topology

def _layers_for_topology(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """DNW layers and plain conv / linear layers (dense, or densified), in module order."""
    return OrderedDict((n, m) for n, m in model.named_modules()
                       if isinstance(m, _DNWMixin) or type(m) in _SPARSE_OF)


def _effective_mask(m: nn.Module) -> Tensor:
    return m.real_mask() if isinstance(m, _DNWMixin) else m.weight.detach() != 0


def layer_density(model: nn.Module) -> "OrderedDict[str, float]":
    """Fraction of real weights of every conv / linear layer: the real mask of DNW
    layers, the nonzero weights of plain ones (1.0 when dense; the same numbers after
    :func:`densify`, unless a real weight is exactly 0)."""
    with torch.no_grad():
        return OrderedDict((n, float(_effective_mask(m).float().mean()))
                           for n, m in _layers_for_topology(model).items())


def dead_channels(model: nn.Module) -> "OrderedDict[str, list[int]]":
    """Output channels (features for linear layers) of every conv / linear layer whose
    weights are all pruned (or zero): they see no input (a bias is all they output)."""
    out = OrderedDict()
    with torch.no_grad():
        for name, m in _layers_for_topology(model).items():
            alive = _effective_mask(m).flatten(1).any(dim=1)
            out[name] = (~alive).nonzero().flatten().tolist()
    return out


def _kernel_graph(m: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """``(src, dst, l1)``: input channel, output channel and kernel L1 norm of every
    (in, out) pair with at least one real weight (groups respected)."""
    mask = _effective_mask(m)
    w = torch.where(mask, m.weight.detach(), 0.0)
    out_ch = w.size(0)
    any_real = mask.flatten(2).any(dim=2) if w.dim() > 2 else mask
    l1 = w.abs().flatten(2).sum(dim=2) if w.dim() > 2 else w.abs()
    dst, j = any_real.nonzero(as_tuple=True)
    groups = getattr(m, "groups", 1)
    per_group_in, per_group_out = w.size(1), out_ch // groups
    src = (dst // per_group_out) * per_group_in + j
    return src, dst, l1[dst, j].float()


def _trace_sources(model: nn.Module, layers: "OrderedDict[str, nn.Module]", example: Tensor):
    """Run ``model`` once and read from the autograd graph where each layer's input
    comes from: ``("layer", name)``, ``("input",)``, ``("sum", key, [sources])`` for a
    residual addition, or None when it cannot be followed (a concatenation, a product
    of two activations...)."""
    pre: dict[str, Any] = {}
    out_fn: dict[Any, str] = {}
    params = {id(p) for p in model.parameters()}
    handles = []

    def pre_hook(name):
        def hook(module, args):
            if name not in pre and args:
                pre[name] = args[0]
        return hook

    def post_hook(name):
        def hook(module, args, output):
            if isinstance(output, Tensor) and output.grad_fn is not None:
                out_fn.setdefault(output.grad_fn, name)
        return hook

    for name, m in layers.items():
        handles.append(m.register_forward_pre_hook(pre_hook(name)))
        handles.append(m.register_forward_hook(post_hook(name)))
    was_training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.enable_grad():
            x = example.detach().clone().requires_grad_(True)
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, t in was_training.items():
            m.training = t

    memo: dict[Any, Any] = {}

    def nexts(fn):
        out = []
        for f, _ in getattr(fn, "next_functions", ()):
            if f is None:
                continue
            if type(f).__name__ == "AccumulateGrad" and id(f.variable) in params:
                continue
            out.append(f)
        return out

    def resolve(fn):
        start = fn
        if fn in memo:
            return memo[fn]
        while True:
            if fn in out_fn:
                result = ("layer", out_fn[fn])
                break
            if type(fn).__name__ == "AccumulateGrad":
                result = ("input",) if fn.variable is x else None
                break
            inputs = nexts(fn)
            if len(inputs) == 1:
                fn = inputs[0]
                if fn in memo:
                    result = memo[fn]
                    break
                continue
            if len(inputs) >= 2 and type(fn).__name__.startswith(("AddBackward", "SubBackward")):
                result = ("sum", id(fn), [resolve(f) for f in inputs])
                break
            result = None
            break
        memo[start] = result
        return result

    sources = {}
    for name in layers:
        if name not in pre:
            continue          # never called
        t = pre[name]
        if not isinstance(t, Tensor):
            sources[name] = None
        elif t is x:
            sources[name] = ("input",)
        elif t.grad_fn is None:
            sources[name] = None
        else:
            sources[name] = resolve(t.grad_fn)
    return sources


def _default_example(layers: "OrderedDict[str, nn.Module]") -> Tensor:
    first = next(iter(layers.values()))
    if isinstance(first, nn.Conv2d):
        return torch.zeros(1, first.in_channels, 32, 32, device=first.weight.device)
    return torch.zeros(1, first.in_features, device=first.weight.device)


def channel_graph(model: nn.Module, example_input: Tensor | None = None) -> Wiring:
    """The channel graph of ``model``'s conv / linear layers as a :class:`Wiring`.

    Nodes are channels: the network input's, each layer's output channels (in module
    order), and one group per residual addition (channel ``c`` of a sum of branches).
    An edge ``(i -> o)`` of a layer exists when at least one weight of kernel
    ``weight[o, i]`` is real; its weight is the L1 norm of that kernel. A residual
    sum gets identity edges (weight 1.0) from channel ``c`` of each branch. Where a
    layer's input comes from is read off one forward pass on ``example_input``
    (default: zeros of 1 x C x 32 x 32 for a first convolution, 1 x F for a first
    linear layer; pass one when that shape does not fit the model); a layer whose
    input cannot be followed channel by channel (a concatenation, a flatten of a
    spatial map, a product of branches) gets its own input nodes. Levels are the
    longest-path generations; roles: input for nodes fed by no layer, output for the
    channels of layers that feed nothing, hidden otherwise. Graph attributes:
    ``layers``, ``k`` (real weights), ``weights`` (all weights), ``density``,
    ``identity_edges``. A layer called more than once is wired at its first call.
    """
    layers = _layers_for_topology(model)
    if not layers:
        raise ValueError("the model has no nn.Conv2d or nn.Linear layer")
    example = _default_example(layers) if example_input is None else example_input
    sources = _trace_sources(model, layers, example)

    groups: list[dict[str, Any]] = []      # {"size", "kind", "name"}
    layer_group: dict[str, int] = {}
    sum_group: dict[int, int | None] = {}
    group_edges: list[tuple[int, int]] = []   # group DAG (source group -> target group)
    identity: list[tuple[int, int]] = []      # (source group, sum group) pairs
    consumed: set[int] = set()
    input_group: dict[int, int] = {}

    def new_group(size: int, kind: str, name: str = "") -> int:
        groups.append({"size": size, "kind": kind, "name": name})
        return len(groups) - 1

    def in_size(m: nn.Module) -> int:
        return m.in_channels if isinstance(m, nn.Conv2d) else m.in_features

    def out_size(m: nn.Module) -> int:
        return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features

    for name, m in layers.items():
        layer_group[name] = new_group(out_size(m), "layer", name)

    def group_of(src, size: int) -> int | None:
        if src is None:
            return None
        if src[0] == "layer":
            g = layer_group[src[1]]
            return g if groups[g]["size"] == size else None
        if src[0] == "input":
            if size not in input_group:
                input_group[size] = new_group(size, "input")
            return input_group[size]
        key = src[1]
        if key not in sum_group:
            parts = [group_of(s, size) for s in src[2]]
            if any(p is None for p in parts):
                sum_group[key] = None
            else:
                g = new_group(size, "sum")
                for p in parts:
                    group_edges.append((p, g))
                    identity.append((p, g))
                    consumed.add(p)
                sum_group[key] = g
        return sum_group[key]

    kernel_edges = []     # (source group, layer name)
    for name, m in layers.items():
        size = in_size(m)
        g = group_of(sources.get(name), size)
        if g is None:
            g = new_group(size, "fresh", name)
        consumed.add(g)
        group_edges.append((g, layer_group[name]))
        kernel_edges.append((g, name))

    # levels of groups: longest path over the group DAG
    gei = torch.tensor(group_edges, dtype=torch.long).t().reshape(2, -1)
    glevel = _generations(torch.unique(gei, dim=1), len(groups)).tolist()
    order = sorted(range(len(groups)), key=lambda g: (glevel[g], g))
    start, offset = 0, [0] * len(groups)
    for g in order:
        offset[g] = start
        start += groups[g]["size"]
    num_nodes = start
    level = torch.empty(num_nodes, dtype=torch.long)
    role = torch.empty(num_nodes, dtype=torch.long)
    for g, info in enumerate(groups):
        sl = slice(offset[g], offset[g] + info["size"])
        level[sl] = glevel[g]
        role[sl] = INPUT if info["kind"] in ("input", "fresh") else OUTPUT if g not in consumed else HIDDEN

    src_parts, dst_parts, w_parts = [], [], []
    k = weights = 0
    with torch.no_grad():
        for g, name in kernel_edges:
            m = layers[name]
            s, d, l1 = _kernel_graph(m)
            src_parts.append(s + offset[g])
            dst_parts.append(d + offset[layer_group[name]])
            w_parts.append(l1)
            k += int(_effective_mask(m).sum())
            weights += m.weight.numel()
        for p, g in identity:
            c = torch.arange(groups[g]["size"])
            src_parts.append(c + offset[p])
            dst_parts.append(c + offset[g])
            w_parts.append(torch.ones(c.numel()))
    src, dst = torch.cat(src_parts).long(), torch.cat(dst_parts).long()
    weight = torch.cat(w_parts).float()
    perm = torch.argsort(dst * max(num_nodes, 1) + src, stable=True)
    attrs = {"kind": "channel_graph", "layers": len(layers), "k": k, "weights": weights,
             "density": k / max(weights, 1), "identity_edges": sum(groups[g]["size"] for _, g in identity),
             "static": True}
    return Wiring(torch.stack([src[perm], dst[perm]]), weight[perm], level, role, None, attrs)
