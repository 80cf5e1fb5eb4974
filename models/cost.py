"""The parameter count of a trained network at inference: one definition, used everywhere.

``wiring.train``'s setup line and its closing line, ``wiring.profile`` and ``wiring.compact``
all print :func:`inference_parameters`, so one run gives one number. The definition:

    **parameters of the inference network** = every learned parameter of the model
    (weights and biases, BatchNorm's and the node norms' affine pairs; running statistics
    are buffers and do not count), except

    * candidate weights that are not evaluation-time real edges into **live** nodes (a
      node is live when it has a path along real edges to an output:
      :meth:`wiring.layer.WiredGraph.live_nodes`; a real edge into a dead node is
      dropped), and the unchosen weights of a sparsified model's DNW layers;
    * the per-node parameters of dead nodes: their node op (the norm's affine pair and
      the 3x3 kernel) and, for a dead input node, the stem channel that feeds only it
      (its 1x1 convolution row, bias and BatchNorm pair). MobileNetV1-DNW counts itself
      (``cost()``, across stages: a stage output that is dead as the next stage's input
      is dead, with its stem channel or classifier column).

Live nodes that no input reaches are kept (they compute an input-independent map that
still reaches an output); ``wiring.compact`` folds them into constants and BatchNorm into
its operators, so the compact file stores a different number of values (it prints both).

>>> from models import create_model
>>> m = create_model("micro", in_channels=1, num_classes=10, image_size=8, edges=200, mode="complete")
>>> inference_parameters(m) == sum(p.numel() for p in m.parameters())   # every candidate real and live
True
"""
from __future__ import annotations

from torch import Tensor, nn

from models.dynamic import DynamicClassifier
from models.tiny import TinyClassifier
from wiring.layer import WiredGraph
from wiring.sparsify import budget_of

__all__ = ["inference_parameters", "node_rows"]


def _live_edges(layer: WiredGraph, live: Tensor) -> int:
    """Evaluation-time real edges of ``layer`` whose target is live (their sources are then live too)."""
    mask = layer.real_mask().cpu()
    return int(live[layer.edge_index.cpu()[1, mask]].sum())


def node_rows(model: nn.Module) -> list[tuple[nn.Module, Tensor]]:
    """``(module, live)`` for every module of the tiny classifiers whose rows (or output
    channels) are the graph's nodes: each level's node op, and the stem's 1x1 convolution
    and BatchNorm whose channels are the input nodes; ``live`` is the bool mask of those
    rows. Other models: ``[]``."""
    if not isinstance(model, (TinyClassifier, DynamicClassifier)):
        return []
    live = model.graph.live_nodes()
    inputs = int(model.graph.graph.level_sizes[0]) if isinstance(model, TinyClassifier) else model.inputs
    stem = model.stem.layers
    rows: list[tuple[nn.Module, Tensor]] = [(stem[4], live[:inputs]), (stem[5], live[:inputs])]
    if isinstance(model, TinyClassifier):
        ptr = model.graph.graph.level_ptr
        rows += [(op, live[int(ptr[l]):int(ptr[l + 1])]) for l, op in enumerate(model.node_ops)]
    else:
        rows.append((model.node_op, live))
    return rows


def inference_parameters(model: nn.Module) -> int:
    """The parameters of ``model``'s inference network, as the module docstring defines them."""
    cost = getattr(model, "cost", None)
    if callable(cost):                      # MobileNetV1-DNW: exact, across its stages
        return int(cost()["params"])
    total = sum(p.numel() for p in model.parameters())
    for layer in (m for m in model.modules() if isinstance(m, WiredGraph)):
        total -= layer.num_candidates - _live_edges(layer, layer.live_nodes())
    budget = budget_of(model)
    if budget is not None:
        total -= budget.total - budget.k
    for module, live in node_rows(model):
        per_row = sum(p.numel() for p in module.parameters()) // live.numel()
        total -= per_row * int((~live).sum())
    return int(total)
