"""``python -m wiring.compact RUN_DIR``: a standalone inference model of a trained wiring.

:func:`compact_model` turns a MobileNetV1-DNW model (``mobilenetv1_dnw`` or
``mobilenetv1_dnw_small``) into a :class:`CompactMobileNet`:

* dead nodes removed (no path along real edges to an output, across stages: see
  :mod:`wiring.profile`), with their ops, BatchNorm entries, stem channels and
  classifier columns;
* each level's real in-edges between live nodes as one sparse CSR operator
  ``[live targets, live nodes of the lower levels]`` (no candidate weights, no
  top-k at run time);
* BatchNorm folded into a per-node scale and shift (running statistics: it is the
  training model **in eval mode**, equal to it within float rounding, ~1e-6).

and the static tiny classifier (``tiny``, ``micro``: :class:`models.tiny.TinyClassifier`)
into a :class:`CompactTiny`:

* dead nodes removed (no path along real edges to an output node), and **constant**
  nodes too: live nodes that no input node reaches compute the same map for every
  image, so their contribution is computed once and folded into the inputs of the
  nodes they feed (or, for output nodes, into the head's bias);
* each level's real in-edges between the kept nodes as one operator, CSR or dense by
  how much of its rectangle they fill (:data:`DENSE_FILL`), run on one preallocated
  node-major state buffer;
* the stem's BatchNorms folded into its convolutions; instance norm (no running
  statistics: the same in train and eval mode) -> ReLU -> depthwise 3x3 for kept nodes
  only, the 3x3 convolution of an 8x8 map as one 64 x 64 matrix per node; the output
  level on the pooled centre values the head reads. Equal to the training model in
  eval mode within float rounding (~1e-7).

Either state is a plain dict of tensors, numbers, strings and lists (``format``
``wiring-compact-mobilenetv1`` or ``wiring-compact-tiny``), saved with ``torch.save``
and read back with ``torch.load(weights_only=True)``; :func:`load_compact` rebuilds
the module its ``format`` names. This file's top-level code imports only torch and
the standard library: :class:`CompactMobileNet`, :class:`CompactTiny` and
:func:`load_compact` can be copied into a project that has nothing else of this one.
A :class:`CompactMobileNet`'s parameter count equals
:func:`wiring.profile.profile_model`'s ``params``.

CLI: ``python -m wiring.compact RUN_DIR [-o model.pt] [--best | --checkpoint FILE]
[--batch N] [--repeats R]`` reads the run's checkpoint, rebuilds its model, compacts
it, checks the two agree on a random batch, times both (alternating, median) and
writes ``RUN_DIR/compact.pt`` (or ``-o``); ``python -m wiring.export RUN_DIR --compact``
does the same. User mistakes exit 2 with one line.
"""
from __future__ import annotations

import functools
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMAT = "wiring-compact-mobilenetv1"
VERSION = 1


# ----------------------------------------------------------------------------- standalone part (torch only)

