"""MobileNetV1 (dense baseline) and MobileNetV1-DNW (the DNW paper's ImageNet models).

Both follow MobileNetV1's five stages ``(in, out, stride, blocks)``::

    (32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2)

after a 3x3 stem convolution (3 -> 32) of stride 2 for large images (ImageNet,
224x224: 112x112 maps) and stride 1 for small ones (side <= 64, e.g. CIFAR's
32x32), as the authors' code does. A channel count ``c`` at width multiplier ``d``
is ``int(c * d)`` (x0.25: 8, 16, 32, 64, 128, 256; x0.225: 7, 14, 28, 57, 115, 230);
``d`` must give every layer at least one channel (``d >= 1/32``).

``mobilenetv1`` (:class:`MobileNetV1`): the plain dense network, no wiring. Block =
depthwise 3x3 (stride) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU; then global
average pool and a linear classifier. x0.25 at 224 with 1000 classes: 41.0M MACs,
470,072 parameters; x0.5: 149.5M MACs, 1,331,592 parameters (see :mod:`wiring.profile`).

``mobilenetv1_dnw`` (:class:`MobileNetV1DNW`): in every stage the pointwise
convolutions become **one learned graph**, a :class:`~wiring.layer.WiredGraph` on
``static_graph([in] + [out] * blocks)``: level 0 holds the stage's input channels
(the previous stage's outputs, or the stem's channels), level ``j`` the output
channels of block ``j``; candidates are every pair from a lower to a higher level,
so an edge may skip to any later block of the stage. A node is a channel; the op
of the nodes of level ``j < blocks`` is BN -> ReLU -> depthwise 3x3 (the depthwise
convolution of block ``j + 1``, so level 0's op carries the stage's stride); the
last level only sums its real in-edges (its nodes are the next stage's level 0).
After the last stage: BN -> ReLU -> global average pool -> linear (pre-activation
order, as the authors' code).

* **Nodes and budget.** As in the paper, the width multiplier ``d`` sets the
  *edge budget*, not the node count: the graph's nodes are MobileNetV1's channels
  at ``node_width`` (default ``max(1, d)``: the full-width channels, like the
  authors' ``MobileNetV1Like``), and

      k(stage) = c_in(d) * c_out(d) + (blocks - 1) * c_out(d) ** 2

  real edges, exactly the number of weights of MobileNetV1 x d's dense pointwise
  matrices in that stage (x0.225: the paper's "x0.225^2 of the dense pointwise
  matrices" up to integer channels). The learned wiring picks which channels live;
  dead nodes (no path to an output) are dropped for inference
  (:mod:`wiring.profile`, :mod:`wiring.compact`). ``node_width=d`` gives the
  other reading, nodes scaled by ``d`` (then a one-block stage is complete).
* **--edges.** The trainer's ``edges`` is ignored by these models, except ``None``
  (``--mode complete`` or ``--graph complete``), which makes every candidate of every
  graph real: the budget is a per-stage property set by ``--width`` (one number would
  have to be split over graphs of very different sizes), and ``wiring.train.config`` refuses
  an ``--edges`` the user gives for them. From Python, ``budget=K`` splits a total of
  K edges over the graphs in proportion to their default k.
* **Stride.** A node's state has the spatial size of its level. The stride of a
  stage sits in the depthwise convolution of its first block, which is the op of
  level 0: level-0 nodes take ``H x W`` maps in and give ``H/s x W/s`` states, so
  every state the stage's edges add (levels 0 .. blocks) is at the stage's output
  size and the whole stage aggregates at one resolution. This is exactly how the
  authors handle it (``Block.downsample``: BN -> ReLU -> strided depthwise on the
  input channels before the first pointwise product); nothing needs resampling.
* ``mobilenetv1_dnw_small``: the classifier is a learned graph too,
  ``static_graph([C_last, classes])`` with ``k = int(1024 d) * classes`` (the dense
  classifier's weight count at width d) plus a bias per class (the paper's
  "MobileNetV1-DNW-small").
* **Initialisation** (``init``). ``"authors"`` (the default): PyTorch's defaults of
  the authors' ``MobileNetV1Like``, whose stage graph is one dense 1x1 convolution
  from the ``c_in + (blocks - 1) c_out`` channels that send (node width) to the
  ``blocks c_out`` that receive: every candidate of a stage ``U(-1/sqrt(S), 1/sqrt(S))``
  with that per-stage fan-in ``S`` (:func:`wiring.presets.fan_in`; the small
  classifier's ``S`` is its input features), and every depthwise node kernel
  ``U(-1/3, 1/3)`` (``nn.Conv2d(c, c, 3, groups=c)``, fan-in 9). ``"kaiming"``: the
  engine's earlier init (edges normal, std ``sqrt(2 / mean candidate fan-in)``; kernels
  ``kaiming_normal_(fan_out)``, std ``sqrt(2 / (9 c))``). The stem convolution, the batch
  norms and the dense classifier are PyTorch's defaults under both, as the dense
  :class:`MobileNetV1`.

Every wiring mode and preset works per graph (each graph has its own k, its own
seed ``seed + index``). The ``graphml`` preset takes ``wiring=`` either a dict
``{module name: Wiring}`` or one Wiring, which starts every graph with as many nodes
as it has (at least one must match); the other graphs start ``random_k``.

Node features are node-major ``[channels, batch*H*W]`` from the stem to the pool.
The model is built for one ``image_size``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.registry import register
from wiring.graph import GraphError, Wiring, apportion, static_graph
from wiring.layer import WiredGraph
from wiring.nodeops import NormReLUConv, node_major

STAGES: tuple[tuple[int, int, int, int], ...] = (
    (32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2))


# ----------------------------------------------------------------------------- sizes

def check_width(width: Any, stages: Sequence[tuple[int, int, int, int]] = STAGES, what: str = "width") -> float:
    """``width`` as a float, or :class:`GraphError` when it is not a positive number
    giving every layer at least one channel.

    >>> check_width(0.25)
    0.25
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise GraphError(f"{what} must be a positive number, got {width!r}")
    smallest = min(min(c_in, c_out) for c_in, c_out, _, _ in stages)
    if int(smallest * width + 1e-9) < 1:
        raise GraphError(f"{what} {width} leaves a layer of {smallest} channels with none "
                         f"(the smallest usable width is {1 / smallest:g})")
    return float(width)


