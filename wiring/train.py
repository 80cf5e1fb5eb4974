"""``python -m wiring.train``: train a network while learning its wiring.

The path of one run: arguments -> :class:`~wiring.config.Config` -> data ->
model registry (the preset builds the graph) -> :class:`~wiring.trainer.Trainer`
with a :class:`~wiring.recorder.RunRecorder` writing the run directory. Every
argument is validated before any work; user mistakes exit with status 2 and one
line on stderr, and nothing is written to an existing run directory unless
``--resume`` or ``--overwrite`` says so.

Example::

    python -m wiring.train --graph random_k --edges 12000 --data digits --epochs 30
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import torch

from models import build_model
from models.dynamic import FIXED_STEP_SOLVERS

from . import __version__, backends, distributed, native
from .allocator import tune_malloc
from .checkpoint import CheckpointError, load_checkpoint
from .config import WIDTH_BUDGET_MODELS, Config, ConfigError, config_from_saved, parse_config, saved_values
from .data import DataError, check_dataset, load_dataset, subset
from .graph import GraphError
from .io import read_graphml
from .modes import every_candidate_real, mode_class
from .recorder import RunRecorder
from .trainer import Progress, Trainer, TrainingStopped, edge_budget, find_wirings

# Run-directory entries a fresh run writes; --overwrite removes exactly these.
RUN_ENTRIES = ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "history*.pt",
               "initial*.graphml", "wiring*.graphml")
# Settings that may change when a run is resumed.
RESUMABLE = {"epochs", "resume", "overwrite", "device", "backend", "out", "progress", "eval_batch_size", "config",
             "debug", "deterministic", "check_wiring_every", "tensorboard"}


class UsageError(ValueError):
    """A user mistake caught before training; exits with status 2."""


def default_run_dir(cfg: Config) -> Path:
    edges = "all" if cfg.edges is None else cfg.edges
    model = cfg.model if cfg.setting == "static" else f"{cfg.model}-{cfg.setting}"
    return Path("runs") / f"{cfg.data}-{model}-{cfg.graph}-{cfg.mode}-{edges}-s{cfg.seed}"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for ``--device``; under torchrun each local rank takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name == "cuda" and distributed.from_environment().enabled:
        return torch.device("cuda", local_rank)
    return torch.device(name)


def on_main_rank(check, info: distributed.DistInfo):
    """Run ``check`` on rank 0 only and share its outcome (a result or a user error) with every rank."""
    if not info.enabled:
        return check()
    outcome: list = [None]
    if info.is_main:
        try:
            outcome[0] = ("ok", check())
        except (UsageError, CheckpointError) as err:
            outcome[0] = ("error", str(err))
    torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise UsageError(value if info.is_main else "") from None
    return value


def check_run_dir(cfg: Config, run_dir: Path) -> bool:
    """Decide what to do with ``run_dir``; returns True when resuming. Writes nothing."""
    existing = run_dir.is_dir() and any(run_dir.iterdir())
    if cfg.resume:
        if not (run_dir / "checkpoint.pt").is_file():
            raise UsageError(f"--resume: no checkpoint.pt in {run_dir} to continue from")
        return True
    if existing and not cfg.overwrite:
        raise UsageError(f"run directory {run_dir} already exists: pass --resume to continue it, "
                         f"--overwrite to replace it, or --out DIR for a new one")
    probe = run_dir if run_dir.exists() else next((p for p in run_dir.parents if p.exists()), Path("."))
    if not probe.is_dir() or not _writable(probe):
        raise UsageError(f"--out {run_dir}: {probe} is not a writable folder")
    return False


def _writable(folder: Path) -> bool:
    import os
    return os.access(folder, os.W_OK | os.X_OK)


def check_resumable(saved: dict[str, Any], run_dir: Path) -> None:
    """A training checkpoint has the state a resume needs; anything else is refused."""
    needed = {"model": dict, "optimizer": dict, "epoch": int, "step": int, "config": dict}
    for key, kind in needed.items():
        if not isinstance(saved.get(key), kind):
            raise CheckpointError(f"{run_dir / 'checkpoint.pt'} is not a wiring.train checkpoint "
                                  f"({key!r} missing or not a {kind.__name__})")


def check_resume_config(cfg: Config, saved: dict[str, Any], old_form: bool = False) -> None:
    """Refuse a resume whose settings differ from the saved ones (those of :data:`RESUMABLE`
    may change). ``old_form``: a checkpoint written before the effective k was recorded
    beside the config (its ``edges`` key), whose config holds that k instead of the
    ``--edges`` given: every candidate for an all-real run, the width's budget for MobileNetV1."""
    now, saved = cfg.to_dict(), saved_values(saved)      # a run saved before --init was trained with kaiming
    ignored = set(RESUMABLE)
    if old_form and (every_candidate_real(cfg.mode, cfg.graph) or cfg.model in WIDTH_BUDGET_MODELS):
        ignored.add("edges")
    differing = sorted(k for k in now if k not in ignored and k in saved and saved[k] != now[k])
    if differing:
        details = ", ".join(f"{k}: saved {saved[k]!r} vs now {now[k]!r}" for k in differing)
        raise UsageError(f"--resume: the run was started with different settings ({details})")


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


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1):
    """The schedule of ``cfg``: per-epoch ``cosine`` / ``multistep`` / ``constant`` as a
    ``LambdaLR``, or ``cosine_step`` (:class:`IterationCosine`, ``steps_per_epoch``
    optimizer steps an epoch)."""
    if cfg.schedule == "cosine_step":
        return IterationCosine(cfg, optimizer, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))


