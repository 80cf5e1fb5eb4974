"""Extraction: a trained model -> the state of its standalone compact model (needs the project).

Contract: :func:`compact_state` (MobileNetV1-DNW) and :func:`tiny_state` (the static tiny
classifier) read a trained model in eval mode and return a plain dict of tensors, numbers,
strings and lists that :func:`wiring.compact.runtime.from_state` rebuilds (dead and constant
nodes removed, BatchNorm folded, each level's real in-edges as one CSR or dense operator);
:func:`compact_model` picks the right one and builds the module; :func:`save_compact` writes
its state with the project's crash-safe writer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.mobilenet import MobileNetV1DNW
from models.tiny import GRID, TinyClassifier, centre_pool
from wiring.compact.runtime import FORMAT, TINY_FORMAT, TINY_VERSION, VERSION, CompactMobileNet, CompactTiny
from wiring.files import atomic_write


def save_compact(model: CompactMobileNet | CompactTiny, path: str | Path) -> None:
    """Write ``model.state()`` to ``path`` (a ``.pt`` of plain tensors and types), atomically
    and with the user's umask (:func:`wiring.files.atomic_write`: a kill or an error leaves
    the old file or the new one, never half of one)."""

    state = model.state()
    atomic_write(path, lambda f: torch.save(state, f), binary=True)


def _csr(rows: Tensor, cols: Tensor, values: Tensor, num_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    crow = torch.zeros(num_rows + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return crow, cols.clone(), values.clone()


def _fold(bn: nn.Module, index: Tensor) -> tuple[Tensor, Tensor]:
    scale = bn.weight.detach().cpu() / torch.sqrt(bn.running_var.cpu() + bn.eps)
    shift = bn.bias.detach().cpu() - bn.running_mean.cpu() * scale
    return scale[index].clone(), shift[index].clone()


@torch.no_grad()
def compact_state(model: nn.Module) -> dict[str, Any]:
    """The :class:`CompactMobileNet` state of a MobileNetV1-DNW ``model`` (its
    evaluation-time real edges and running BatchNorm statistics)."""

    if not isinstance(model, MobileNetV1DNW):
        raise ValueError(f"compaction supports the MobileNetV1-DNW models (mobilenetv1_dnw, "
                         f"mobilenetv1_dnw_small), not {type(model).__name__}")
    masks = model.live_masks()
    live_in = masks[0][:model.stages[0].graph.graph.level_sizes[0]]
    stem = model.stem
    state: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "num_classes": model.num_classes, "in_channels": model.in_channels,
        "image_size": model.image_size, "stem_stride": int(stem.stride[0]), "small": bool(model.small),
        "stem_weight": stem.weight.detach().cpu()[live_in.nonzero().flatten()].clone(), "stages": []}
    for i, stage in enumerate(model.stages):
        layer, live = stage.graph, masks[i]
        g = layer.graph
        ptr, levels = g.level_ptr, g.num_levels - 1
        new_id = torch.cumsum(live.long(), 0) - 1
        sizes = [int(live[ptr[l]:ptr[l + 1]].sum()) for l in range(levels + 1)]
        new_ptr = [0]
        for s in sizes:
            new_ptr.append(new_ptr[-1] + s)
        real = layer.real_mask().cpu()
        ei, w = layer.edge_index.cpu(), layer.weight.detach().cpu()
        keep = real & live[ei[1]]
        src, dst, val = ei[0, keep], ei[1, keep], w[keep]
        entry: dict[str, Any] = {"stride": stage.stride, "in_size": list(stage.in_size),
                                 "out_size": list(stage.out_size), "level_sizes": sizes,
                                 "op_scale": [], "op_shift": [], "op_weight": [], "crow": [], "col": [], "value": []}
        for l in range(levels):
            index = live[ptr[l]:ptr[l + 1]].nonzero().flatten()
            op = stage.ops[l]
            scale, shift = _fold(op.bn, index)
            entry["op_scale"].append(scale)
            entry["op_shift"].append(shift)
            entry["op_weight"].append(op.conv_weight.detach().cpu()[index].clone())
        for l in range(1, levels + 1):
            pick = g.level[dst] == l
            crow, col, value = _csr(new_id[dst[pick]] - new_ptr[l], new_id[src[pick]], val[pick], sizes[l])
            entry["crow"].append(crow)
            entry["col"].append(col)
            entry["value"].append(value)
        state["stages"].append(entry)
    final = masks[len(model.stages) - 1][-model.bn.num_features:]
    index = final.nonzero().flatten()
    state["head_scale"], state["head_shift"] = _fold(model.bn, index)
    if model.small:
        layer = model.classifier.graph
        live = masks[-1]
        n_in = layer.graph.level_sizes[0]
        real = layer.real_mask().cpu()
        ei, w = layer.edge_index.cpu(), layer.weight.detach().cpu()
        keep = real & live[ei[1]]
        new_id = torch.cumsum(live.long(), 0) - 1
        crow, col, value = _csr(ei[1, keep] - n_in, new_id[ei[0, keep]], w[keep], model.num_classes)
        state.update(fc_crow=crow, fc_col=col, fc_value=value, fc_bias=model.classifier.bias.detach().cpu().clone())
    else:
        state["fc_weight"] = model.fc.weight.detach().cpu()[:, index].clone()
        state["fc_bias"] = model.fc.bias.detach().cpu().clone()
    return state


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """``conv`` followed by ``bn`` (running statistics) as one convolution's weight and bias."""
    scale, shift = _fold(bn, torch.arange(bn.num_features))
    weight = conv.weight.detach().cpu() * scale.view(-1, *[1] * (conv.weight.dim() - 1))
    bias = conv.bias.detach().cpu() if conv.bias is not None else torch.zeros(conv.out_channels)
    return weight, bias * scale + shift