def channels(c: int, width: float) -> int:
    """MobileNetV1's channel count ``int(c * width)`` (no rounding to multiples of 8).

    >>> [channels(c, 0.225) for c in (32, 64, 128, 256, 512, 1024)]
    [7, 14, 28, 57, 115, 230]
    """
    return int(c * width + 1e-9)


def stem_stride(image_size: int) -> int:
    """2 for ImageNet-size inputs, 1 for small ones (side <= 64), as the authors."""
    return 1 if image_size <= 64 else 2


def conv_out(size: int, stride: int) -> int:
    """Side after a 3x3 convolution with padding 1."""
    return (size - 1) // stride + 1


def dense_pointwise_edges(c_in: int, c_out: int, blocks: int, width: float) -> int:
    """Weights of MobileNetV1 x ``width``'s dense pointwise matrices in one stage:
    ``c_in(d) c_out(d) + (blocks - 1) c_out(d)^2``.

    >>> dense_pointwise_edges(256, 512, 6, 0.25)   # 64*128 + 5*128*128
    90112
    """
    i, o = channels(c_in, width), channels(c_out, width)
    return i * o + (blocks - 1) * o * o


def _check_stages(stages: Sequence[tuple[int, int, int, int]]) -> tuple[tuple[int, int, int, int], ...]:
    stages = tuple(tuple(int(v) for v in s) for s in stages)
    if not stages or any(len(s) != 4 for s in stages):
        raise GraphError("stages must be a non-empty list of (in, out, stride, blocks)")
    for i, (c_in, c_out, stride, blocks) in enumerate(stages):
        if c_in <= 0 or c_out <= 0 or blocks <= 0 or stride not in (1, 2):
            raise GraphError(f"stage {i} {stages[i]}: channels and blocks must be positive, stride 1 or 2")
        if i and stages[i - 1][1] != c_in:
            raise GraphError(f"stage {i} takes {c_in} channels but stage {i - 1} gives {stages[i - 1][1]}")
    return stages


def _check_static(setting: str) -> None:
    if setting != "static":
        raise GraphError(f"MobileNetV1 models have static graphs only, not the {setting!r} setting")


# ----------------------------------------------------------------------------- dense baseline