def build(cfg: Config, info) -> torch.nn.Module:
    """The model for ``cfg`` and a data set described by ``info``."""
    preset_options: dict[str, Any] = {}
    if cfg.graph == "graphml":
        preset_options["wiring"] = read_graphml(cfg.graph_file)
    all_real = every_candidate_real(cfg.mode, cfg.graph)
    mode_options = mode_class(cfg.mode).config_options(cfg)
    setting: dict[str, Any] = {}
    if cfg.setting == "discrete":
        setting = {"setting": "discrete", "steps": cfg.steps, "self_loops": cfg.self_loops}
    elif cfg.setting == "continuous":
        setting = {"setting": "continuous", "solver": cfg.solver, "rtol": cfg.rtol, "atol": cfg.atol,
                   "ode_steps": cfg.ode_steps, "self_loops": cfg.self_loops}
    if cfg.width is not None:
        setting["width"] = cfg.width
    try:
        return build_model(cfg.model, in_channels=info.channels, num_classes=info.num_classes,
                           image_size=info.image_size, edges=None if all_real else cfg.edges, mode=cfg.mode,
                           preset=cfg.graph, seed=cfg.seed, preset_options=preset_options,
                           mode_options=mode_options, init=cfg.init,
                           candidate_grad_every=cfg.candidate_grad_every, **setting)
    except ImportError as err:
        raise UsageError(str(err)) from None
    except TypeError as err:
        if "width" in str(err):
            raise UsageError(f"--width: model {cfg.model} has no width multiplier") from None
        raise


