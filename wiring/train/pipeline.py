"""The training pipeline behind ``python -m wiring.train``: train a network while learning its wiring.

The path of one run: arguments -> :class:`~wiring.train.config.Config` -> data ->
:func:`~wiring.train.build.build_model` (the model registry; the preset builds the graph) ->
:class:`~wiring.train.trainer.Trainer`
with a :class:`~wiring.train.recorder.RunRecorder` writing the run directory. Every
argument is validated before any work; user mistakes exit with status 2 and one
line on stderr, and nothing is written to an existing run directory unless
``--resume`` or ``--overwrite`` says so.

Example::

    python -m wiring.train --graph random_k --edges 12000 --data digits --epochs 30
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import torch

from models.cost import inference_parameters
from models.dynamic import FIXED_STEP_SOLVERS
from wiring import __version__, backends
from wiring.backends import kernels
from wiring.cli import run_cli
from wiring.errors import UserError
from wiring.io import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    SPARSE_FILE,
    TB_DIR,
    RunFolderBusy,
    RUNS_ROOT,
    RunLock,
    WiringFileError,
    find_run_folder,
    run_folder_name,
    run_files,
    run_paths,
    load_metrics,
    temp_files,
    wiring_file,
    wiring_key,
)
from wiring.modes import every_candidate_real, mode_class
from wiring.sparsify import budget_of, sparse_layers
from wiring.train import distributed
from wiring.train.allocator import tune_malloc
from wiring.train.build import build_model
from wiring.train.checkpoint import CheckpointError, check_resumable, check_weights, load_checkpoint
from wiring.train.config import WIDTH_BUDGET_MODELS, Config, parse_config, saved_values
from wiring.train.data import check_dataset, load_dataset, subset
from wiring.train.monitor import edge_budget, find_wirings
from wiring.train.recorder import RunRecorder
from wiring.train.schedule import align_lr, make_scheduler
from wiring.train.trainer import (
    Progress,
    Stopped,
    StopRequest,
    Trainer,
    TrainingStopped,
    signal_name,
)

# --overwrite removes exactly the files this run writes: wiring.io.run_files (the one list of them).
# Settings that may change when a run is resumed.
RESUMABLE = {"epochs", "resume", "overwrite", "device", "backend", "out", "progress", "eval_batch_size", "config",
             "debug", "deterministic", "check_wiring_every", "tensorboard", "progress_every"}


class UsageError(UserError, ValueError):
    """A user mistake caught before training; exits with status 2."""


# Settings that do not name a default run folder (wiring.io.run_folder_name): those that may change
# on --resume, but --epochs (the horizon a run started with names it: a resume finds it whatever the
# --epochs now), and where the data lies.
UNNAMED = (RESUMABLE - {"epochs"}) | {"data_dir"}


def default_run_dir(cfg: Config) -> Path:
    """``runs/NAME``, NAME by :func:`wiring.io.run_folder_name`: the default run keeps
    ``runs/digits-tiny-random_k-dnw-12000-s0``, any other gets its non-default settings appended."""
    return Path(RUNS_ROOT) / run_folder_name(cfg.to_dict(), Config().to_dict(), skip=UNNAMED)


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


def run_dir_of(cfg: Config) -> Path:
    """``--out``, else the default run folder; for ``--resume`` the run folder of these settings
    whatever its ``--epochs`` (:func:`wiring.io.find_run_folder`)."""
    if cfg.out:
        return Path(cfg.out)
    if cfg.resume:
        try:
            return find_run_folder(RUNS_ROOT, cfg.to_dict(), Config().to_dict(), skip=UNNAMED)
        except WiringFileError as err:
            raise UsageError(str(err)) from None
    return default_run_dir(cfg)


def check_run_dir(cfg: Config, run_dir: Path) -> str:
    """Decide what to do with ``run_dir``: ``"resume"`` its checkpoint, ``"restart"`` (``--resume``
    of a run stopped before its first checkpoint: it starts over with its saved settings, which
    gives what an uninterrupted run gives) or ``"new"``. Writes nothing."""
    # the lock and the temporary files of writes a kill cut short are no run
    leftovers = {p.name for p in temp_files(run_dir, run_files())} | {LOCK_FILE} if run_dir.is_dir() else set()
    existing = run_dir.is_dir() and any(p.name not in leftovers for p in run_dir.iterdir())
    checkpointed = (run_dir / CHECKPOINT_FILE).is_file()
    stopped_early = not checkpointed and (run_dir / CONFIG_FILE).is_file()
    if cfg.resume and checkpointed:
        return "resume"
    if cfg.resume and not stopped_early:
        raise UsageError(f"--resume: {run_dir} holds no run to continue (no {CHECKPOINT_FILE}, no {CONFIG_FILE}): "
                         f"start one without --resume")
    if existing and not cfg.overwrite and not cfg.resume:
        if stopped_early:
            raise UsageError(f"run directory {run_dir} holds a run stopped before its first checkpoint: pass "
                             f"--resume to start it over with its saved settings, --overwrite to replace it, "
                             f"or --out DIR for a new one")
        raise UsageError(f"run directory {run_dir} already exists: pass --resume to continue it, "
                         f"--overwrite to replace it, or --out DIR for a new one")
    probe = run_dir if run_dir.exists() else next((p for p in run_dir.parents if p.exists()), Path("."))
    if not probe.is_dir() or not _writable(probe):
        raise UsageError(f"--out {run_dir}: {probe} is not a writable folder")
    return "restart" if cfg.resume else "new"


def _writable(folder: Path) -> bool:
    """Whether a folder can be made in ``folder``: tried (and removed at once), because
    permissions do not tell (``/proc``, ``/sys``, a read-only mount refuse even root)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".wiring-probe-", dir=folder))
    except OSError:
        return False
    return True