class CompactMobileNet(nn.Module):
    """Inference-only MobileNetV1-DNW: live nodes, sparse real edges, folded BatchNorm.

    Built from the plain ``state`` dict :func:`compact_state` makes (and
    :meth:`state` returns). Node features are node-major ``[nodes, batch*H*W]``.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        if state.get("format") != FORMAT or state.get("version") != VERSION:
            raise ValueError(f"not a compact model of format {FORMAT} v{VERSION}")
        self.meta = {k: state[k] for k in ("num_classes", "in_channels", "image_size", "stem_stride", "small")}
        self.stage_meta = [{k: s[k] for k in ("stride", "in_size", "out_size", "level_sizes")}
                           for s in state["stages"]]
        self.register_buffer("stem_weight", state["stem_weight"])
        for i, s in enumerate(state["stages"]):
            for l, (scale, shift, weight) in enumerate(zip(s["op_scale"], s["op_shift"], s["op_weight"])):
                self.register_buffer(f"s{i}_op{l}_scale", scale)
                self.register_buffer(f"s{i}_op{l}_shift", shift)
                self.register_buffer(f"s{i}_op{l}_weight", weight)
            for l, (crow, col, value) in enumerate(zip(s["crow"], s["col"], s["value"]), start=1):
                self.register_buffer(f"s{i}_edge{l}_crow", crow)
                self.register_buffer(f"s{i}_edge{l}_col", col)
                self.register_buffer(f"s{i}_edge{l}_value", value)
        for name in ("head_scale", "head_shift", "fc_bias"):
            self.register_buffer(name, state[name])
        if self.meta["small"]:
            for name in ("fc_crow", "fc_col", "fc_value"):
                self.register_buffer(name, state[name])
        else:
            self.register_buffer("fc_weight", state["fc_weight"])

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """The plain dict this module is built from (tensors on the CPU)."""
        b = {name: t.detach().cpu() for name, t in self.named_buffers()}
        stages = []
        for i, m in enumerate(self.stage_meta):
            levels = len(m["level_sizes"]) - 1
            stages.append({**m,
                           "op_scale": [b[f"s{i}_op{l}_scale"] for l in range(levels)],
                           "op_shift": [b[f"s{i}_op{l}_shift"] for l in range(levels)],
                           "op_weight": [b[f"s{i}_op{l}_weight"] for l in range(levels)],
                           "crow": [b[f"s{i}_edge{l}_crow"] for l in range(1, levels + 1)],
                           "col": [b[f"s{i}_edge{l}_col"] for l in range(1, levels + 1)],
                           "value": [b[f"s{i}_edge{l}_value"] for l in range(1, levels + 1)]})
        out = {"format": FORMAT, "version": VERSION, **self.meta, "stages": stages,
               "stem_weight": b["stem_weight"], "head_scale": b["head_scale"], "head_shift": b["head_shift"],
               "fc_bias": b["fc_bias"]}
        if self.meta["small"]:
            out.update(fc_crow=b["fc_crow"], fc_col=b["fc_col"], fc_value=b["fc_value"])
        else:
            out["fc_weight"] = b["fc_weight"]
        return out

    def num_parameters(self) -> int:
        """Weights and biases kept (floating-point entries; CSR index arrays excluded)."""
        return sum(t.numel() for t in self.buffers() if t.is_floating_point())

    def num_nodes(self) -> int:
        """Live nodes, stage by stage (a stage's outputs counted once, as the next stage's inputs)."""
        return sum(sum(m["level_sizes"][:-1]) for m in self.stage_meta) + self.stage_meta[-1]["level_sizes"][-1]

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _sparse(crow: Tensor, col: Tensor, value: Tensor, x: Tensor) -> Tensor:
        rows = crow.numel() - 1
        if rows == 0 or value.numel() == 0:
            return x.new_zeros(rows, x.size(1))
        mat = torch.sparse_csr_tensor(crow, col, value, (rows, x.size(0)), check_invariants=False)
        return mat @ x

    @staticmethod
    def _op(x: Tensor, scale: Tensor, shift: Tensor, weight: Tensor, batch: int, size: Sequence[int],
            stride: int, out_size: Sequence[int]) -> Tensor:
        n = x.size(0)
        if n == 0:
            return x.new_zeros(0, batch * out_size[0] * out_size[1])
        y = F.relu(torch.addcmul(shift[:, None], x, scale[:, None]))
        kernel = weight.repeat_interleave(batch, 0)
        y = F.conv2d(y.reshape(1, n * batch, size[0], size[1]), kernel, stride=stride, padding=1,
                     groups=n * batch)
        return y.reshape(n, -1)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.size(0)
        b = dict(self.named_buffers())
        h = F.conv2d(x, self.stem_weight, stride=self.meta["stem_stride"], padding=1)
        z = h.transpose(0, 1).reshape(h.size(1), -1)
        for i, m in enumerate(self.stage_meta):
            sizes = m["level_sizes"]
            levels = len(sizes) - 1
            ptr = [0]
            for s in sizes:
                ptr.append(ptr[-1] + s)
            out_hw = m["out_size"][0] * m["out_size"][1]
            states = z.new_empty(ptr[levels], batch * out_hw)
            states[:ptr[1]] = self._op(z, b[f"s{i}_op0_scale"], b[f"s{i}_op0_shift"], b[f"s{i}_op0_weight"],
                                       batch, m["in_size"], m["stride"], m["out_size"])
            for l in range(1, levels + 1):
                inputs = self._sparse(b[f"s{i}_edge{l}_crow"], b[f"s{i}_edge{l}_col"], b[f"s{i}_edge{l}_value"],
                                      states[:ptr[l]])
                if l == levels:
                    z = inputs
                else:
                    states[ptr[l]:ptr[l + 1]] = self._op(inputs, b[f"s{i}_op{l}_scale"], b[f"s{i}_op{l}_shift"],
                                                         b[f"s{i}_op{l}_weight"], batch, m["out_size"], 1,
                                                         m["out_size"])
        n = z.size(0)
        z = F.relu(torch.addcmul(self.head_shift[:, None], z, self.head_scale[:, None]))
        pooled = z.view(n, batch, -1).mean(2)                              # [C, B]
        if self.meta["small"]:
            return self._sparse(self.fc_crow, self.fc_col, self.fc_value, pooled).t() + self.fc_bias
        return F.linear(pooled.t(), self.fc_weight, self.fc_bias)


TINY_FORMAT = "wiring-compact-tiny"
TINY_VERSION = 1

#: A level's real edges run as one dense matrix product when they fill at least this
#: fraction of its [kept targets, kept lower-level nodes] rectangle, else as a CSR product
#: (measured on the whole tiny classifier, batch 64, one thread of an AVX-512 CPU: both
#: are as fast at a fill of ~0.10 with wiring.train.allocator.tune_malloc, ~0.15 with glibc's
#: default allocator; CSR is faster below, dense above).
DENSE_FILL = 0.12

_TINY_META = ("num_classes", "in_channels", "image_size", "pad", "stride1", "stride2", "grid", "eps")
_TINY_STEM = ("stem_weight", "stem_bias", "stem_dw_weight", "stem_dw_bias", "stem_pw_weight", "stem_pw_bias")


class CompactTiny(nn.Module):
    """Inference-only static tiny classifier: kept nodes, real edges, folded constants.

    Built from the plain ``state`` dict :func:`tiny_state` makes (and :meth:`state`
    returns): ``level_sizes`` kept nodes per level (op levels, then outputs), the stem
    with its BatchNorms folded (rows of the pointwise conv for the kept input nodes
    only), per op level the instance norm's affine pair and the 3x3 depthwise kernels
    of its kept nodes, per target level the real edges from kept lower-level nodes as
    CSR ``crow``/``col``/``value``, per hidden level the input-independent part of
    its inputs (``const``: ``[kept nodes, grid*grid]`` or empty), and the linear head
    over the kept output nodes (the constant outputs folded into its bias).

    Forward (node-major ``[nodes, batch*64]`` states in one work buffer): each level's
    inputs are one product of its edge operator with the buffer's rows of the lower
    levels (dense when ``fill >= dense_fill``, else CSR); instance norm is one
    ``group_norm`` call; the depthwise 3x3 convolution of an 8x8 map is a ``64 x 64``
    matrix per node, applied by one batched matmul that writes into the buffer (faster
    than a grouped ``conv2d`` and a copy). The head reads only the average of each
    output's centre 2x2 positions, and the output level is linear, so the output level
    aggregates pooled states ``[nodes, batch]``; the last op level feeds only the
    outputs, so its convolution and pooling collapse to one vector of 64 per node.

    Work buffers are reused between calls with the same batch size, device, dtype and
    thread: no call may keep a reference into them (the logits are a fresh tensor).
    Inference only: an input that requires a gradient is refused.
    """

    def __init__(self, state: dict[str, Any], dense_fill: float = DENSE_FILL) -> None:
        super().__init__()
        if state.get("format") != TINY_FORMAT or state.get("version") != TINY_VERSION:
            raise ValueError(f"not a compact model of format {TINY_FORMAT} v{TINY_VERSION}")
        self.meta = {k: state[k] for k in _TINY_META}
        self.level_sizes = [int(n) for n in state["level_sizes"]]
        self.counts = dict(state["counts"])
        self.dense_fill = dense_fill
        self.ptr = [0]
        for n in self.level_sizes:
            self.ptr.append(self.ptr[-1] + n)
        ops = len(self.level_sizes) - 1
        for name in _TINY_STEM:
            self.register_buffer(name, state[name])
        for l in range(ops):
            self.register_buffer(f"op{l}_norm_weight", state["norm_weight"][l])
            self.register_buffer(f"op{l}_norm_bias", state["norm_bias"][l])
            self.register_buffer(f"op{l}_conv_weight", state["conv_weight"][l])
        for l in range(1, ops + 1):
            self.register_buffer(f"edge{l}_crow", state["crow"][l - 1])
            self.register_buffer(f"edge{l}_col", state["col"][l - 1])
            self.register_buffer(f"edge{l}_value", state["value"][l - 1])
        for l in range(1, ops):
            self.register_buffer(f"const{l}", state["const"][l - 1])
        self.register_buffer("fc_weight", state["fc_weight"])
        self.register_buffer("fc_bias", state["fc_bias"])
        self._plans: dict[tuple, dict[str, list]] = {}
        self._work: dict[tuple, dict[str, Any]] = {}

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """The plain dict this module is built from (tensors on the CPU)."""
        b = {name: t.detach().cpu() for name, t in self.named_buffers()}
        ops = len(self.level_sizes) - 1
        return {"format": TINY_FORMAT, "version": TINY_VERSION, **self.meta,
                "level_sizes": list(self.level_sizes), "counts": dict(self.counts),
                **{name: b[name] for name in _TINY_STEM},
                "norm_weight": [b[f"op{l}_norm_weight"] for l in range(ops)],
                "norm_bias": [b[f"op{l}_norm_bias"] for l in range(ops)],
                "conv_weight": [b[f"op{l}_conv_weight"] for l in range(ops)],
                "crow": [b[f"edge{l}_crow"] for l in range(1, ops + 1)],
                "col": [b[f"edge{l}_col"] for l in range(1, ops + 1)],
                "value": [b[f"edge{l}_value"] for l in range(1, ops + 1)],
                "const": [b[f"const{l}"] for l in range(1, ops)],
                "fc_weight": b["fc_weight"], "fc_bias": b["fc_bias"]}

    def num_parameters(self) -> int:
        """Weights, biases and folded constants kept (floating-point entries; CSR index arrays excluded)."""
        return sum(t.numel() for t in self.buffers() if t.is_floating_point())

    def num_nodes(self) -> int:
        """Kept nodes: input, hidden and output nodes with a path from an input and to an output."""
        return self.ptr[-1]

    def num_edges(self) -> int:
        """Real edges between kept nodes."""
        return sum(int(getattr(self, f"edge{l}_value").numel()) for l in range(1, len(self.level_sizes)))

    # ------------------------------------------------------------------ derived operators
    def _plan(self, device: torch.device, dtype: torch.dtype) -> dict[str, list]:
        """Per device and dtype: each level's edge operator (dense, CSR or None when it has
        no edges), each full op level's ``[n, 64, 64]`` convolution matrices, the pooling
        vector ``[64, 1]`` and the last op level's convolution-and-pooling vectors
        ``[n, 64, 1]``. Built once from the buffers."""
        key = (device, dtype)
        if key in self._plans:
            return self._plans[key]
        g = self.meta["grid"]
        hw = g * g
        ops = len(self.level_sizes) - 1
        edges: list[Tensor | None] = [None]
        for l in range(1, ops + 1):
            crow, col = getattr(self, f"edge{l}_crow"), getattr(self, f"edge{l}_col")
            value = getattr(self, f"edge{l}_value").to(dtype)
            rows, cols = self.level_sizes[l], self.ptr[l]
            if value.numel() == 0 or rows == 0:
                edges.append(None)
                continue
            mat = torch.sparse_csr_tensor(crow, col, value, (rows, cols), check_invariants=False)
            edges.append(mat.to_dense() if value.numel() >= self.dense_fill * rows * cols else mat)
        convs: list[Tensor] = []
        for l in range(ops - 1):
            kernel = getattr(self, f"op{l}_conv_weight").to(dtype)
            n = kernel.size(0)
            if n == 0:
                convs.append(kernel.new_zeros(0, hw, hw))
                continue
            impulses = torch.eye(hw, device=device, dtype=dtype).view(hw, 1, g, g).expand(hw, n, g, g)
            response = F.conv2d(impulses, kernel, padding=kernel.size(-1) // 2, groups=n)   # [in, n, out]
            convs.append(response.reshape(hw, n, hw).transpose(0, 1).contiguous())
        c = g // 2 - 2                                  # first pooled row and column (see centre_pool)
        pool = torch.zeros(g, g, device=device, dtype=dtype)
        pool[c:c + 2, c:c + 2] = 0.25
        kernel = getattr(self, f"op{ops - 1}_conv_weight").to(dtype)
        last = kernel.new_zeros(kernel.size(0), g, g)   # the pooled output of the convolution
        for dr in (0, 1):
            for dc in (0, 1):
                last[:, c - 1 + dr:c + 2 + dr, c - 1 + dc:c + 2 + dc] += kernel[:, 0] / 4
        plan = {"edges": edges, "convs": convs, "pool": [pool.view(hw, 1)], "last": [last.view(-1, hw, 1)]}
        self._plans[key] = plan
        return plan

    def _workspace(self, batch: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """Work buffers for one batch size (and device, dtype, thread, inference mode)."""
        key = (batch, device, dtype, threading.get_ident(), torch.is_inference_mode_enabled())
        if key in self._work:
            return self._work[key]
        if len(self._work) >= 8:
            self._work.pop(next(iter(self._work)))
        hw = self.meta["grid"] ** 2
        ops = len(self.level_sizes) - 1
        new = functools.partial(torch.zeros, device=device, dtype=dtype)
        work = {"states": new(self.ptr[ops - 1], batch * hw),
                "inputs": new(max(self.level_sizes[:ops]), batch * hw),
                "pooled": new(self.ptr[ops], batch), "outputs": new(self.level_sizes[ops], batch),
                "norm_weight": [getattr(self, f"op{l}_norm_weight").to(dtype).repeat_interleave(batch)
                                for l in range(ops)],
                "norm_bias": [getattr(self, f"op{l}_norm_bias").to(dtype).repeat_interleave(batch)
                              for l in range(ops)]}
        self._work[key] = work
        return work

    def _apply(self, fn, recurse=True):
        self._plans, self._work = {}, {}
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _product(op: Tensor | None, x: Tensor, out: Tensor) -> Tensor:
        if op is None:
            return out.zero_()
        if op.layout == torch.sparse_csr:
            return torch.addmm(out, op, x, beta=0, out=out)
        return torch.mm(op, x, out=out)

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("CompactTiny is inference-only: run it under torch.no_grad() on inputs "
                               "that do not require a gradient")
        batch, m = x.size(0), self.meta
        g, sizes, ptr = m["grid"], self.level_sizes, self.ptr
        hw, ops = g * g, len(sizes) - 1
        plan, work = self._plan(x.device, x.dtype), self._workspace(batch, x.device, x.dtype)
        states, pooled = work["states"], work["pooled"]
        if m["pad"]:
            x = F.pad(x, (m["pad"],) * 4)
        h = F.conv2d(x, self.stem_weight, self.stem_bias, stride=m["stride1"], padding=1).relu_()
        h = F.conv2d(h, self.stem_dw_weight, self.stem_dw_bias, stride=m["stride2"], padding=1, groups=h.size(1))
        if tuple(h.shape[-2:]) != (g, g):
            h = F.adaptive_avg_pool2d(h, g)
        h = h.transpose(0, 1).reshape(h.size(1), -1)                             # node-major [16, B*64]
        for l in range(ops):
            n = sizes[l]
            if n == 0:
                continue
            inputs = work["inputs"][:n]
            if l == 0:
                torch.addmm(self.stem_pw_bias[:, None], self.stem_pw_weight, h, out=inputs)
            else:
                self._product(plan["edges"][l], states[:ptr[l]], inputs)
                const = getattr(self, f"const{l}")
                if const.numel():
                    inputs.view(n, batch, hw).add_(const[:, None, :])
            z = F.group_norm(inputs.view(1, n * batch, hw), n * batch, work["norm_weight"][l],
                             work["norm_bias"][l], m["eps"]).relu_().view(n, batch, hw)
            if l < ops - 1:
                torch.bmm(z, plan["convs"][l], out=states[ptr[l]:ptr[l + 1]].view(n, batch, hw))
            else:
                torch.bmm(z, plan["last"][0], out=pooled[ptr[l]:ptr[l + 1]].view(n, batch, 1))
        full = ptr[ops - 1]
        if full:
            torch.mm(states.view(full * batch, hw), plan["pool"][0], out=pooled[:full].view(full * batch, 1))
        outputs = self._product(plan["edges"][ops], pooled, work["outputs"])
        return torch.addmm(self.fc_bias, outputs.t(), self.fc_weight.t())


def load_compact(path: str | Path, map_location: str | torch.device = "cpu") -> CompactMobileNet | CompactTiny:
    """The compact model saved at ``path`` (``torch.load(weights_only=True)``), in eval mode:
    a :class:`CompactMobileNet` or a :class:`CompactTiny`, as its ``format`` says."""
    return from_state(torch.load(path, map_location=map_location, weights_only=True))


def from_state(state: dict[str, Any]) -> CompactMobileNet | CompactTiny:
    """The compact module of a plain ``state`` dict, chosen by its ``format``, in eval mode."""
    kinds = {FORMAT: CompactMobileNet, TINY_FORMAT: CompactTiny}
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt not in kinds:
        raise ValueError(f"not a compact model (format {fmt!r}; expected one of {', '.join(kinds)})")
    return kinds[fmt](state).eval()


def save_compact(model: CompactMobileNet | CompactTiny, path: str | Path) -> None:
    """Write ``model.state()`` to ``path`` (a ``.pt`` of plain tensors and types), atomically
    and with the user's umask (:func:`wiring.files.atomic_write`: a kill or an error leaves
    the old file or the new one, never half of one)."""
    from wiring.files import atomic_write  # the project's writer; the loader above needs only torch

    state = model.state()
    atomic_write(path, lambda f: torch.save(state, f), binary=True)


# ----------------------------------------------------------------------------- extraction (needs the project)

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
    from models.mobilenet import MobileNetV1DNW

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
    from models.tiny import GRID, TinyClassifier, centre_pool

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
    from models.mobilenet import MobileNetV1DNW
    from models.tiny import TinyClassifier

    if isinstance(model, MobileNetV1DNW):
        return CompactMobileNet(compact_state(model)).eval()
    if isinstance(model, TinyClassifier):
        return CompactTiny(tiny_state(model, image_size)).eval()
    raise ValueError(f"compaction supports the MobileNetV1-DNW models (mobilenetv1_dnw, mobilenetv1_dnw_small) "
                     f"and the static tiny classifier (tiny, micro), not {type(model).__name__}")


# ----------------------------------------------------------------------------- CLI

def load_run_model(run_dir: Path, checkpoint: Path | None = None, best: bool = False) -> nn.Module:
    """The trained model of a run directory (as ``wiring.export`` rebuilds it), in eval mode; a
    model that does not record its input side (the tiny classifier) gets the run's as ``image_size``."""

    from wiring.io import BEST_FILE, CHECKPOINT_FILE
    from wiring.train.checkpoint import CheckpointError, load_checkpoint
    from wiring.train.pipeline import model_from_checkpoint

    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory {run_dir}")
    ckpt = load_checkpoint(checkpoint or run_dir / (BEST_FILE if best else CHECKPOINT_FILE))
    model = model_from_checkpoint(ckpt).eval()
    if getattr(model, "image_size", None) is None:
        model.image_size = int(ckpt["data_info"]["image_size"])
    return model