def model_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model a ``wiring.train`` checkpoint was saved from, with its weights."""
    if "data_info" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError("the checkpoint lacks its config or data_info: was it written by wiring.train?")
    cfg = config_from_saved(checkpoint["config"])
    cfg.graph = "random_k" if cfg.graph == "graphml" else cfg.graph   # weights come from the checkpoint
    model = build(cfg, SimpleNamespace(**checkpoint["data_info"]))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint does not fit its model ({str(err).splitlines()[0]})") from None
    return model


def start_from_run(cfg: Config, model: torch.nn.Module) -> str:
    """fine_tune / lottery: weights and frozen top-k from the trained run ``--from``."""
    source = Path(cfg.from_run)
    state = load_checkpoint(source / "checkpoint.pt")
    trained = state["model"]
    start = trained
    rewinds = mode_class(cfg.mode).rewinds
    if rewinds:
        if "initial_model" not in state:
            raise UsageError(f"--from {source}: its checkpoint has no initial weights to rewind to")
        start = state["initial_model"]
    wirings = find_wirings(model)
    try:
        model.load_state_dict(start)
    except RuntimeError as err:
        raise UsageError(f"--from {source}: its model does not match this one "
                         f"({str(err).splitlines()[0]})") from None
    for name, layer in wirings.items():
        key = f"{name}.weight" if name else "weight"
        layer.freeze_top_k(trained[key])
    what = "rewound to its initialisation" if rewinds else "trained weights"
    return f"top-{', '.join(str(w.k) for w in wirings.values())} edges of {source}, {what}"


def solver_text(cfg: Config) -> str:
    """How the continuous setting integrates: ``dopri5 rtol 0.001 atol 0.001`` or ``rk4, 2 steps of 0.5``."""
    if cfg.solver in FIXED_STEP_SOLVERS:
        return f"{cfg.solver}, {cfg.ode_steps} step{'s' if cfg.ode_steps > 1 else ''} of {1 / cfg.ode_steps:g}"
    return f"{cfg.solver} rtol {cfg.rtol} atol {cfg.atol}"


def describe(cfg: Config, model, info, train_set, test_set, device, run_dir: Path) -> str:
    wirings = find_wirings(model)
    total = sum(p.numel() for p in model.parameters())
    k, candidates = edge_budget(model)
    real_params = total - candidates + k          # every candidate weight is a parameter
    nodes = sum(w.graph.num_nodes for w in wirings.values())
    graphs = "; ".join(w.graph.describe() for w in wirings.values()) or "no channel graph (sparse weights)"
    lines = [
        f"wiring {__version__}: {cfg.model} ({cfg.setting}"
        + (f", {cfg.steps} steps" if cfg.setting == "discrete" else "")
        + (f", {solver_text(cfg)}" if cfg.setting == "continuous" else "")
        + f") on {cfg.data}",
        f"  graph       {graphs}",
        f"  nodes       {nodes}   candidates {candidates}",
        f"  edges       k = {k}   density {k / max(candidates, 1):.4%}",
        f"  preset      {cfg.graph}{' (' + cfg.graph_file + ')' if cfg.graph_file else ''}   mode {cfg.mode}   init {cfg.init}",
        f"  data        {info.name}: {len(train_set)} train / {len(test_set)} test, "
        f"{info.channels}x{info.image_size}x{info.image_size}, {info.num_classes} classes",
        f"  parameters  {total:,} in all, {real_params:,} in the real network",
        f"  training    {cfg.epochs} epochs, batch {cfg.batch_size}, SGD lr {cfg.lr} momentum {cfg.momentum} "
        f"weight decay {cfg.weight_decay}, {cfg.schedule} schedule, seed {cfg.seed}",
        f"  device      {device} ({torch.get_num_threads()} threads)"
        + (f", {native.status()}" if device.type == "cpu" else "") + f", {backends.status(device)}",
        f"  run dir     {run_dir}",
    ]
    return "\n".join(lines)


def _hooks(cfg: Config, recorder: RunRecorder, run_dir: Path, main_rank: bool) -> list:
    """The trainer hooks of the main rank: the run folder's recorder, with --tensorboard
    also the TensorBoard logger (RUN_DIR/tb, :mod:`wiring.tblogger`)."""
    if not main_rank:
        return []
    if not cfg.tensorboard:
        return [recorder]
    from .tblogger import TensorBoardLogger     # the optional tensorboard package loads only when asked for
    return [recorder, TensorBoardLogger(run_dir / "tb", title=run_dir.name)]


def run(cfg: Config, preloaded: tuple[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns the last epoch's metrics and the run directory."""
    info = distributed.from_environment()
    device = resolve_device(cfg.device, info.local_rank)
    try:
        backends.select(cfg.backend, device)
    except backends.BackendError as err:
        raise UsageError(str(err)) from None
    check_dataset(cfg.data, cfg.data_dir)
    if info.enabled and cfg.batch_size < info.world_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is the global batch: it must be at least the "
                         f"world size ({info.world_size})")
    info = distributed.setup(device)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    resuming = on_main_rank(lambda: check_run_dir(cfg, run_dir), info)
    saved = None
    if resuming:                        # a checkpoint main() already read is not read again
        path = run_dir / "checkpoint.pt"
        saved = preloaded[1] if preloaded is not None and preloaded[0] == path else load_checkpoint(path)
    if saved is not None:
        check_resumable(saved, run_dir)
        check_resume_config(cfg, saved.get("config", {}), old_form="edges" not in saved)

    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)
    train_set, test_set, data_info = load_dataset(cfg.data, cfg.data_dir, image_size=cfg.image_size, seed=cfg.seed)
    train_set, test_set = subset(train_set, cfg.train_subset), subset(test_set, cfg.test_subset)
    data_info = dataclasses.replace(data_info, train_size=len(train_set), test_size=len(test_set))
    model = build(cfg, data_info)
    origin = start_from_run(cfg, model) if mode_class(cfg.mode).needs_source else None
    initial_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if info.enabled:
        distributed.convert_batchnorm(model, device)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer, math.ceil(len(train_set) / cfg.batch_size))

    if not resuming and info.is_main:
        if run_dir.exists() and cfg.overwrite:
            for pattern in RUN_ENTRIES:
                for p in run_dir.glob(pattern):
                    p.unlink() if p.is_file() else shutil.rmtree(p)
        run_dir.mkdir(parents=True, exist_ok=True)

    progress = Progress(cfg.progress if info.is_main else "none")
    say = print if info.is_main else (lambda *a, **k: None)
    say(describe(cfg, model, data_info, train_set, test_set, device, run_dir), flush=True)
    if info.enabled:
        say(f"  ranks       {info.world_size} ({'nccl' if device.type == 'cuda' else 'gloo'}), global batch "
            f"{cfg.batch_size} = {cfg.batch_size / info.world_size:g} per rank", flush=True)
    if origin:
        say(f"  start from  {origin}", flush=True)
    if saved is not None and "initial_model" in saved:
        initial_model = saved["initial_model"]
    recorder = RunRecorder(run_dir, cfg.to_dict(), snapshot_every=cfg.snapshot_every,
                           initial_model=initial_model, resumed=resuming,
                           extra_state={"data_info": dataclasses.asdict(data_info), "edges": edge_budget(model)[0]})
    trainer = Trainer(model, optimizer, train_set, test_set, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      device=device, scheduler=scheduler, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed,
                      hooks=_hooks(cfg, recorder, run_dir, info.is_main), progress=progress, debug=cfg.debug,
                      check_wiring_every=cfg.check_wiring_every)
    if saved is not None:
        try:
            trainer.load_state_dict(saved)
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{run_dir / 'checkpoint.pt'} does not fit this run's model "
                                  f"({(str(err).splitlines() or [type(err).__name__])[0]})") from None
        say(f"  resumed     at epoch {trainer.epoch}, step {trainer.step}", flush=True)
    if info.is_main:
        recorder.start(trainer)
    start = time.perf_counter()
    history = trainer.fit()
    last = history[-1] if history else trainer.evaluate()
    say(f"done in {time.perf_counter() - start:.1f}s: test accuracy {last['test_acc']:.4f} "
        f"(best {max(trainer.best_acc, last['test_acc']):.4f})", flush=True)
    for p in sorted(run_dir.glob("wiring*.graphml")) if info.is_main else []:
        say(f"learned wiring: {p}", flush=True)
    say(f"run directory:  {run_dir}", flush=True)
    if info.enabled:
        torch.distributed.barrier()           # rank 0 may still be writing the run directory
        torch.distributed.destroy_process_group()
    return {**last, "run_dir": str(run_dir)}


