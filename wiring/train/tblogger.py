"""TensorBoard logging of a training run (``wiring.train --tensorboard``), a trainer hook.

Contract: :class:`TensorBoardLogger` writes to ``RUN_DIR/tb/`` (so ``tensorboard
--logdir runs/`` shows a study's runs side by side), after every epoch, with the
epoch as the step:

* scalars ``loss/train``, ``loss/test``, ``accuracy/train``, ``accuracy/test``,
  ``lr``, ``wiring/churn`` (edges swapped during the epoch), ``wiring/density`` (k / candidates),
  and per wiring ``wiring/dead`` and ``wiring/depth`` (from
  :func:`wiring.train.recorder.wiring_stats`; a model of several wirings gets one tag per
  wiring, suffixed with its module name);
* the image ``wiring`` (one per wiring): the real wiring drawn in the ranked style of
  :func:`wiring.picture.wiring_picture`, the strongest ``|w|`` standing out.

The ``tensorboard`` package is optional (``pip install tensorboard``, or the
``tensorboard`` extra): :func:`available` says whether it is installed, and
:class:`TensorBoardLogger` raises :class:`ImportError` with the install line when it is
not. Nothing here imports :mod:`viz` (the drawing lives in :mod:`wiring.picture`).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from wiring.picture import wiring_picture
from wiring.train.monitor import edge_budget
from wiring.train.recorder import wiring_stats

__all__ = ["INSTALL", "available", "TensorBoardLogger"]

INSTALL = "pip install tensorboard (or pip install 'wiring[tensorboard]')"


def available() -> bool:
    """True when the ``tensorboard`` package can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLogger:
    """The hook (module docstring); ``log_dir`` is usually ``RUN_DIR / "tb"``."""

    SCALARS = {"loss": "loss/train", "test_loss": "loss/test", "train_acc": "accuracy/train",
               "test_acc": "accuracy/test", "lr": "lr", "swapped": "wiring/churn"}

    def __init__(self, log_dir: str | Path, *, title: str = "") -> None:
        if not available():
            raise ImportError(f"--tensorboard needs the tensorboard package: {INSTALL}")
        self.log_dir = Path(log_dir)
        self.title = title
        self.writer = None

    def _open(self, epoch: int):
        """The writer, opened at the first epoch logged by this process with
        ``purge_step`` = that epoch: TensorBoard then drops the events of that epoch
        and later ones written before (a resumed run's repeated epochs, or an
        ``--overwrite``-n run's old curves)."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=epoch)
        return self.writer

    def on_epoch_end(self, trainer, metrics: dict[str, Any]) -> None:
        epoch = int(metrics["epoch"])
        self._open(epoch)
        for key, tag in self.SCALARS.items():
            value = metrics.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), epoch)
        k, candidates = edge_budget(trainer.model)
        if candidates:
            self.writer.add_scalar("wiring/density", k / candidates, epoch)
        wirings = trainer.wirings
        for name, layer in wirings.items():
            suffix = f"/{name}" if len(wirings) > 1 and name else ""
            stats = wiring_stats(layer)
            for key in ("dead", "depth"):
                if isinstance(stats.get(key), (int, float)):
                    self.writer.add_scalar(f"wiring/{key}{suffix}", float(stats[key]), epoch)
            real = layer.wiring()                                   # the real edges
            acc = metrics.get("test_acc")
            caption = " · ".join(part for part in (self.title, f"epoch {epoch}", f"k = {real.num_edges:,}",
                                                   f"test acc {100 * acc:.1f}%" if isinstance(acc, float) else "")
                                 if part)
            image = wiring_picture(real.level, real.role, real.edge_index, real.weight, title=caption)
            self.writer.add_image(f"wiring{suffix}", image, epoch, dataformats="HWC")
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
