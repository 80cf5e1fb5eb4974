"""Distributed training helpers on PyTorch's own engine (torchrun + DDP).

Contract:

* :func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and initialises the process group:
  NCCL on CUDA, gloo on CPU. Without those variables it is a no-op (world size 1).
* The **global batch** is split across ranks: each rank takes a contiguous shard of
  every global batch (:func:`shard`), so any world size sees the same global batches
  in the same order. Losses are scaled so that DDP's gradient average equals the
  gradient of the mean loss over the global batch, also for an uneven last batch.
* Batch normalisation uses the statistics of the global batch: torch's
  ``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` (autograd through
  ``all_reduce``) on CPU, where ``SyncBatchNorm`` is not supported.
* Edge weights are ordinary parameters, so DDP all-reduces their gradients and
  every rank applies the same update; top-k selection is deterministic (ties go to
  the lower candidate index), so equal weights give equal real sets.
  :func:`same_on_all_ranks` checks that with a hash all-gathered from every rank.
* A user mistake is reported by rank 0 alone: a rank other than 0 that meets one waits
  (:func:`stopped_within`) for torchrun to stop it, which torchrun does once rank 0 has ended,
  and then exits with the same status, silent; only a mistake rank 0 did not meet (its own
  files, say) is said by the rank that met it, after :data:`REPORT_WAIT` seconds.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a torchrun job: its ``rank`` among ``world_size`` processes
    and its ``local_rank`` on its machine; world size 1 without torchrun.

    >>> DistInfo().enabled, DistInfo(rank=1, world_size=2).is_main
    (False, False)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """What torchrun says about this process (world size 1 without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> DistInfo:
    """Initialise the process group for ``device`` (NCCL on CUDA, gloo on CPU)."""
    info = from_environment()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info


#: seconds a rank other than 0 waits, after a user mistake, for torchrun to stop it (rank 0 said it)
REPORT_WAIT = 20.0


def stopped_within(seconds: float) -> bool:
    """Wait up to ``seconds`` for SIGTERM or SIGINT (torchrun stops every rank when one ends
    with an error); True if one came. A signal that came leaves both ignored from then on, so
    the process ends with the status it chooses (not -15), however long its exit takes. Off the
    main thread it cannot wait for signals: False at once."""
    if threading.current_thread() is not threading.main_thread():
        return False
    came = threading.Event()

    def note(signum, frame) -> None:
        came.set()
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    end = time.monotonic() + seconds
    while not came.is_set() and time.monotonic() < end:
        time.sleep(0.05)
    if not came.is_set():
        for s, handler in previous.items():
            signal.signal(s, handler)
    return came.is_set()


def close() -> None:
    """Leave the process group, if this process is in one (a rank that ends on an error
    leaves it before exiting: gloo aborts a process that exits inside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def shard(indices: Tensor, info: DistInfo) -> Tensor:
    """This rank's contiguous part of one global batch of ``indices``.

    >>> shard(torch.arange(5), DistInfo(1, 2)).tolist()
    [3, 4]
    """
    if not info.enabled:
        return indices
    return torch.tensor_split(indices, info.world_size)[info.rank]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum plain numbers over ranks (identity with one process)."""
    if not current().enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def wiring_hash(mask: Tensor) -> int:
    """A 62-bit fingerprint of a real-edge mask (equal masks give equal hashes)."""
    idx = mask.nonzero().flatten().to(torch.int64)
    mixed = (idx * 0x9E3779B1 + 0x7F4A7C15) % 2_305_843_009_213_693_951   # mod 2^61 - 1
    return int((mixed * (idx % 65_521 + 1)).sum() % 2_305_843_009_213_693_951) ^ int(idx.numel())


def same_on_all_ranks(value: int, device: torch.device) -> bool:
    """Whether every rank passed the same integer."""
    info = current()
    if not info.enabled:
        return True
    mine = torch.tensor([value], dtype=torch.int64, device=device)
    gathered = [torch.zeros_like(mine) for _ in range(info.world_size)]
    dist.all_gather(gathered, mine)
    return all(int(g) == value for g in gathered)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch on CPU process groups (any input rank >= 2;
    channels on dim 1). With one process it is exactly ``F.batch_norm``."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and current().enabled):
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() / x.size(1)], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = _AllReduceSum.apply(stats)              # autograd-aware sum over ranks
        c = x.size(1)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)) * m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms that see the global batch: SyncBatchNorm on CUDA, GlobalBatchNorm on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new.to(next(child.buffers(), torch.empty(0)).device))
        else:
            convert_batchnorm(child, device)
    return model
