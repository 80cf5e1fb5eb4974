"""``python -m wiring.profile``: honest inference cost, MACs and parameters.

Counts what an inference network needs, not what training holds:

* only **real edges** (the evaluation-time real set: top-k, or all for ``complete``),
  one multiply-accumulate per edge and output position, one parameter per edge;
* only **live nodes**: a node is dead when it has no path along real edges to an
  output (the tensor equivalent of :func:`wiring.topology.dead_nodes` restricted to
  that side: see :meth:`wiring.layer.WiredGraph.live_nodes`); dead nodes, their ops and their in-edges are
  dropped, and in MobileNetV1-DNW a stage output that is dead as the next stage's
  input is dead too (so is the stem channel feeding it);
* MACs of convolutions, graph edges and linear layers (a k x k depthwise
  convolution costs k*k per output position); BatchNorm, ReLU and pooling count no
  MACs (BN folds into a neighbouring linear op at inference), as in the MobileNet
  paper's figures;
* parameters: :func:`models.cost.inference_parameters`, the one definition that
  ``wiring.train`` and ``wiring.compact`` print too: every remaining weight and bias,
  BatchNorm's affine pair included (running statistics are buffers, not parameters).

Nodes that no input reaches but that reach an output are kept: they compute
input-independent maps (BN's shift through ReLU and a zero-padded convolution) that
still reach the outputs, so removing them would change the network.

MobileNetV1 x0.25 at 224 with 1000 classes: 41,030,272 MACs (41M) and 470,072
parameters (0.47M); x0.5: 149,497,088 MACs (149M) and 1,331,592 parameters (1.3M).
MobileNetV1-DNW x0.225 with its initial random wiring (the paper's RG x0.225, 55.7M):
55.1M MACs.

Models with a ``cost()`` method (MobileNetV1-DNW) count themselves exactly; any
other model is measured by a batch-1 forward with hooks on convolutions, linear
layers, node ops and graph aggregations, each counting live rows only (the tiny
classifiers' dead nodes are removed as above; ``dead_nodes_removed`` is False only for
a model with a graph whose node ops :func:`models.cost.node_rows` does not know).

Usage::

    python -m wiring.profile --model mobilenetv1 --width 0.25 --image-size 224 [--classes 1000] [--json]
    python -m wiring.profile --model mobilenetv1_dnw --width 0.225 [--node-width 1] [--edges K is ignored]
    python -m wiring.profile --model resnet50 [--edges K] [--mode complete]
    python -m wiring.profile --run RUN_DIR [--best] [--json]

``--model`` builds what ``python -m wiring.train`` builds from the same flags
(:func:`wiring.train.build.build_model`): ``--edges`` defaults to the trainer's
(:data:`models.registry.DEFAULT_EDGES`) for every model whose budget is its edges
(ResNet-50 included; ``--mode complete`` for the dense network).

``--json`` prints ``{"macs": ..., "params": ...}``. User mistakes exit 2 with one line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

from models import DEFAULT_EDGES, MODELS
from wiring.backends import kernels
from wiring.cli import ArgumentParser, run_cli
from wiring.errors import UserError
from wiring.graph import GraphError
from wiring.io import BEST_FILE, CHECKPOINT_FILE
from wiring.lazy import lazy_module
from wiring.train.checkpoint import CheckpointError, load_checkpoint
from wiring.train.config import Config

if TYPE_CHECKING:
    from torch import Tensor, nn

    from wiring.layer import WiredGraph

# the networks, their costs and torch load when the command runs, not for --help
torch = lazy_module("torch")


def live_nodes(layer: WiredGraph, outputs: Tensor | None = None) -> Tensor:
    """Bool ``[num_nodes]``: the nodes with a path along ``layer``'s evaluation-time
    real edges to a node of ``outputs`` (default: the output-role nodes); the same as
    :meth:`wiring.layer.WiredGraph.live_nodes`.

    >>> from wiring.graph import static_graph
    >>> from wiring.layer import WiredGraph
    >>> layer = WiredGraph(static_graph([2, 2, 1]), edges=8)
    >>> live_nodes(layer).tolist()
    [True, True, True, True, True]
    """
    return layer.live_nodes(outputs)


def _generic_cost(model: nn.Module, in_channels: int, image_size: int) -> dict[str, Any]:
    """Batch-1 forward with hooks: convolutions, linear layers, node ops, real-edge
    aggregations, each counted for its live rows only (:func:`models.cost.node_rows`: a
    dead node's op and stem channel, an edge into a dead node cost nothing). Parameters:
    :func:`models.cost.inference_parameters`."""
    from torch import nn

    from models.cost import inference_parameters, node_rows
    from wiring.layer import WiredGraph
    from wiring.nodeops import NormReLUConv
    macs = 0
    rows = node_rows(model)
    live_share = {id(m): int(live.sum()) / max(live.numel(), 1) for m, live in rows}

    def conv_hook(module, inputs, out):
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1]
        macs += round(out.numel() * (module.in_channels // module.groups) * k * live_share.get(id(module), 1.0))

    def linear_hook(module, inputs, out):
        nonlocal macs
        macs += out.numel() * module.in_features

    def node_hook(module, inputs, out):
        nonlocal macs
        macs += round(out.numel() * module.conv_weight.size(-1) * module.conv_weight.size(-2)
                      * live_share.get(id(module), 1.0))

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, NormReLUConv):
            handles.append(m.register_forward_hook(node_hook))
    wirings = [m for m in model.modules() if isinstance(m, WiredGraph)]

    def counting(layer: WiredGraph):
        original = layer.aggregate
        into_live = layer.live_nodes().to(layer.edge_index.device)[layer.edge_index[1]]

        def aggregate(x, selection, level=None):
            nonlocal macs
            used = selection.mask & into_live
            if level is not None:
                used = used[layer._cand_ptr[level]:layer._cand_ptr[level + 1]]
            macs += int(used.sum()) * x.size(1)
            return original(x, selection, level)
        return aggregate

    for layer in wirings:
        layer.aggregate = counting(layer)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), kernels.disabled():       # the level-by-level path calls the hooks
            model(torch.zeros(1, in_channels, image_size, image_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
        for layer in wirings:
            del layer.aggregate
    return {"macs": int(macs), "params": inference_parameters(model), "parts": [],
            "dead_nodes_removed": not wirings or bool(rows)}


def profile_model(model: nn.Module, *, in_channels: int = 3, image_size: int = 224) -> dict[str, Any]:
    """``{"macs", "params", "parts", "dead_nodes_removed"}`` of ``model`` at inference."""
    if hasattr(model, "cost"):
        return model.cost()
    return _generic_cost(model, in_channels, image_size)


def _fmt(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f}M)"


def _report(title: str, cost: dict[str, Any]) -> str:
    lines = [title, f"  MACs        {_fmt(cost['macs'])}", f"  parameters  {_fmt(cost['params'])}"]
    for p in cost["parts"]:
        extra = "".join(f"  {k} {p[k]}" for k in ("nodes", "edges") if k in p)
        lines.append(f"    {p['part']:<17} MACs {p['macs']:>13,}  params {p['params']:>10,}{extra}")
    if not cost["dead_nodes_removed"]:
        lines.append("  (real edges only; this model's dead nodes are not removed)")
    return "\n".join(lines)


def _from_run(run_dir: Path, best: bool) -> tuple[nn.Module, Any, str]:
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory {run_dir}")
    from wiring.train.build import model_from_checkpoint
    ckpt = load_checkpoint(run_dir / (BEST_FILE if best else CHECKPOINT_FILE))
    model = model_from_checkpoint(ckpt)
    info = SimpleNamespace(**ckpt["data_info"])
    return model, info, f"{run_dir} ({ckpt['config'].get('model')}, {info.channels}x{info.image_size}x" \
                        f"{info.image_size}, {info.num_classes} classes)"


PROG = "python -m wiring.profile"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m wiring.profile: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=f"a registered model ({', '.join(MODELS)})")
    source.add_argument("--run", type=Path, metavar="RUN_DIR", help="a run directory written by wiring.train")
    parser.add_argument("--best", action="store_true", help="with --run: best.pt instead of checkpoint.pt")
    parser.add_argument("--width", type=float, help="width multiplier")
    parser.add_argument("--node-width", type=float,
                        help="MobileNetV1-DNW: channel multiplier of the graphs' nodes (default max(1, width))")
    parser.add_argument("--image-size", type=int, default=224, help="input side in pixels (default 224)")
    parser.add_argument("--classes", type=int, default=1000, help="output classes (default 1000)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    parser.add_argument("--edges", type=int, help=f"real edges, as wiring.train's --edges (default {DEFAULT_EDGES}; "
                                                  f"the MobileNetV1 models ignore it: their budget per graph comes "
                                                  f"from --width)")
    parser.add_argument("--mode", default="dnw", help="how real edges are chosen (default dnw; complete: every "
                                                      "candidate real)")
    parser.add_argument("--graph", default="random_k", help="initial wiring preset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial wiring (default 0)")
    parser.add_argument("--json", action="store_true", help='print {"macs": ..., "params": ...}')
    args = parser.parse_args(argv)
    try:
        if args.run is not None:
            model, info, title = _from_run(args.run, args.best)
            in_channels, image_size = info.channels, info.image_size
        else:
            if args.model not in MODELS:
                raise GraphError(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
            if args.image_size < 8 or args.classes < 1 or args.in_channels < 1:
                raise GraphError("--image-size must be at least 8, --classes and --in-channels at least 1")
            from wiring.train.build import build_model
            cfg = Config(model=args.model, width=args.width, edges=DEFAULT_EDGES if args.edges is None else args.edges,
                         mode=args.mode, graph=args.graph, seed=args.seed)     # what wiring.train builds
            options: dict[str, Any] = {}
            if args.node_width is not None:
                if not MODELS[args.model].takes("node_width"):
                    raise GraphError(f"--node-width: model {args.model} has no graph nodes to scale")
                options["node_width"] = args.node_width
            data = SimpleNamespace(channels=args.in_channels, num_classes=args.classes, image_size=args.image_size)
            model = build_model(cfg, data, **options)
            in_channels, image_size = args.in_channels, args.image_size
            width = f" x{args.width:g}" if args.width is not None else ""
            title = f"{args.model}{width} at {image_size}x{image_size}, {args.classes} classes"
        cost = profile_model(model, in_channels=in_channels, image_size=image_size)
    except ValueError as err:       # GraphError, CheckpointError, ConfigError, and the models' own refusals
        if isinstance(err, UserError):
            raise
        raise UserError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    if args.json:
        print(json.dumps({"macs": cost["macs"], "params": cost["params"]}))
    else:
        print(_report(title, cost))
    return 0


if __name__ == "__main__":
    sys.exit(main())
