"""A model-agnostic training loop with hooks.

:class:`Trainer` runs epochs of SGD-style training and evaluation on any
``nn.Module`` classifier (inputs ``[B, C, H, W]``, logits ``[B, classes]``). It
knows nothing of a particular model: the wiring bookkeeping (the learned real sets, the
edges swapped, the invariants, the same wiring on every rank) is its
:class:`~wiring.train.monitor.WiringMonitor`.

Per epoch it records loss, train / test accuracy, learning rate, seconds,
images/s, for the wirings the edges swapped in since the previous epoch
(``swapped``), and whatever any submodule's optional ``pop_metrics()`` returns
(the continuous-time model's function evaluations, ``nfe``). Hooks (objects with any of ``on_step(trainer)``,
``on_epoch_end(trainer, metrics)``, ``on_fit_end(trainer)``) add snapshots,
metrics and checkpoints; see :mod:`wiring.train.recorder`.

The data order of epoch ``e`` depends only on ``(seed, e)``, so a run resumed
from an epoch checkpoint sees the same batches as an uninterrupted one.

Stopping: with a :class:`StopRequest` (``stop=``), SIGINT and SIGTERM do not
break a step. The step under way finishes (an evaluation under way is
abandoned), the hooks' ``on_stop(trainer)`` saves the state of that moment
(:meth:`Trainer.state_dict` then holds ``position``: the batch within the
epoch, the epoch's running sums and the rate of its first step, its ``lr``, plus
the real sets of the epoch's start),
and :class:`Stopped` is raised. A trainer loading that state continues the
epoch at the next batch, so the run ends bit-identical to an uninterrupted one.

Guards: a non-finite loss or parameter stops training at once with
:class:`TrainingStopped` naming the step (the hooks have not saved anything of
that epoch, so the last good checkpoint stays); the wirings' invariants (exactly
k real edges, indices in range, static wirings acyclic, finite weights) are
checked every epoch, and every step with ``debug=True``.
"""
from __future__ import annotations

import math
import re
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from wiring.errors import UserError
from wiring.train.distributed import DistInfo, all_reduce_sum, current, shard
from wiring.train.monitor import WiringMonitor, WiringProblem


class TrainingStopped(RuntimeError):
    """Training cannot go on (a non-finite loss or weight, a broken wiring invariant);
    the message names the step. The last good checkpoint is left as it was."""


class Stopped(Exception):
    """Training stopped on request (:class:`StopRequest`) between two steps; the hooks'
    ``on_stop`` saved that moment. ``signum`` is the signal, ``step`` the steps taken,
    ``epoch`` the epochs completed and ``batch`` / ``batches`` where in the next one."""

    def __init__(self, signum: int, step: int, epoch: int, batch: int, batches: int) -> None:
        super().__init__(f"stopped by {signal_name(signum)} at step {step}")
        self.signum, self.step, self.epoch, self.batch, self.batches = signum, step, epoch, batch, batches


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM that stops at once (before training, or a second signal):
    nothing of the moment is saved. ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, batch schedulers) as a request to stop.

    While :meth:`installed`, a signal raises :class:`Interrupted` at once, except while a
    :class:`Trainer` is fitting (``graceful``): then the first signal is only recorded in
    ``signum`` and the trainer stops after the step under way; a second one stops at once.
    """

    def __init__(self) -> None:
        self.signum = 0
        self.graceful = False

    def __bool__(self) -> bool:
        return bool(self.signum)

    def handle(self, signum: int, frame=None) -> None:
        if self.graceful and not self.signum:
            self.signum = signum
            return
        self.signum = self.signum or signum
        raise Interrupted(signum)

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        """Handle SIGINT and SIGTERM in this block (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def global_batches(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                   world_size: int = 1, drop_short: bool = False) -> list[Tensor]:
    """The index sets of every global batch of an epoch. With ``drop_short`` a trailing
    batch with fewer samples than ranks is dropped (training: every rank needs data)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    batches = list(torch.split(order, batch_size))
    if drop_short and world_size > 1 and batches and batches[-1].numel() < world_size:
        batches.pop()
    return batches


def iterate_batches(dataset: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                    info: DistInfo = DistInfo(), start: int = 0) -> Iterator[tuple[Tensor, Tensor, int]]:
    """``(x, y, global batch size)`` for this rank's shard of every global batch from
    batch ``start`` on; in-memory ``TensorDataset`` s are sliced directly. A ``DataLoader``
    draws its workers' seed from ``generator``, never from the global RNG (which a
    resumed run restores at the moment of its checkpoint)."""
    batches = global_batches(len(dataset), batch_size, shuffle=shuffle, generator=generator,
                             world_size=info.world_size, drop_short=shuffle)[start:]
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors[0], dataset.tensors[1]
        for idx in batches:
            local = shard(idx, info)
            yield x[local], y[local], idx.numel()
        return
    loader = DataLoader(_Reporting(dataset), batch_sampler=[shard(idx, info).tolist() for idx in batches],
                        num_workers=min(4, max(0, (torch.get_num_threads() or 1) - 1)),
                        worker_init_fn=_ignore_stop_signals, collate_fn=_collate,
                        generator=generator if generator is not None else torch.Generator())
    loaded = iter(loader)
    try:
        for batch, idx in zip(loaded, batches):
            if isinstance(batch, _SampleError):
                raise batch.error()
            x, y = batch
            yield x, y, idx.numel()
    finally:                    # the workers end now, not at exit (they ignore the SIGTERM exit sends them)
        getattr(loaded, "_shutdown_workers", lambda: None)()


class _SampleError:
    """A user error (:class:`~wiring.errors.UserError`, e.g. an unreadable image) raised by a
    data set's ``__getitem__``, carried from a DataLoader worker as a value: re-raised in the
    main process with its own one-line message, not the worker's traceback."""

    def __init__(self, err: UserError) -> None:
        self.kind, self.message = type(err), str(err)

    def error(self) -> UserError:
        try:
            return self.kind(self.message)
        except Exception:  # noqa: BLE001 - a subclass with another signature
            return UserError(self.message)