class DepthwiseSeparable(nn.Module):
    """depthwise 3x3 (stride) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.depthwise(x)))
        return F.relu(self.bn2(self.pointwise(x)))


class MobileNetV1(nn.Module):
    """The dense MobileNetV1 at width multiplier ``width`` (no learned wiring).

    The wiring options the trainer passes (``edges``, ``mode``, ``preset``, ...) are
    accepted and ignored: this model has no graph.

    >>> m = MobileNetV1(width=0.25, num_classes=10, image_size=32)
    >>> m(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
                 width: float = 1.0, stages: Sequence[tuple[int, int, int, int]] = STAGES,
                 setting: str = "static", **wiring_options: Any) -> None:
        super().__init__()
        _check_static(setting)
        stages = _check_stages(stages)
        self.width = check_width(width, stages)
        self.image_size = image_size
        stem = channels(stages[0][0], self.width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stride=stem_stride(image_size), padding=1, bias=False),
            nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        blocks = []
        for c_in, c_out, stride, count in stages:
            i, o = channels(c_in, self.width), channels(c_out, self.width)
            blocks.append(DepthwiseSeparable(i, o, stride))
            blocks.extend(DepthwiseSeparable(o, o, 1) for _ in range(count - 1))
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels(stages[-1][1], self.width), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(x.mean((2, 3)))


# ----------------------------------------------------------------------------- DNW

class DNWStage(nn.Module):
    """One stage as one learned graph on levels ``[n_in] + [n_out] * blocks``.

    Input: the stage's input channels node-major at ``in_size``; output: the last
    level's node-major states at ``out_size`` (the sums of their real in-edges).
    """

    def __init__(self, n_in: int, n_out: int, stride: int, blocks: int, k: int | None,
                 in_size: tuple[int, int], *, mode: str, preset: str, seed: int,
                 preset_options: dict | None, mode_options: dict | None, init: str = "authors",
                 candidate_grad_every: int = 1) -> None:
        super().__init__()
        graph = static_graph([n_in] + [n_out] * blocks)
        self.graph = WiredGraph(graph, k, mode, preset, seed, preset_options, mode_options, init=init,
                                candidate_grad_every=candidate_grad_every)       # k None: every candidate
        self.blocks, self.stride = blocks, stride
        self.ops = nn.ModuleList([NormReLUConv(n_in, *in_size, norm="batch", stride=stride, init=init)])
        self.in_size, self.out_size = tuple(in_size), self.ops[0].out_size
        self.ops.extend(NormReLUConv(n_out, *self.out_size, norm="batch", init=init) for _ in range(blocks - 1))

    def forward(self, z: Tensor) -> Tensor:
        last = self.blocks

        def node_op(level: int, inputs: Tensor) -> Tensor:
            return inputs if level == last else self.ops[level](inputs)

        return self.graph.run_static(self.ops[0](z), node_op)[-1]


class GraphClassifier(nn.Module):
    """The small variant's classifier: a learned graph ``[features, classes]`` plus a bias."""

    def __init__(self, features: int, num_classes: int, k: int | None, *, mode: str, preset: str, seed: int,
                 preset_options: dict | None, mode_options: dict | None, init: str = "authors",
                 candidate_grad_every: int = 1) -> None:
        super().__init__()
        graph = static_graph([features, num_classes])
        self.graph = WiredGraph(graph, k, mode, preset, seed, preset_options, mode_options, init=init,
                                candidate_grad_every=candidate_grad_every)       # k None: every candidate
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, pooled: Tensor) -> Tensor:
        """``pooled`` node-major ``[features, B]`` -> logits ``[B, classes]``."""
        return self.graph.run_static(pooled, lambda level, inputs: inputs)[-1].t() + self.bias


def split_budget(budget: int, weights: Sequence[int], caps: Sequence[int]) -> list[int]:
    """``budget`` edges split in proportion to ``weights`` (largest remainders),
    each part at least 1 and at most its cap (:func:`wiring.graph.apportion`).

    >>> split_budget(10, [1, 1, 2], [100, 100, 100])
    [3, 2, 5]
    """
    return apportion(budget, weights, caps, minimum=1)


