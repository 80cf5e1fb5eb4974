"""The channel-level topology of a sparsified model: densities, dead channels, one channel graph.

Contract: :func:`layer_density` is each DNW layer's real fraction; :func:`dead_channels` the
output channels with no real weight; :func:`channel_graph` traces how the layers feed each
other on an example input and returns one :class:`~wiring.graph.Wiring` whose nodes are
channels and whose edge ``(i -> o)`` is real when any entry of ``weight[o, i]`` is, so the
graph tools (:mod:`wiring.topology`, :mod:`viz`) read a sparsified model like a wiring.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from wiring.graph import HIDDEN, INPUT, OUTPUT, Wiring, _generations
from wiring.sparsify.layers import SPARSE_OF, DNWMixin


def _layers_for_topology(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """DNW layers and plain conv / linear layers (dense, or densified), in module order."""
    return OrderedDict((n, m) for n, m in model.named_modules()
                       if isinstance(m, DNWMixin) or type(m) in SPARSE_OF)


def _effective_mask(m: nn.Module) -> Tensor:
    return m.real_mask() if isinstance(m, DNWMixin) else m.weight.detach() != 0


def layer_density(model: nn.Module) -> "OrderedDict[str, float]":
    """Fraction of real weights of every conv / linear layer: the real mask of DNW
    layers, the nonzero weights of plain ones (1.0 when dense; the same numbers after
    :func:`wiring.sparsify.densify`, unless a real weight is exactly 0)."""
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