class _Reporting(Dataset):
    """``dataset`` whose user errors become :class:`_SampleError` values (see there)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except UserError as err:
            return _SampleError(err)


def _collate(samples: list) -> Any:
    """``default_collate``, or the first :class:`_SampleError` of the batch."""
    return next((s for s in samples if isinstance(s, _SampleError)), None) or default_collate(samples)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT / SIGTERM to the main process (a Ctrl-C reaches the whole
    process group): it stops after its step and shuts them down; a worker killed by the signal
    would fail the batch the main process waits for."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Progress:
    """A bar on a terminal, plain lines otherwise (CI logs), or nothing. As lines, the
    epoch under way prints a line of its own (``  epoch 1/30 loss ... batch 12/40``) once
    ``every`` seconds have passed since the last line, so a log shows a long epoch going on."""

    def __init__(self, style: str = "auto", stream=None, every: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        if style == "auto":
            style = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.style = style
        self.every = every
        self._last = time.monotonic()

    def update(self, text: str, done: int, total: int) -> None:
        if self.style == "lines" and time.monotonic() - self._last >= self.every:
            print(f"  {text}  batch {done}/{total}", flush=True)
            self._last = time.monotonic()
        if self.style != "bar":
            return
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        self.stream.write(f"\r{text} [{bar}] {done}/{total}")
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.style == "none":
            return
        if self.style == "bar":
            self.stream.write("\r\033[K")
        print(text, file=self.stream if self.style == "bar" else sys.stdout, flush=True)
        self._last = time.monotonic()


class Trainer:
    """Train ``model`` on ``train_set``, evaluating on ``test_set`` every epoch."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, train_set: Dataset,
                 test_set: Dataset, *, epochs: int, batch_size: int, device: torch.device | str = "cpu",
                 scheduler: Any = None, eval_batch_size: int = 512, seed: int = 0,
                 hooks: Sequence[Any] = (), progress: Progress | None = None, debug: bool = False,
                 check_wiring_every: int = 0, stop: StopRequest | None = None) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_set, self.test_set = train_set, test_set
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.device = torch.device(device)
        self.seed = seed
        self.debug = debug
        self.check_wiring_every = check_wiring_every
        self.dist = current()
        self.net = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        self.hooks = list(hooks)
        self.progress = progress or Progress("none")
        self.monitor = WiringMonitor(model, self.device)     # the wiring bookkeeping
        self.wirings = self.monitor.wirings
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.best_acc = -1.0
        self.history: list[dict] = []
        self.stop = stop
        #: where in an epoch training stopped (saved by state_dict; None at an epoch's end)
        self.position: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None      # a loaded position: train_epoch goes on from it
        self._epoch_sums: tuple[float, int, int] = (0.0, 0, 0)
        self._epoch_lr: float | None = None     # the rate of the epoch's first step (its metrics' lr)

    # ------------------------------------------------------------------ wiring
    def check_invariants(self) -> None:
        """The wirings' invariants (:meth:`WiringMonitor.check_invariants`): a broken one stops training."""
        try:
            self.monitor.check_invariants(self.step)
        except WiringProblem as err:
            raise TrainingStopped(str(err)) from None

    def check_same_wiring(self) -> None:
        """Stop unless every rank holds the same real edges (a hash all-gathered)."""
        try:
            self.monitor.check_same_wiring(self.step)
        except WiringProblem as err:
            raise TrainingStopped(str(err)) from None

    # ------------------------------------------------------------------ loops
    def _call(self, event: str, *args) -> list:
        return [getattr(h, event)(self, *args) for h in self.hooks if hasattr(h, event)]

    def _stop_requested(self) -> int:
        """The signal of a pending stop request, else 0; the ranks of a distributed run agree
        (one tiny all-reduce per step), so all of them stop after the same step."""
        signum = self.stop.signum if self.stop is not None else 0
        if self.dist.enabled:
            anyone = all_reduce_sum([1.0 if signum else 0.0], self.device)[0]
            signum = (signum or int(signal.SIGTERM)) if anyone else 0
        return signum

    def _stop_at(self, signum: int, batch: int, batches: int, sums: tuple[float, int, int]) -> None:
        """Record where in the epoch training is (``batch`` batches of it done, its running
        sums), let the hooks save that moment (``on_stop``) and raise :class:`Stopped`."""
        loss_sum, correct, seen = all_reduce_sum(list(sums), self.device)
        lr = self._epoch_lr if self._epoch_lr is not None else self.optimizer.param_groups[0]["lr"]
        self.position = None if batch == 0 else {
            "batch": int(batch), "loss_sum": float(loss_sum), "correct": int(correct), "seen": int(seen),
            "lr": float(lr)}
        self._call("on_stop")
        if self.dist.enabled:
            torch.distributed.barrier()            # rank 0 writes the checkpoint before any rank exits
        raise Stopped(signum, self.step, self.epoch, batch, batches)

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        total = math.ceil(len(self.train_set) / self.batch_size)
        resume, self._resume = self._resume, None    # a run stopped inside this epoch goes on from there
        first = int(resume["batch"]) if resume else 0
        loss_sum, correct, seen = 0.0, 0, 0
        if resume and self.dist.is_main:             # the saved sums are over all ranks: count them once
            loss_sum, correct, seen = float(resume["loss_sum"]), int(resume["correct"]), int(resume["seen"])
        gen = epoch_generator(self.seed, self.epoch)
        batches = iterate_batches(self.train_set, self.batch_size, shuffle=True, generator=gen, info=self.dist,
                                  start=first)
        for i, (x, y, global_size) in enumerate(batches, first):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            logits = self.net(x)
            # Mean over the global batch: DDP averages the ranks' gradients, hence the world size.
            loss = F.cross_entropy(logits, y, reduction="sum") * (self.dist.world_size / global_size)
            if not bool(torch.isfinite(loss)):
                raise TrainingStopped(f"the loss became {loss.item()} at step {self.step + 1} "
                                      f"(epoch {self.epoch + 1}): training stopped")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.monitor.after_backward(self.step + 1)        # rigl / set: the growth scores of an update step
            self.optimizer.step()
            self.monitor.after_step(self.step + 1, self.optimizer)    # ... and the update (drop, grow)
            self.step += 1
            finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()])
            if not bool(finite.all()):                   # one device sync, not one per parameter
                raise TrainingStopped(f"a weight became non-finite at step {self.step} "
                                      f"(epoch {self.epoch + 1}): training stopped")
            if self.debug:
                self.check_invariants()
            with torch.no_grad():
                loss_sum += loss.item() * global_size / self.dist.world_size
                correct += int((logits.argmax(1) == y).sum())
                seen += y.numel()
            if self.check_wiring_every and self.step % self.check_wiring_every == 0:
                self.check_same_wiring()
            self._call("on_step")
            self.progress.update(f"epoch {self.epoch + 1}/{self.epochs} loss {loss_sum / max(seen, 1):.4f} "
                                 f"acc {correct / max(seen, 1):.3f}", i + 1, total)
            signum = self._stop_requested()
            if signum:
                self._stop_at(signum, i + 1, total, (loss_sum, correct, seen))
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], self.device)
        self._epoch_sums = (loss_sum, correct, seen)
        return {"loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}

    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None, *, stoppable: bool = False) -> dict[str, float]:
        """Loss and accuracy on ``dataset`` (default the test set). ``stoppable``: a pending
        stop request abandons it (:class:`_EvaluationAbandoned`; one process only)."""
        self.model.eval()
        dataset = self.test_set if dataset is None else dataset
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y, _ in iterate_batches(dataset, self.eval_batch_size, shuffle=False, info=self.dist):
            if stoppable and self.stop is not None and self.stop.signum and not self.dist.enabled:
                raise _EvaluationAbandoned(self.stop.signum)
            if y.numel() == 0:            # a short last batch leaves some ranks without samples
                continue
            x, y = x.to(self.device), y.to(self.device)
            logits = self.model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += y.numel()
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], self.device)
        return {"test_loss": loss_sum / max(seen, 1), "test_acc": correct / max(seen, 1)}

    def fit(self) -> list[dict]:
        """Train the remaining epochs; returns the metrics of every epoch run. With a
        :class:`StopRequest`, a signal ends it with :class:`Stopped` after the step under way."""
        self.position = None
        if self.stop is not None:
            self.stop.graceful = True
        try:
            return self._fit()
        finally:
            if self.stop is not None:
                self.stop.graceful = False

    def _fit(self) -> list[dict]:
        batches = math.ceil(len(self.train_set) / self.batch_size)
        while self.epoch < self.epochs:
            signum = self._stop_requested()
            if signum:                                 # between epochs: the epoch's checkpoint is this moment
                self._stop_at(signum, 0, batches, (0.0, 0, 0))
            lr = self.optimizer.param_groups[0]["lr"]
            if self._resume is not None and "lr" in self._resume:    # resumed inside the epoch (cosine_step:
                lr = float(self._resume["lr"])                       # the optimizer holds the resumed step's)
            self._epoch_lr = lr
            start = time.perf_counter()
            metrics: dict[str, Any] = {"epoch": self.epoch + 1}
            metrics.update(self.train_epoch())
            train_seconds = time.perf_counter() - start
            for module in self.model.modules():      # optional per-epoch model metrics (e.g. ODE nfe)
                if hasattr(module, "pop_metrics"):
                    metrics.update(module.pop_metrics())
            self.check_invariants()
            try:
                metrics.update(self.evaluate(stoppable=True))
            except _EvaluationAbandoned as stop:       # resumed, the epoch starts again at its evaluation
                self._stop_at(stop.signum, batches, batches, self._epoch_sums)
            metrics.update(step=self.step, lr=lr, swapped=self.monitor.epoch_swapped(),
                           seconds=round(time.perf_counter() - start, 3),
                           img_s=round(len(self.train_set) / max(train_seconds, 1e-9), 1))
            if self.scheduler is not None:
                with warnings.catch_warnings():    # a run resumed at its evaluation steps no optimizer first
                    warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
                    self.scheduler.step()
            self.epoch += 1
            self.best_acc = max(self.best_acc, metrics["test_acc"])
            for extra in self._call("on_epoch_end", metrics):
                if extra:
                    metrics.update(extra)
            self.history.append(metrics)
            self.progress.line(
                f"epoch {metrics['epoch']:>3}/{self.epochs}  loss {metrics['loss']:.4f}  "
                f"train {metrics['train_acc']:.4f}  test {metrics['test_acc']:.4f}  "
                f"swapped {metrics['swapped']:>5}  lr {lr:.4g}  {metrics['seconds']:.1f}s"
                + (f"  nfe {metrics['nfe']:g}" if "nfe" in metrics else ""))   # continuous: per forward
        self._call("on_fit_end")
        return self.history

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed trainer needs to go on bit-identically: model, optimizer,
        scheduler, RNG, counters and, when stopped inside an epoch, ``position`` and the
        real sets at the epoch's start (``last_masks``, for the epoch's ``swapped``)."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                 "epoch": self.epoch, "step": self.step, "best_acc": self.best_acc,
                 "rng": {"torch": torch.get_rng_state(),
                         "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                 **self.monitor.state_dict(inside_epoch=self.position is not None)}
        if self.position is not None:
            state["position"] = dict(self.position)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.best_acc = int(state["epoch"]), int(state["step"]), float(state["best_acc"])
        rng = state.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"].cpu())
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        position = state.get("position")
        self._resume = dict(position) if isinstance(position, dict) else None
        self.monitor.load_state_dict(state, inside_epoch=self._resume is not None)


class _EvaluationAbandoned(Exception):
    """A stop request during an epoch's evaluation (see :meth:`Trainer.evaluate`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum
