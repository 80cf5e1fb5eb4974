"""Checkpoints: the one owner of their schema; atomic writes of tensors and plain types, safe loads.

A ``wiring.train`` checkpoint (``checkpoint.pt``, ``best.pt``) is one flat dict, built only by
:func:`training_checkpoint` and read only through :func:`load_checkpoint`:

================== ================================================================================
key                what it holds
================== ================================================================================
``format_version`` :data:`FORMAT_VERSION`, added by :func:`save_checkpoint`; :func:`load_checkpoint`
                   refuses another (older or newer) with one line
``model`` ...      the trainer's state (:meth:`wiring.train.trainer.Trainer.state_dict`): ``model``,
                   ``optimizer``, ``scheduler``, ``epoch``, ``step``, ``best_acc``, ``rng``,
                   ``training_forwards``, and for a stop inside an epoch ``position``, ``last_masks``
``config``         the run's settings (``Config.to_dict()``)
``version``        the ``wiring.__version__`` that wrote it
``data_info``      the data set's ``name``, ``num_classes``, ``channels``, ``image_size``, sizes
``edges``          the effective k (:func:`wiring.train.monitor.edge_budget`; a checkpoint without
                   it predates it: its config then holds that k)
``run_id``         the run's identity, as in its metrics lines and histories (absent: a run saved
                   before run ids)
``initial_model``  the weights at step 0 (``--mode lottery`` rewinds to them)
================== ================================================================================

A change of this layout that an older reader cannot read raises :data:`FORMAT_VERSION`;
the keys are added in :func:`training_checkpoint` and their readers' expectations
(:func:`check_resumable`, :func:`check_data_info`, :func:`check_weights`) stay here.

:func:`save_checkpoint` writes to a temporary file in the same folder, fsyncs it
and renames it over the target, so a kill at any moment leaves either the old
or the new checkpoint, never a torn one. :func:`load_checkpoint` always uses
``torch.load(..., weights_only=True)``: a checkpoint holds only tensors, numbers,
strings, lists and dicts (state dicts, the config as a dict, RNG states), never
pickled objects of ours.

What is read is checked by one set of rules, shared by every reader (``wiring.export``,
``wiring.compact``, ``wiring.profile`` through :func:`wiring.train.build.model_from_checkpoint`, and
``wiring.train --resume`` / ``--from``), each raising :class:`CheckpointError` with one line:

* :func:`check_data_info`, before a model is built from a checkpoint: ``data_info``'s
  ``channels``, ``num_classes`` and ``image_size`` are positive integers, the first two
  sizes of the checkpoint's own tensors (every model holds its input channels in its first
  layer and its classes in its last), ``image_size`` the run's (``--image-size``, or the data
  set's fixed side), so a changed file cannot make a reader allocate a model of its choosing;
* :func:`check_weights`, before the weights are loaded into a model: every tensor the model
  holds in floating point is saved in floating point (an integer tensor would be cast
  silently) and holds only finite values (a NaN / inf model is no trained model).

>>> import torch
>>> check_weights({"w": torch.ones(2)}, {"w": torch.zeros(2)})
>>> check_weights({"w": torch.tensor([1.0, float("nan")])}, {"w": torch.zeros(2)})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
wiring.train.checkpoint.CheckpointError: the checkpoint's weight 'w' holds 1 non-finite value (NaN or inf) of 2: ...
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping


from wiring import __version__
from wiring.errors import UserError
from wiring.files import atomic_write, load_refusal
from wiring.lazy import lazy_module

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

#: the layout of the checkpoints this version writes and reads (see the module)
FORMAT_VERSION = 1

#: the keys :func:`training_checkpoint` adds to the trainer's state
RUN_KEYS = ("config", "version", "data_info", "edges", "run_id", "initial_model")


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable or incompatible; the message says which."""