def claim(lock: RunLock) -> None:
    """Take the run folder's lock; another process holding it is a user error (exit 2)."""
    try:
        lock.acquire()
    except RunFolderBusy as err:
        raise UsageError(str(err)) from None


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


def finished_run(cfg: Config, saved: dict[str, Any], model: torch.nn.Module,
                 run_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """For ``--resume`` of a run that trained its ``--epochs`` and wrote its final files (a kill
    after the last checkpoint leaves those to a resume): the one line saying so and the run's
    last metrics record; else None."""
    if "position" in saved or int(saved["epoch"]) < cfg.epochs:
        return None
    wirings = find_wirings(model)
    finals = [run_dir / wiring_file("wiring", ".graphml", wiring_key(name, len(wirings))) for name in wirings]
    if not all(p.is_file() for p in finals + ([run_dir / SPARSE_FILE] if sparse_layers(model) else [])):
        return None
    try:
        records = load_metrics(run_dir / METRICS_FILE)
    except WiringFileError:
        records = []
    last = records[-1] if records else {}
    acc = f", test accuracy {last['test_acc']:.4f}" if isinstance(last.get("test_acc"), float) else ""
    return (f"{run_dir} is finished: it trained {saved['epoch']} epochs (step {saved['step']}){acc}; nothing "
            f"was changed (a larger --epochs on --resume trains on)"), last


def start_from_run(cfg: Config, model: torch.nn.Module) -> str:
    """fine_tune / lottery: weights and frozen top-k from the trained run ``--from``."""
    source = Path(cfg.from_run)
    state = load_checkpoint(source / CHECKPOINT_FILE)
    trained = state["model"]
    start = trained
    rewinds = mode_class(cfg.mode).rewinds
    if rewinds:
        if "initial_model" not in state:
            raise UsageError(f"--from {source}: its checkpoint has no initial weights to rewind to")
        start = state["initial_model"]
    wirings = find_wirings(model)
    check_weights(start, model.state_dict(), f"--from {source}: {source / CHECKPOINT_FILE}")
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
    real_params = inference_parameters(model)     # real edges into live nodes, live nodes' ops (models.cost)
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
        *(f"  rewiring    {rule.plan()}" for rule in _rewiring_rules(model)[:1]),
        f"  data        {info.name}: {len(train_set)} train / {len(test_set)} test, "
        f"{info.channels}x{info.image_size}x{info.image_size}, {info.num_classes} classes",
        f"  parameters  {total:,} in all, {real_params:,} in the inference network of the initial wiring",
        f"  training    {cfg.epochs} epochs, batch {cfg.batch_size}, SGD lr {cfg.lr} momentum {cfg.momentum} "
        f"weight decay {cfg.weight_decay}, {cfg.schedule} schedule, seed {cfg.seed}",
        f"  device      {device} ({torch.get_num_threads()} threads)"
        + (f", {kernels.status()}" if device.type == "cpu" else "") + f", {backends.status(device)}",
        f"  run dir     {run_dir}",
    ]
    return "\n".join(lines)


