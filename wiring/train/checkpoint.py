"""Checkpoints: atomic writes of tensors and plain types, safe loads.

:func:`save_checkpoint` writes to a temporary file in the same folder, fsyncs it
and renames it over the target, so a kill at any moment leaves either the old
or the new checkpoint, never a torn one. :func:`load_checkpoint` always uses
``torch.load(..., weights_only=True)``: a checkpoint holds only tensors, numbers,
strings, lists and dicts (state dicts, the config as a dict, RNG states), never
pickled objects of ours.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from wiring.errors import UserError
from wiring.files import atomic_write, load_refusal

FORMAT_VERSION = 1


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable or incompatible; the message says which."""


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
    return state