class MobileNetV1DNW(nn.Module):
    """MobileNetV1 whose stages' pointwise convolutions are learned graphs (see the module doc).

    >>> m = MobileNetV1DNW(width=0.0625, node_width=0.125, num_classes=10, image_size=16)
    >>> m(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 10])
    >>> [s.graph.k for s in m.stages] == [dense_pointwise_edges(i, o, b, 0.0625) for i, o, _, b in STAGES]
    True
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
                 width: float = 1.0, node_width: float | None = None, small: bool = False,
                 edges: int | None = 0, budget: int | None = None, mode: str = "dnw",
                 preset: str = "random_k", seed: int = 0, preset_options: dict | None = None,
                 mode_options: dict | None = None, stages: Sequence[tuple[int, int, int, int]] = STAGES,
                 setting: str = "static", init: str = "authors", candidate_grad_every: int = 1) -> None:
        super().__init__()
        _check_static(setting)
        stages = _check_stages(stages)
        self.width = check_width(width, stages)
        self.node_width = check_width(max(1.0, self.width) if node_width is None else node_width, stages,
                                      "node_width")
        if self.node_width < self.width:
            raise GraphError(f"node_width {self.node_width} is below width {self.width}: the budget of "
                             f"MobileNetV1 x{self.width} would not fit in the candidates")
        self.small, self.image_size, self.num_classes = small, image_size, num_classes
        self.in_channels = in_channels
        self.config = stages
        nw, d = self.node_width, self.width

        # budgets: k per graph = dense MobileNetV1 x d weights it replaces
        sizes = [(channels(i, nw), channels(o, nw), s, b) for i, o, s, b in stages]
        default_k = [dense_pointwise_edges(i, o, b, d) for i, o, _, b in stages]
        cands = [n_o * (b * n_i + n_o * b * (b - 1) // 2) for n_i, n_o, _, b in sizes]
        last = channels(stages[-1][1], nw)
        if small:
            default_k.append(channels(stages[-1][1], d) * num_classes)
            cands.append(last * num_classes)
        if edges is None:
            ks: list[int | None] = [None] * len(default_k)
        elif budget is not None:
            ks = list(split_budget(int(budget), default_k, cands))
        else:
            ks = list(default_k)
        names = [f"stages.{i}.graph" for i in range(len(stages))] + (["classifier.graph"] if small else [])
        graph_sizes = [n_i + b * n_o for n_i, n_o, _, b in sizes] + ([last + num_classes] if small else [])
        presets = _graph_presets(preset, preset_options, names, graph_sizes)

        self.stem = nn.Conv2d(in_channels, sizes[0][0], 3, stride=stem_stride(image_size), padding=1, bias=False)
        side = conv_out(image_size, stem_stride(image_size))
        self.stem_size = (side, side)
        self.stages = nn.ModuleList()
        size = self.stem_size
        for i, (n_i, n_o, stride, blocks) in enumerate(sizes):
            stage = DNWStage(n_i, n_o, stride, blocks, ks[i], size, mode=mode, preset=presets[i][0],
                             seed=seed + i, preset_options=presets[i][1], mode_options=mode_options,
                             init=init, candidate_grad_every=candidate_grad_every)
            self.stages.append(stage)
            size = stage.out_size
        self.bn = nn.BatchNorm1d(last)
        if small:
            self.classifier = GraphClassifier(last, num_classes, ks[-1], mode=mode, preset=presets[-1][0],
                                              seed=seed + len(sizes), preset_options=presets[-1][1],
                                              mode_options=mode_options, init=init,
                                              candidate_grad_every=candidate_grad_every)
        else:
            self.fc = nn.Linear(last, num_classes)

    def wired_graphs(self) -> list[WiredGraph]:
        """The learned graphs in forward order (stages, then the small classifier)."""
        out = [s.graph for s in self.stages]
        return out + [self.classifier.graph] if self.small else out

    def forward(self, x: Tensor) -> Tensor:
        batch = x.size(0)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise GraphError(f"this model was built for {self.image_size}x{self.image_size} inputs, "
                             f"got {tuple(x.shape[-2:])}")
        z = node_major(self.stem(x))
        for stage in self.stages:
            z = stage(z)
        n = z.size(0)
        z = F.relu(self.bn(z.reshape(1, n, -1)).view(n, -1))
        pooled = z.view(n, batch, -1).mean(2)                      # [C, B]
        return self.classifier(pooled) if self.small else self.fc(pooled.t())

    # ------------------------------------------------------------------ inference accounting
    @torch.no_grad()
    def live_masks(self) -> list[Tensor]:
        """Per graph (forward order), which nodes are live: they have a path along the
        evaluation-time real edges to a live output (the last stage's outputs all are
        with the dense classifier; the class nodes with the graph classifier), where a
        stage's output nodes are live when they are live as the next graph's inputs."""
        graphs = self.wired_graphs()
        masks: list[Tensor] = [torch.zeros(0, dtype=torch.bool)] * len(graphs)
        final = self.stages[-1].graph.graph.level_sizes[-1]
        following = torch.ones(final, dtype=torch.bool)
        start = len(self.stages)
        if self.small:
            masks[-1] = graphs[-1].live_nodes()
            following = masks[-1][:final]
        for i in range(start - 1, -1, -1):
            g = graphs[i].graph
            outputs = torch.zeros(g.num_nodes, dtype=torch.bool)
            outputs[g.num_nodes - following.numel():] = following
            masks[i] = graphs[i].live_nodes(outputs)
            following = masks[i][:g.level_sizes[0]]
        return masks

    @torch.no_grad()
    def cost(self) -> dict[str, Any]:
        """MACs and parameters of the inference network: real edges between live
        nodes and the ops of live nodes only (see :mod:`wiring.profile`)."""
        masks = self.live_masks()
        parts: list[dict[str, Any]] = []
        live0 = int(masks[0][:self.stages[0].graph.graph.level_sizes[0]].sum())
        hw = self.stem_size[0] * self.stem_size[1]
        k2 = self.stem.kernel_size[0] * self.stem.kernel_size[1]
        parts.append({"part": "stem", "macs": self.in_channels * k2 * live0 * hw,
                      "params": self.in_channels * k2 * live0, "nodes": f"{live0}/{self.stem.out_channels}"})
        for i, stage in enumerate(self.stages):
            layer, live = stage.graph, masks[i]
            g = layer.graph
            hw = stage.out_size[0] * stage.out_size[1]
            op_nodes = g.level_ptr[-2]                               # levels 0 .. blocks-1 run an op
            live_ops = int(live[:op_nodes].sum())
            e = live_edges(layer, live)
            parts.append({"part": f"stage {i + 1}", "macs": (9 * live_ops + e) * hw,
                          "params": 9 * live_ops + 2 * live_ops + e,
                          "nodes": f"{int(live.sum())}/{g.num_nodes}", "edges": f"{e}/{layer.k}"})
        final = int(masks[len(self.stages) - 1][-self.bn.num_features:].sum())
        if self.small:
            layer = self.classifier.graph
            e = live_edges(layer, masks[-1])
            parts.append({"part": "classifier graph", "macs": e, "params": 2 * final + e + self.num_classes,
                          "edges": f"{e}/{layer.k}"})
        else:
            parts.append({"part": "classifier", "macs": final * self.num_classes,
                          "params": 2 * final + final * self.num_classes + self.num_classes})
        return {"macs": sum(p["macs"] for p in parts), "params": sum(p["params"] for p in parts),
                "parts": parts, "dead_nodes_removed": True}


def live_edges(layer: WiredGraph, live: Tensor) -> int:
    """Evaluation-time real edges of ``layer`` whose target is live (their sources are then live too)."""
    mask = layer.real_mask().cpu()
    return int(live[layer.edge_index.cpu()[1, mask]].sum())


def _graph_presets(preset: str, options: dict | None, names: list[str],
                   sizes: list[int]) -> list[tuple[str, dict | None]]:
    """(preset, options) per graph; ``graphml`` goes to the graphs its wiring fits."""
    if preset != "graphml":
        return [(preset, options)] * len(names)
    wiring = (options or {}).get("wiring")
    out: list[tuple[str, dict | None]] = []
    for name, n in zip(names, sizes):
        w = wiring.get(name) if isinstance(wiring, dict) else wiring
        fits = isinstance(w, Wiring) and w.num_nodes == n
        out.append(("graphml", {**(options or {}), "wiring": w}) if fits else ("random_k", None))
    if not any(p == "graphml" for p, _ in out):
        have = wiring.num_nodes if isinstance(wiring, Wiring) else "no matching"
        raise GraphError(f"the wiring file has {have} nodes but the graphs of this model have "
                         f"{', '.join(map(str, sizes))}")
    return out


# ----------------------------------------------------------------------------- the registered networks

@register("mobilenetv1", budget="width", options=("width",))
def mobilenetv1(width: float = 1.0, **options) -> nn.Module:
    """Dense MobileNetV1 x ``width`` (no learned wiring): the baseline."""
    return MobileNetV1(width=width, **options)


@register("mobilenetv1_dnw", budget="width", options=("width", "node_width", "budget"))
def mobilenetv1_dnw(width: float = 1.0, **options) -> nn.Module:
    """MobileNetV1-DNW: each stage's pointwise convolutions are one learned graph with
    k = the dense pointwise weights of MobileNetV1 x ``width`` (see :mod:`models.mobilenet`)."""
    return MobileNetV1DNW(width=width, **options)


@register("mobilenetv1_dnw_small", budget="width", options=("width", "node_width", "budget"))
def mobilenetv1_dnw_small(width: float = 1.0, **options) -> nn.Module:
    """MobileNetV1-DNW-small: the classifier is a learned graph too."""
    return MobileNetV1DNW(width=width, small=True, **options)
