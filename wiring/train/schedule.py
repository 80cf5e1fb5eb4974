"""The learning-rate schedules of a run (``--schedule``), closed forms of the config.

Contract: the rate of epoch ``e`` (per-epoch ``cosine`` / ``multistep`` / ``constant``) or of
training step ``t`` (``cosine_step``) is a function of the config alone, so a resumed run,
even one with a changed ``--epochs``, follows the curve its current config gives
(:func:`align_lr` after loading a checkpoint).

>>> from wiring.train.config import Config
>>> cfg = Config(epochs=4)
>>> [round(lr_factor(cfg, e), 4) for e in range(5)]
[1.0, 0.8536, 0.5, 0.1464, 0.0]
>>> step_lr_factor(Config(epochs=2, schedule="cosine_step"), 5, 5)
0.5
"""
from __future__ import annotations

import math
from typing import Any

import torch

from wiring.train.config import Config


def lr_factor(cfg: Config, epoch: int) -> float:
    """The learning-rate multiplier of ``epoch`` (0-based): a closed form of the
    config, so a resumed run follows its current ``--epochs`` / ``--milestones``.
    (``cosine_step`` changes within an epoch: :func:`step_lr_factor`.)"""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, cfg.epochs) / cfg.epochs))
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


def step_lr_factor(cfg: Config, iteration: int, steps_per_epoch: int) -> float:
    """``cosine_step``'s multiplier of training step ``iteration`` (0-based, counted over
    the whole run): ``0.5 (1 + cos(pi t / T))`` with ``T = epochs x steps_per_epoch``,
    the authors' ``cosine_lr`` stepped every iteration (no warm-up)."""
    total = cfg.epochs * steps_per_epoch
    return 0.5 * (1.0 + math.cos(math.pi * min(iteration, total) / total))


class IterationCosine:
    """The ``cosine_step`` schedule: the learning rate of step ``t`` (0-based, the steps
    taken so far) is ``lr x step_lr_factor(t)``. It is set after every optimizer step for
    the next one (an optimizer step post-hook), so the optimizer always holds the rate its
    next step uses (the trainer's per-epoch ``lr`` is the epoch's first); the trainer's
    per-epoch :meth:`step` does nothing. ``state_dict`` holds ``t``, so a resumed run
    continues the curve (over its current ``--epochs``)."""

    def __init__(self, cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> None:
        self.cfg, self.optimizer, self.steps_per_epoch = cfg, optimizer, max(1, steps_per_epoch)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.iteration = 0
        self._apply()
        self._hook = optimizer.register_step_post_hook(self._after_step)

    def _apply(self) -> None:
        factor = step_lr_factor(self.cfg, self.iteration, self.steps_per_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.iteration += 1
        self._apply()

    def step(self) -> None:
        """Per-epoch call of the trainer: the rate already moved with every step."""

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.base_lrs = [float(v) for v in state.get("base_lrs", self.base_lrs)]
        self._apply()


def align_lr(cfg: Config, scheduler, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """After loading a checkpoint at ``epoch`` (epochs completed): the learning rate the
    schedule of ``cfg`` gives there. The saved optimizer holds the rate of the schedule it
    was saved under, which a changed ``--epochs`` makes stale (a 1-epoch cosine ends at 0)."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        return                          # (IterationCosine sets its rate from cfg as it loads)
    lrs = [base * lr_factor(cfg, epoch) for base in scheduler.base_lrs]
    scheduler.last_epoch = epoch
    scheduler._last_lr = lrs
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1):
    """The schedule of ``cfg``: per-epoch ``cosine`` / ``multistep`` / ``constant`` as a
    ``LambdaLR``, or ``cosine_step`` (:class:`IterationCosine`, ``steps_per_epoch``
    optimizer steps an epoch)."""
    if cfg.schedule == "cosine_step":
        return IterationCosine(cfg, optimizer, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))