def resume_config(argv: Sequence[str] | None, cfg: Config) -> tuple[Config, tuple[Path, dict] | None]:
    """With ``--resume``, the run's saved settings are the base and only the flags given
    now change them, so ``--out RUN --resume`` alone continues a run. Returns the config
    and the checkpoint read (its path and state), for :func:`run` to reuse."""
    checkpoint = (Path(cfg.out) if cfg.out else default_run_dir(cfg)) / "checkpoint.pt"
    if not checkpoint.is_file():
        return cfg, None                # run() explains what is missing
    state = load_checkpoint(checkpoint)
    saved = state.get("config")
    return (parse_config(argv, base=saved) if isinstance(saved, dict) else cfg), (checkpoint, state)


def main(argv: Sequence[str] | None = None) -> int:
    tune_malloc()
    try:
        cfg = parse_config(argv)
        preloaded = None
        if cfg.resume:
            cfg, preloaded = resume_config(argv, cfg)
        run(cfg, preloaded)
    except (ConfigError, DataError, GraphError, CheckpointError, UsageError) as err:
        if str(err):                      # other ranks of a distributed run stay silent
            print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(f"error: {err}; the last good checkpoint is kept (continue with --resume after fixing "
              f"the cause, e.g. a lower --lr)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: the last epoch's checkpoint is kept; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
