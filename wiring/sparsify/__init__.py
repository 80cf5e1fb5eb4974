"""DNW for any PyTorch model: every weight of a convolution or linear layer is a candidate edge.

One module per job, all re-exported here: :mod:`~wiring.sparsify.layers` (the DNW layers,
:func:`sparsify`, the budget), :mod:`~wiring.sparsify.export` (:func:`densify`, the real
weights to a file) and :mod:`~wiring.sparsify.channels` (densities, dead channels, the
channel graph).


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

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    >>> net = sparsify(net, density=0.1)
    >>> num_real(net), sum(m.weight.numel() for m in sparse_layers(net).values())
    (310, 3096)
    >>> net(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

from wiring.modes import SPARSE_MODES
from wiring.sparsify.channels import channel_graph, dead_channels, layer_density
from wiring.sparsify.export import densify, export_sparse, load_sparse
from wiring.sparsify.layers import (
    SCOPES,
    DNWConv2d,
    DNWLinear,
    SparseBudget,
    budget_of,
    candidate_layers,
    check_sparse,
    num_real,
    real_masks,
    sparse_layers,
    sparsify,
)

__all__ = [
    "SPARSE_MODES",
    "SCOPES",
    "SparseBudget",
    "DNWConv2d",
    "DNWLinear",
    "sparsify",
    "densify",
    "sparse_layers",
    "budget_of",
    "num_real",
    "real_masks",
    "check_sparse",
    "export_sparse",
    "load_sparse",
    "layer_density",
    "dead_channels",
    "channel_graph",
    "candidate_layers",
]