def _rewiring_rules(model) -> list:
    """The rewiring rules (``rigl`` / ``set``) of ``model``'s wirings and sparsified layers."""
    budget = budget_of(model)
    return [w.mode for w in find_wirings(model).values() if w.mode.updates] + \
        ([budget.rule] if budget is not None and budget.rule is not None else [])


def _hooks(cfg: Config, recorder: RunRecorder, run_dir: Path, main_rank: bool) -> list:
    """The trainer hooks of the main rank: the run folder's recorder, with --tensorboard
    also the TensorBoard logger (RUN_DIR/tb, :mod:`wiring.train.tblogger`)."""
    if not main_rank:
        return []
    if not cfg.tensorboard:
        return [recorder]
    # the optional tensorboard package loads only when asked for
    from wiring.train.tblogger import TensorBoardLogger
    return [recorder, TensorBoardLogger(run_dir / TB_DIR, title=run_dir.name)]


def run(cfg: Config, preloaded: tuple[Path, dict[str, Any]] | None = None, *, lock: RunLock | None = None,
        stop: StopRequest | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns the last epoch's metrics and the run directory.

    The run folder is locked (:class:`wiring.io.RunLock`) from before its first write (a
    folder that exists: before it is judged, its settings or checkpoint read) to the end; ``lock`` is one the caller took
    already. With ``stop`` (installed), SIGINT / SIGTERM stop training resumably
    (:class:`wiring.train.trainer.Stopped`)."""
    own = lock is None
    lock = lock or RunLock(run_dir_of(cfg))
    try:
        return _run(cfg, preloaded, lock, stop)
    finally:
        if own:
            lock.release()


def _run(cfg: Config, preloaded: tuple[Path, dict[str, Any]] | None, lock: RunLock,
         stop: StopRequest | None) -> dict[str, Any]:
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
    run_dir = run_dir_of(cfg)
    # an existing folder is locked before it is judged (another process's run: "in use", whatever it holds)
    mode = on_main_rank(lambda: (run_dir.is_dir() and claim(lock), check_run_dir(cfg, run_dir))[1], info)
    if mode == "resume":                # locked before its checkpoint is read, and decided again
        mode = on_main_rank(lambda: (claim(lock), check_run_dir(cfg, run_dir))[1], info)
    resuming = mode == "resume"
    saved = None
    if resuming:                        # a checkpoint main() already read (under the lock) is not read again
        path = run_dir / CHECKPOINT_FILE
        saved = preloaded[1] if preloaded is not None and preloaded[0] == path else load_checkpoint(path)
    if saved is not None:
        check_resumable(saved, run_dir / CHECKPOINT_FILE)
        check_resume_config(cfg, saved.get("config", {}), old_form="edges" not in saved)

    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)
    train_set, test_set, data_info = load_dataset(cfg.data, cfg.data_dir, image_size=cfg.image_size, seed=cfg.seed)
    train_set, test_set = subset(train_set, cfg.train_subset), subset(test_set, cfg.test_subset)
    data_info = dataclasses.replace(data_info, train_size=len(train_set), test_size=len(test_set))
    if cfg.batch_size > len(train_set) and info.is_main:
        print(f"{PROG}: warning: --batch-size {cfg.batch_size} is more than the {len(train_set):,} training "
              f"images: every epoch is one step on all of them", file=sys.stderr, flush=True)
    model = build_model(cfg, data_info)
    done = finished_run(cfg, saved, model, run_dir) if saved is not None else None
    if done is not None:                # --resume of a finished run: one line, exit 0, the folder untouched
        if info.is_main:
            print(done[0], flush=True)
        if info.enabled:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return {**done[1], "run_dir": str(run_dir), "finished": True}
    origin = start_from_run(cfg, model) if mode_class(cfg.mode).needs_source else None
    initial_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if info.enabled:
        distributed.convert_batchnorm(model, device)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer, math.ceil(len(train_set) / cfg.batch_size))

    if not resuming:                    # locked before the first write, and decided again under the lock
        mode = on_main_rank(lambda: (claim(lock), check_run_dir(cfg, run_dir))[1], info)
        if mode == "resume":
            raise UsageError(f"{run_dir} received a checkpoint while this run started: run the command again")
    if not resuming and info.is_main:
        if run_dir.exists() and (cfg.overwrite or mode == "restart"):
            wirings = find_wirings(model)
            for p in run_paths(run_dir, [wiring_key(name, len(wirings)) for name in wirings]):
                p.unlink()
            with contextlib.suppress(OSError):          # tb/ goes only when it held nothing else
                (run_dir / TB_DIR).rmdir()
        run_dir.mkdir(parents=True, exist_ok=True)

    progress = Progress(cfg.progress if info.is_main else "none", every=cfg.progress_every)
    say = print if info.is_main else (lambda *a, **k: None)
    say(describe(cfg, model, data_info, train_set, test_set, device, run_dir), flush=True)
    if info.enabled:
        say(f"  ranks       {info.world_size} ({'nccl' if device.type == 'cuda' else 'gloo'}), global batch "
            f"{cfg.batch_size} = {cfg.batch_size / info.world_size:g} per rank", flush=True)
    if origin:
        say(f"  start from  {origin}", flush=True)
    if saved is not None and "initial_model" in saved:
        initial_model = saved["initial_model"]
    # the run's identity, in its checkpoints, metrics lines and histories (None: a run saved before ids)
    run_id = saved.get("run_id") if saved is not None else uuid.uuid4().hex[:16]
    recorder = RunRecorder(run_dir, cfg.to_dict(), snapshot_every=cfg.snapshot_every,
                           initial_model=initial_model, resumed=resuming,
                           data_info=dataclasses.asdict(data_info), edges=edge_budget(model)[0], run_id=run_id)
    trainer = Trainer(model, optimizer, train_set, test_set, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      device=device, scheduler=scheduler, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed,
                      hooks=_hooks(cfg, recorder, run_dir, info.is_main), progress=progress, debug=cfg.debug,
                      check_wiring_every=cfg.check_wiring_every, stop=stop)
    if saved is not None:
        check_weights(saved["model"], model.state_dict(), str(run_dir / CHECKPOINT_FILE))
        try:
            trainer.load_state_dict(saved)
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{run_dir / CHECKPOINT_FILE} does not fit this run's model "
                                  f"({(str(err).splitlines() or [type(err).__name__])[0]})") from None
        align_lr(cfg, scheduler, optimizer, trainer.epoch)      # the schedule of the --epochs given now
        inside = saved.get("position") if isinstance(saved.get("position"), dict) else None
        within = f" (batch {inside['batch']} of epoch {trainer.epoch + 1})" if inside else ""
        say(f"  resumed     at epoch {trainer.epoch}, step {trainer.step}{within}", flush=True)
    elif mode == "restart":
        say(f"  resumed     from step 0: {run_dir} had no checkpoint yet (the run stopped before its first), "
            f"and the same settings and seed give the same run", flush=True)
    if info.is_main:
        recorder.start(trainer)
    start = time.perf_counter()
    history = trainer.fit()
    last = history[-1] if history else trainer.evaluate()
    say(f"done in {time.perf_counter() - start:.1f}s: test accuracy {last['test_acc']:.4f} "
        f"(best {max(trainer.best_acc, last['test_acc']):.4f})", flush=True)
    say(f"parameters:     {inference_parameters(model):,} in the inference network of the learned wiring "
        f"(as wiring.profile and wiring.compact count them)", flush=True)
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
    checkpoint = run_dir_of(cfg) / CHECKPOINT_FILE
    if not checkpoint.is_file():        # a run stopped before its first checkpoint starts over with its settings
        saved = _saved_settings(run_dir_of(cfg) / CONFIG_FILE)
        return (parse_config(argv, base=saved) if saved else cfg), None   # else run() explains what is missing
    state = load_checkpoint(checkpoint)
    saved = state.get("config")
    return (parse_config(argv, base=saved) if isinstance(saved, dict) else cfg), (checkpoint, state)


def _saved_settings(path: Path) -> dict | None:
    """The settings a run saved in its ``config.yaml`` (None when absent or unreadable)."""
    import yaml
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeError, yaml.YAMLError):
        return None
    return values if isinstance(values, dict) else None


def stop_message(err: BaseException, run_dir: Path | None) -> str:
    """One true line for a run that ended early: what its folder holds and what works next."""
    checkpoint = run_dir / CHECKPOINT_FILE if run_dir is not None else None
    again = f"python -m wiring.train --out {run_dir} --resume"
    if isinstance(err, Stopped):
        where = ("before its first step" if err.step == 0 else f"after epoch {err.epoch}" if err.batch == 0 else
                 f"epoch {err.epoch + 1}, its evaluation abandoned" if err.batch >= err.batches else
                 f"epoch {err.epoch + 1}, batch {err.batch} of {err.batches}")
        return (f"stopped by {signal_name(err.signum)} at step {err.step} ({where}): {checkpoint} holds that "
                f"moment; continue exactly with: {again}")
    if isinstance(err, TrainingStopped):
        kept = (f"{checkpoint} keeps the last good epoch, but --resume repeats the same steps (it keeps the "
                f"run's --lr)" if checkpoint is not None and checkpoint.is_file() else "nothing was checkpointed")
        return (f"error: {err}; {kept}: start again after fixing the cause (e.g. a lower --lr) with --overwrite, "
                f"or --out DIR")
    name = signal_name(getattr(err, "signum", 2))
    if checkpoint is not None and checkpoint.is_file():
        return f"interrupted ({name}) at once: {checkpoint}, the last one written, is kept; continue with: {again}"
    if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        return (f"interrupted ({name}) before the first checkpoint: {again} starts the run over (the same "
                f"settings and seed give the same run), or pass --overwrite")
    return f"interrupted ({name}) before the run wrote anything: run the command again"


PROG = "python -m wiring.train"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: its exit status (0 done, 1 stopped by a non-finite weight, 2 a user
    mistake as one line ``python -m wiring.train: error: ...``, 128 + N stopped by signal N).
    Under torchrun rank 0 says a mistake; the other ranks exit 2 silently (:func:`_other_rank`)."""
    return run_cli(_main if distributed.from_environment().is_main else _other_rank, PROG, argv)


def _other_rank(argv: Sequence[str] | None = None) -> int:
    """A rank other than 0: a user mistake is rank 0's to say. This rank waits for torchrun to
    stop it (it does once rank 0 has ended) and exits 2 without a word; a mistake rank 0 did
    not meet (torchrun has not stopped this rank within distributed.REPORT_WAIT seconds) is
    said here."""
    try:
        return _main(argv)
    except UserError:
        if distributed.stopped_within(distributed.REPORT_WAIT):
            return 2
        raise


def _main(argv: Sequence[str] | None = None) -> int:
    tune_malloc()
    stop = StopRequest()
    cfg = lock = where = None
    try:
        with stop.installed():          # SIGINT / SIGTERM: a resumable stop (see wiring.train.trainer.StopRequest)
            try:
                cfg = parse_config(argv)
                if cfg.resume and not cfg.out:  # the folder found now, whatever the saved settings rename
                    cfg.out = str(run_dir_of(cfg))
                preloaded = None
                if not distributed.from_environment().enabled:    # (torchrun: run() locks on rank 0)
                    lock = RunLock(run_dir_of(cfg))
                if lock is not None and lock.run_dir.is_dir():
                    claim(lock)         # before anything in it is read: its settings, its checkpoint
                if cfg.resume:
                    cfg, preloaded = resume_config(argv, cfg)
                    if lock is not None and lock.run_dir != run_dir_of(cfg):
                        lock.release()
                        lock = None
                where = run_dir_of(cfg)         # the folder the messages name
                run(cfg, preloaded, lock=lock, stop=stop)
            finally:
                if lock is not None:
                    lock.release()
                distributed.close()             # an error under torchrun: out of the process group first
    except TrainingStopped as err:
        print(stop_message(err, where), file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt) as err:     # KeyboardInterrupt: Interrupted, or one raised in code
        if distributed.from_environment().is_main:          # one line, not one per rank
            if sys.stderr.isatty() or (cfg is not None and cfg.progress == "bar"):
                sys.stderr.write("\n")   # after a progress bar
            print(stop_message(err, where), file=sys.stderr)
        return 128 + int(getattr(err, "signum", 2))
    return 0

