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

Its state is a plain dict of tensors, numbers, strings and lists, saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``;
:func:`load_compact` rebuilds the module. This file's top-level code imports only
torch and the standard library: :class:`CompactMobileNet` and :func:`load_compact`
can be copied into a project that has nothing else of this one. Its parameter count
equals :func:`wiring.profile.profile_model`'s ``params``.

CLI: ``python -m wiring.compact RUN_DIR [-o model.pt] [--best | --checkpoint FILE]
[--batch N] [--repeats R]`` reads the run's checkpoint, rebuilds its model, compacts
it, checks the two agree on a random batch, times both (alternating, median) and
writes ``RUN_DIR/compact.pt`` (or ``-o``); ``python -m wiring.export RUN_DIR --compact``
does the same. User mistakes exit 2 with one line.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

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


def load_compact(path: str | Path, map_location: str | torch.device = "cpu") -> CompactMobileNet:
    """The compact model saved at ``path`` (``torch.load(weights_only=True)``), in eval mode."""
    return CompactMobileNet(torch.load(path, map_location=map_location, weights_only=True)).eval()


def save_compact(model: CompactMobileNet, path: str | Path) -> None:
    """Write ``model.state()`` to ``path`` (a ``.pt`` of plain tensors and types)."""
    torch.save(model.state(), path)


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


def compact_model(model: nn.Module) -> CompactMobileNet:
    """A standalone inference model equal to ``model`` in eval mode (see the module doc)."""
    return CompactMobileNet(compact_state(model)).eval()


# ----------------------------------------------------------------------------- CLI

def load_run_model(run_dir: Path, checkpoint: Path | None = None, best: bool = False) -> nn.Module:
    """The trained model of a run directory (as ``wiring.export`` rebuilds it), in eval mode."""

    from .checkpoint import CheckpointError, load_checkpoint
    from .train import model_from_checkpoint

    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory {run_dir}")
    ckpt = load_checkpoint(checkpoint or run_dir / ("best.pt" if best else "checkpoint.pt"))
    return model_from_checkpoint(ckpt).eval()


@torch.no_grad()
def time_models(a: nn.Module, b: nn.Module, x: Tensor, repeats: int = 10) -> tuple[float, float]:
    """Median seconds per forward of ``a`` and ``b`` on ``x``, alternating (one warm-up each)."""
    a(x), b(x)
    ta, tb = [], []
    for _ in range(repeats):
        for model, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import ArgumentParser

    parser = ArgumentParser(prog="python -m wiring.compact",
                                     description="Compact a trained MobileNetV1-DNW run into a standalone "
                                                 "inference model (dead nodes removed, sparse real edges).")
    parser.add_argument("run_dir", type=Path, help="run directory written by wiring.train")
    parser.add_argument("-o", "--out", type=Path, help="output file (default RUN_DIR/compact.pt)")
    parser.add_argument("--best", action="store_true", help="use best.pt instead of checkpoint.pt")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint file to read instead")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the check and the timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards of each model")
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .graph import GraphError
    try:
        if args.batch < 1 or args.repeats < 1:
            raise ValueError("--batch and --repeats must be at least 1")
        out = args.out or args.run_dir / "compact.pt"
        if not out.parent.is_dir():
            raise CheckpointError(f"-o {out}: folder {out.parent} does not exist")
        model = load_run_model(args.run_dir, args.checkpoint, args.best)
        compact = compact_model(model)
    except (CheckpointError, ConfigError, GraphError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    save_compact(compact, out)
    reloaded = load_compact(out)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, compact.meta["in_channels"], compact.meta["image_size"],
                    compact.meta["image_size"], generator=gen)
    with torch.no_grad():
        expected = model(x)
        diff = float((expected - reloaded(x)).abs().max())
        relative = diff / max(1.0, float(expected.abs().max()))
    t_model, t_compact = time_models(model, reloaded, x, args.repeats)
    total = sum(p.numel() for p in model.parameters())
    print(f"compact model: {out}")
    print(f"  parameters  {total:,} in the training model (all candidates) -> {compact.num_parameters():,} "
          f"(real edges between live nodes)")
    print(f"  check       max |logit difference| {diff:.2e} ({relative:.2e} of the largest logit) on a "
          f"random batch of {args.batch}")
    print(f"  speed       batch {args.batch}: training model in eval mode {t_model * 1e3:.2f} ms, compact "
          f"{t_compact * 1e3:.2f} ms (median of {args.repeats}, alternating): "
          f"{t_model / max(t_compact, 1e-12):.2f}x")
    print(f"  load with   wiring.compact.load_compact({str(out)!r}) (imports only torch)")
    if relative > 1e-4:
        print("error: the compact model does not match the training model", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