def training_checkpoint(trainer_state: Mapping[str, Any], *, config: dict[str, Any], data_info: dict[str, Any],
                        edges: int, run_id: str | None = None,
                        initial_model: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The checkpoint of a ``wiring.train`` run (the module's table): the trainer's state and
    the run's ``config``, ``data_info``, effective k (``edges``), ``run_id`` and
    ``initial_model`` (the last two left out when None), with the writing ``version``.

    >>> state = training_checkpoint({"model": {}, "epoch": 1}, config={"edges": 5}, data_info={}, edges=5)
    >>> list(state), state["version"] == __version__
    (['model', 'epoch', 'config', 'version', 'data_info', 'edges'], True)
    """
    clash = sorted(set(trainer_state) & set(RUN_KEYS + ("format_version",)))
    if clash:
        raise ValueError(f"the trainer's state holds checkpoint keys of the run: {', '.join(clash)}")
    state = {**trainer_state, "config": config, "version": __version__, "data_info": data_info, "edges": edges}
    if run_id is not None:
        state["run_id"] = run_id
    if initial_model is not None:
        state["initial_model"] = initial_model
    return state


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, *, tag: bool = True) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename).

    ``tag`` adds ``format_version``; pass False for plain tensor exports."""
    atomic_write(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **state} if tag else state, f),
                 binary=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; clear errors when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {load_refusal(err)}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a wiring checkpoint (no model state)")
    check_format(state, path)
    return state


def check_format(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose ``format_version`` is not :data:`FORMAT_VERSION`, in one line
    naming both formats and the wiring version that wrote it.

    >>> check_format({"format_version": 2, "version": "9.0"}, "run/checkpoint.pt")
    Traceback (most recent call last):
    ...
    wiring.train.checkpoint.CheckpointError: run/checkpoint.pt is checkpoint format 2 (written by wiring 9.0), newer than format 1, the one this wiring reads: read it with the version that wrote it or a newer one
    """
    version = state.get("format_version")
    if version == FORMAT_VERSION and isinstance(version, int) and not isinstance(version, bool):
        return
    writer = state.get("version")
    by = f" (written by wiring {writer})" if isinstance(writer, str) else ""
    if "format_version" not in state:
        raise CheckpointError(f"{path} is not a wiring checkpoint (no format_version: every checkpoint wiring "
                              f"writes holds one)")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path} is not a wiring checkpoint (its format_version {version!r} is no format "
                              f"number)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} is checkpoint format {version}{by}, newer than format {FORMAT_VERSION}, the one "
                              f"this wiring reads: read it with the version that wrote it or a newer one")
    raise CheckpointError(f"{path} is checkpoint format {version}{by}, older than format {FORMAT_VERSION}, the one "
                          f"this wiring reads, which has no reader for it: use the version that wrote it, or train "
                          f"the run again")


def check_resumable(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """A training checkpoint has the state a resume needs (``model``, ``optimizer``, ``epoch``,
    ``step``, ``config`` of their types); anything else is refused."""
    needed = {"model": dict, "optimizer": dict, "epoch": int, "step": int, "config": dict}
    for key, kind in needed.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{path} is not a wiring.train checkpoint "
                                  f"({key!r} missing or not a {kind.__name__})")


#: the side of the images of the data sets whose side is fixed (``--image-size`` not given)
NATIVE_SIDE = {"digits": 8, "mnist5k": 28, "cifar10": 32, "imagenet": 224}


def check_data_info(data_info: Any, model_state: Any, config: Any = None,
                    source: str = "the checkpoint") -> None:
    """Refuse a ``data_info`` a model cannot be built from safely (module docstring):
    ``channels`` / ``num_classes`` that are no size of ``model_state``'s tensors, an
    ``image_size`` that is not the run's (``config``: the saved settings, a dict)."""
    if not isinstance(data_info, Mapping):
        raise CheckpointError(f"{source}'s data_info is not a mapping: was it written by wiring.train?")
    values = {}
    for key in ("channels", "num_classes", "image_size"):
        value = data_info.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"{source}'s data_info.{key} is {value!r}, not a positive integer: "
                                  f"the file was changed; use the run's own checkpoint")
        values[key] = value
    sizes = {int(n) for t in (model_state.values() if isinstance(model_state, Mapping) else ())
             if isinstance(t, torch.Tensor) for n in t.shape}
    for key in ("channels", "num_classes"):
        if values[key] not in sizes:
            raise CheckpointError(f"{source}'s data_info.{key} = {values[key]} is the size of none of its "
                                  f"weights (the largest is {max(sizes, default=0)}): the file was changed; "
                                  f"use the run's own checkpoint")
    config = config if isinstance(config, Mapping) else {}
    side = config.get("image_size") or NATIVE_SIDE.get(str(config.get("data")))
    if isinstance(side, int) and values["image_size"] != side:
        raise CheckpointError(f"{source}'s data_info.image_size = {values['image_size']}, but its run trained on "
                              f"{side}x{side} images: the file was changed; use the run's own checkpoint")


def check_weights(saved: Any, expected: Mapping[str, torch.Tensor], source: str = "the checkpoint") -> None:
    """Refuse saved weights ``saved`` (a state dict) that ``load_state_dict`` would take
    silently into a model whose state is ``expected``: an integer (or bool) tensor where
    the model holds floating point, or any non-finite value (module docstring). Missing
    keys and other shapes are ``load_state_dict``'s to report."""
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{source}'s model state is not a mapping: was it written by wiring.train?")
    for key, want in expected.items():
        got = saved.get(key)
        if not isinstance(got, torch.Tensor) or not want.is_floating_point():
            continue
        if not got.is_floating_point():
            raise CheckpointError(f"{source}'s weight {key!r} is {str(got.dtype).replace('torch.', '')}, not "
                                  f"floating point like the model's {str(want.dtype).replace('torch.', '')}: "
                                  f"wiring.train never writes that; use the run's own checkpoint")
        bad = int((~torch.isfinite(got)).sum())
        if bad:
            raise CheckpointError(f"{source}'s weight {key!r} holds {bad:,} non-finite value{'s' if bad > 1 else ''} "
                                  f"(NaN or inf) of {got.numel():,}: the run diverged before it was saved, or the "
                                  f"file was changed; use another checkpoint")
