"""Compact models: a standalone inference model of a trained wiring (``python -m wiring.compact RUN_DIR``).

:func:`~wiring.compact.extract.compact_model` turns a MobileNetV1-DNW model (``mobilenetv1_dnw`` or
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
  how much of its rectangle they fill (:data:`wiring.compact.runtime.DENSE_FILL`), run on one preallocated
  node-major state buffer;
* the stem's BatchNorms folded into its convolutions; instance norm (no running
  statistics: the same in train and eval mode) -> ReLU -> depthwise 3x3 for kept nodes
  only, the 3x3 convolution of an 8x8 map as one 64 x 64 matrix per node; the output
  level on the pooled centre values the head reads. Equal to the training model in
  eval mode within float rounding (~1e-7).

Either state is a plain dict of tensors, numbers, strings and lists (``format``
``wiring-compact-mobilenetv1`` or ``wiring-compact-tiny``), saved with ``torch.save``
and read back with ``torch.load(weights_only=True)``; :func:`load_compact` rebuilds
the module its ``format`` names. :mod:`wiring.compact.runtime` imports only torch and the standard library:
:class:`CompactMobileNet`, :class:`CompactTiny` and :func:`load_compact` can be copied into a
project that has nothing else of this one; :mod:`wiring.compact.extract` builds the states
from trained models, :mod:`wiring.compact.command` is the command line.
The command prints the inference network's parameters as :func:`models.cost.inference_parameters`
defines them (what ``wiring.train`` and ``wiring.profile`` print) and, apart, the values the file
stores (``num_parameters()``): a :class:`CompactMobileNet` stores exactly that many; a
:class:`CompactTiny` stores its folded BatchNorms as biases and a constant node's
contribution as 64 values per node it feeds, so its number differs.

CLI: ``python -m wiring.compact RUN_DIR [-o model.pt] [--best | --checkpoint FILE]
[--batch N] [--repeats R]`` reads the run's checkpoint, rebuilds its model, compacts
it, checks the two agree on a random batch, times both (alternating, median) and
writes ``RUN_DIR/compact.pt`` (or ``-o``); ``python -m wiring.export RUN_DIR --compact``
does the same. User mistakes exit 2 with one line.
"""
from typing import Any

__all__ = ["CompactMobileNet", "CompactTiny", "from_state", "load_compact"]


def __getattr__(name: str) -> Any:
    # only the torch-only runtime, on first use: ``wiring.compact.load_compact`` loads nothing
    # else of the project, and ``python -m wiring.compact --help`` not even torch
    if name in __all__:
        from wiring.compact import runtime
        return getattr(runtime, name)
    raise AttributeError(f"module 'wiring.compact' has no attribute {name!r}")
