"""The compact models at run time: :class:`CompactMobileNet`, :class:`CompactTiny`, :func:`load_compact`.

Contract: this module imports only torch and the standard library, so it can be copied
into a project that has nothing else of this one. A compact state is a plain dict of
tensors, numbers, strings and lists whose ``format`` names the module that
:func:`from_state` rebuilds; :func:`load_compact` reads one saved with ``torch.save``
through ``torch.load(weights_only=True)``. See :mod:`wiring.compact` for what the
models compute and how equal they are to the training models.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMAT = "wiring-compact-mobilenetv1"
VERSION = 1


class CompactMobileNet(nn.Module):
    """Inference-only MobileNetV1-DNW: live nodes, sparse real edges, folded BatchNorm.

    Built from the plain ``state`` dict :func:`wiring.compact.extract.compact_state` makes (and
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

    Built from the plain ``state`` dict :func:`wiring.compact.extract.tiny_state` makes (and :meth:`state`
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