@torch.no_grad()
def tiny_state(model: nn.Module, image_size: int | None = None) -> dict[str, Any]:
    """The :class:`CompactTiny` state of a static :class:`models.tiny.TinyClassifier`
    (``tiny`` or ``micro``): its evaluation-time real edges and running BatchNorm statistics.

    Nodes are sorted into three kinds: **dead** (no path along real edges to an output
    node: :meth:`wiring.layer.WiredGraph.live_nodes`), **constant** (live, but no input node
    reaches them: their states do not depend on the image, so they are computed here once
    and folded into the inputs of the kept nodes they feed, or, for output nodes, into
    the head's bias) and **kept** (the rest). ``counts`` holds ``nodes``, ``dead``,
    ``constant``, ``kept``, ``edges`` (the real edges, k) and ``kept_edges`` (real edges
    between kept nodes). ``image_size`` (kept as metadata: the CLI's check batch) defaults to
    ``model.image_size`` when the model records it, else to the smallest side its stem takes
    to 8x8 maps."""

    if not isinstance(model, TinyClassifier):
        raise ValueError(f"not a static tiny classifier: {type(model).__name__}")
    layer, g = model.graph, model.graph.graph
    ops = len(model.node_ops)
    for op in model.node_ops:
        if op.norm != "instance" or op.stride != 1 or tuple(op.conv_weight.shape[-2:]) != (3, 3) \
                or (op.height, op.width) != (GRID, GRID):
            raise ValueError("compaction expects instance-norm node ops with 3x3 stride-1 kernels on 8x8 maps")
    ptr, level = g.level_ptr, g.level
    real = layer.real_mask().cpu()
    src, dst = layer.edge_index.cpu()[:, real]
    w = layer.weight.detach().cpu()[real]
    target_level = level[dst]
    live = layer.live_nodes()
    reached = torch.zeros(g.num_nodes, dtype=torch.bool)
    reached[:ptr[1]] = True
    for l in range(1, ops + 1):                                   # sources lie on lower levels
        pick = (target_level == l) & reached[src]
        reached[dst[pick]] = True
    kept, constant = live & reached, live & ~reached
    # the constant nodes' states, batch 1 (they depend on constant nodes only)
    hw = GRID * GRID
    const_states = torch.zeros(g.num_nodes, hw)
    from_const = constant[src]
    contribution = torch.zeros(g.num_nodes, hw)                   # inputs from constant nodes
    for l in range(1, ops + 1):
        pick = (target_level == l) & from_const
        contribution.index_add_(0, dst[pick], w[pick, None] * const_states[src[pick]])
        if l < ops:
            inputs = contribution[ptr[l]:ptr[l + 1]]
            op = model.node_ops[l]                              # instance norm: the same in train and eval
            states = op(inputs.to(op.conv_weight.device)).cpu()
            const_states[ptr[l]:ptr[l + 1]] = states * constant[ptr[l]:ptr[l + 1], None]
    new_id = torch.cumsum(kept.long(), 0) - 1
    sizes = [int(kept[ptr[l]:ptr[l + 1]].sum()) for l in range(ops + 1)]
    new_ptr = [0]
    for n in sizes:
        new_ptr.append(new_ptr[-1] + n)
    keep = kept[src] & kept[dst]
    stem = model.stem.layers
    stem_weight, stem_bias = _fold_conv_bn(stem[0], stem[1])
    pw_weight, pw_bias = _fold_conv_bn(stem[4], stem[5])
    inputs0 = kept[:ptr[1]].nonzero().flatten()
    state: dict[str, Any] = {
        "format": TINY_FORMAT, "version": TINY_VERSION, "num_classes": model.fc.out_features,
        "in_channels": stem[0].in_channels, "image_size": image_size or _tiny_image_size(model), "pad": model.stem.pad,
        "stride1": int(stem[0].stride[0]), "stride2": int(stem[3].stride[0]), "grid": GRID, "eps": 1e-5,
        "level_sizes": sizes,
        "counts": {"nodes": g.num_nodes, "dead": int((~live).sum()), "constant": int(constant.sum()),
                   "kept": int(kept.sum()), "edges": int(real.sum()), "kept_edges": int(keep.sum())},
        "stem_weight": stem_weight, "stem_bias": stem_bias,
        "stem_dw_weight": stem[3].weight.detach().cpu().clone(), "stem_dw_bias": stem[3].bias.detach().cpu().clone(),
        "stem_pw_weight": pw_weight.flatten(1)[inputs0].clone(), "stem_pw_bias": pw_bias[inputs0].clone(),
        "norm_weight": [], "norm_bias": [], "conv_weight": [], "crow": [], "col": [], "value": [], "const": []}
    for l in range(ops):
        index = kept[ptr[l]:ptr[l + 1]].nonzero().flatten()
        op = model.node_ops[l]
        state["norm_weight"].append(op.norm_weight.detach().cpu()[index].clone())
        state["norm_bias"].append(op.norm_bias.detach().cpu()[index].clone())
        state["conv_weight"].append(op.conv_weight.detach().cpu()[index].clone())
    for l in range(1, ops + 1):
        pick = keep & (target_level == l)
        crow, col, value = _csr(new_id[dst[pick]] - new_ptr[l], new_id[src[pick]], w[pick], sizes[l])
        state["crow"].append(crow)
        state["col"].append(col)
        state["value"].append(value)
        if l < ops:
            const = contribution[ptr[l]:ptr[l + 1]][kept[ptr[l]:ptr[l + 1]]]
            state["const"].append(const.clone() if bool(const.any()) else torch.zeros(0, hw))
    outputs = kept[ptr[ops]:].nonzero().flatten()
    fc_weight, fc_bias = model.fc.weight.detach().cpu(), model.fc.bias.detach().cpu()
    pooled_const = centre_pool(contribution[ptr[ops]:], 1)[0]                # [outputs]
    state["fc_weight"] = fc_weight[:, outputs].clone()
    state["fc_bias"] = fc_bias + fc_weight @ pooled_const
    return state