@torch.no_grad()
def time_alternating(models: dict[str, Callable[[Tensor], Tensor]], x: Tensor,
                     repeats: int) -> dict[str, float]:
    """Median seconds per call of each of ``models`` on ``x``: one warm-up call each, then
    ``repeats`` rounds calling all of them, in reverse order on every other round."""
    for fn in models.values():
        fn(x)
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models.items())
    for i in range(repeats):
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


PROG = "python -m wiring.compact"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, 1 when the compact model does not match, or 2 and one line
    ``python -m wiring.compact: error: ...`` for a user mistake."""
    from wiring.cli import run_cli

    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from wiring.cli import ArgumentParser, error_line
    from wiring.errors import UserError

    parser = ArgumentParser(prog=PROG,
                            description="Compact a trained MobileNetV1-DNW or static tiny classifier run into "
                                        "a standalone inference model (dead nodes removed, sparse real edges).")
    parser.add_argument("run_dir", type=Path, help="run directory written by wiring.train")
    parser.add_argument("-o", "--out", type=Path, help="output file (default RUN_DIR/compact.pt)")
    parser.add_argument("--best", action="store_true", help="use best.pt instead of checkpoint.pt")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint file to read instead")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the check and the timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards of each model")
    args = parser.parse_args(argv)
    from wiring.train.allocator import tune_malloc
    tune_malloc()                                   # an entry point: freed blocks stay warm (see wiring.train.allocator)
    if args.batch < 1 or args.repeats < 1:
        raise UserError("--batch and --repeats must be at least 1")
    out = args.out or args.run_dir / "compact.pt"
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist")
    if out.suffix.lower() in (".graphml", ".txt"):
        raise UserError(f"-o {out}: the compact model is a torch .pt file, not {out.suffix}; name it "
                        f"{out.with_suffix('.pt').name}")
    try:
        model = load_run_model(args.run_dir, args.checkpoint, args.best)
        compact = compact_model(model)
    except ValueError as err:       # CheckpointError, ConfigError, GraphError, and a model it cannot compact
        if isinstance(err, UserError):
            raise
        raise UserError(str(err)) from None
    save_compact(compact, out)
    reloaded = load_compact(out)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, compact.meta["in_channels"], compact.meta["image_size"],
                    compact.meta["image_size"], generator=gen)
    with torch.no_grad():
        expected = model(x)
        diff = float((expected - reloaded(x)).abs().max())
        relative = diff / max(1.0, float(expected.abs().max()))
    med = time_alternating({"model": model, "compact": reloaded}, x, args.repeats)
    t_model, t_compact = med["model"], med["compact"]
    total = sum(p.numel() for p in model.parameters())
    print(f"compact model: {out}")
    print(f"  parameters  {total:,} in the training model (all candidates) -> {compact.num_parameters():,} "
          f"(real edges between live nodes)")
    if isinstance(compact, CompactTiny):
        n = compact.counts
        print(f"  graph       {n['nodes']} nodes -> {n['kept']} kept ({n['dead']} dead removed, {n['constant']} "
              f"constant folded); {n['edges']} real edges -> {n['kept_edges']} between kept nodes")
    print(f"  check       max |logit difference| {diff:.2e} ({relative:.2e} of the largest logit) on a "
          f"random batch of {args.batch}")
    print(f"  speed       batch {args.batch}: training model in eval mode {t_model * 1e3:.2f} ms, compact "
          f"{t_compact * 1e3:.2f} ms (median of {args.repeats}, alternating): "
          f"{t_model / max(t_compact, 1e-12):.2f}x")
    print(f"  load with   wiring.compact.load_compact({str(out)!r}) (imports only torch)")
    if relative > 1e-4:
        print(error_line(PROG, "the compact model does not match the training model"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
