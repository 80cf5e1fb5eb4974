"""A sparsified model's weights out: dense again (:func:`densify`) or only its real entries to a file.

Contract: :func:`export_sparse` writes the real weights of every DNW layer (values, indices,
shapes; ``format`` ``wiring.sparse``) as a ``.pt`` of tensors and plain types, atomically, and
returns the number of real entries; :func:`load_sparse` reads it back as dense tensors (with
their masks) keyed like the model's ``state_dict``, readable without this project's classes.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from wiring.files import atomic_write
from wiring.sparsify.layers import DENSE_OF, sparse_layers

EXPORT_FORMAT = "wiring.sparse"


EXPORT_VERSION = 1


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
        m.__class__ = DENSE_OF[type(m)]
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