def _tiny_image_size(model: nn.Module) -> int:
    """``model.image_size`` when the model records it, else the smallest input side its stem
    takes to 8x8 maps without pooling (the stem cannot tell 32 from 64: both end on 16x16
    before the pool; either side runs)."""
    size = getattr(model, "image_size", None)
    if size is not None:
        return int(size)
    stem = model.stem.layers
    side = 8 * stem[0].stride[0] * stem[3].stride[0] - 2 * model.stem.pad
    return int(side)


def compact_model(model: nn.Module, image_size: int | None = None) -> CompactMobileNet | CompactTiny:
    """A standalone inference model equal to ``model`` in eval mode (see the module doc):
    a :class:`CompactMobileNet` of a MobileNetV1-DNW model, a :class:`CompactTiny` of a
    static tiny classifier (``tiny``, ``micro``; ``image_size`` see :func:`tiny_state`)."""

    if isinstance(model, MobileNetV1DNW):
        return CompactMobileNet(compact_state(model)).eval()
    if isinstance(model, TinyClassifier):
        return CompactTiny(tiny_state(model, image_size)).eval()
    raise ValueError(f"compaction supports the MobileNetV1-DNW models (mobilenetv1_dnw, mobilenetv1_dnw_small) "
                     f"and the static tiny classifier (tiny, micro), not {type(model).__name__}")
