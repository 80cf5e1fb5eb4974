"""Training configuration as data: one dataclass, argparse, optional YAML.

:class:`Config` holds every setting of a run. :func:`parse_config` fills it from
the defaults, then an optional ``--config FILE.yaml`` (keys are the field names,
with ``-`` or ``_``), then the command line, which wins. The resolved config is
saved as ``config.yaml`` in every run directory and inside every checkpoint (as
a plain dict). Bad values raise :class:`ConfigError` with a message naming the
field; the CLIs turn it into exit status 2 and one line, no traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import yaml

from models import DEFAULT_EDGES, MODELS, SETTINGS
from wiring.backends import CHOICES as BACKENDS
from wiring.cli import help_with_default, run_cli
from wiring.errors import UserError
from wiring.files import NotText, read_text
from wiring.modes import DROP_FRACTION, DROP_SCHEDULE, DROP_SCHEDULES, DROP_UNTIL, MODES, UPDATE_EVERY, mode_class
from wiring.presets import PRESETS

DATASETS = ("digits", "fashion-mnist", "mnist5k", "cifar10", "mnist", "imagenet")
GRAPHS = tuple(PRESETS)
SCHEDULES = ("cosine", "cosine_step", "multistep", "constant")
# --init: "authors" = PyTorch's module defaults of the authors' code (models/tiny.py states them),
# "kaiming" = this engine's init before it (runs saved without an "init" key were trained with it)
INITS = ("authors", "kaiming")
LEGACY_INIT = "kaiming"


# models whose real-edge budget is a property of --width, one per stage, not --edges (their spec says so)
WIDTH_BUDGET_MODELS = tuple(name for name, spec in MODELS.items() if spec.budget == "width")


#: the largest --seed: numpy's and scikit-learn's seeds are 32-bit
SEED_MAX = 2 ** 32 - 1


class ConfigError(UserError, ValueError):
    """A setting is invalid; the message names it."""


@dataclass
class Config:
    """Every setting of a training run, one field per ``wiring.train`` flag (``--edges`` is
    ``edges``; the help text of each is ``_HELP``'s). Made once, by :func:`parse_config`
    (argparse over an optional ``--config`` YAML: flags win) or :func:`config_from_dict`
    (a study cell, a saved run), checked there (:class:`ConfigError` names the setting), then
    only read: it is saved as ``config.yaml`` in the run folder and inside every checkpoint.

    >>> cfg = config_from_dict({"data": "digits", "edges": 500})
    >>> cfg.model, cfg.mode, cfg.edges, cfg.seed
    ('tiny', 'dnw', 500, 0)
    """

    # model and wiring
    model: str = "tiny"
    width: float | None = None
    setting: str = "static"
    steps: int = 5
    solver: str = "dopri5"
    ode_steps: int = 1
    rtol: float = 1e-3
    atol: float = 1e-3
    self_loops: bool = False
    graph: str = "random_k"
    graph_file: str | None = None
    edges: int | None = DEFAULT_EDGES
    mode: str = "dnw"
    td_rho: float = 0.95
    candidate_grad_every: int = 1
    # the rewiring modes rigl and set (wiring.modes.DynamicSparse; RigL's published defaults but
    # update_every, scaled to these short runs)
    update_every: int = UPDATE_EVERY
    drop_fraction: float = DROP_FRACTION
    drop_schedule: str = DROP_SCHEDULE
    drop_until: float = DROP_UNTIL
    init: str = "authors"
    from_run: str | None = None
    # data
    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    # optimisation
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=lambda: [80, 120])
    gamma: float = 0.1
    # run
    seed: int = 0
    device: str = "auto"
    backend: str | None = None
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    deterministic: bool = False
    check_wiring_every: int = 0
    debug: bool = False
    snapshot_every: int = 10
    eval_batch_size: int = 512
    progress: str = "auto"
    progress_every: float = 30.0
    tensorboard: bool = False
    config: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"--{name.replace('_', '-')}: {why}")
        for f in fields(self):                   # nan / inf reach no check below, nor the optimizer
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f.name, f"must be a finite number, got {value}")
        if isinstance(self.seed, bool) or not 0 <= self.seed <= SEED_MAX:
            raise bad("seed", f"must be an integer from 0 to {SEED_MAX} (2**32 - 1, the range of the data "
                              f"splits' and generators' seeds), got {self.seed}")
        if self.model not in MODELS:
            raise bad("model", f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        if self.width is not None and self.width <= 0:
            raise bad("width", f"must be positive, got {self.width}")
        if self.setting not in SETTINGS:
            raise bad("setting", f"unknown setting {self.setting!r}; choose from {', '.join(SETTINGS)}")
        check_model(self)
        if self.steps <= 0:
            raise bad("steps", f"must be positive, got {self.steps}")
        if self.ode_steps <= 0:
            raise bad("ode-steps", f"must be positive, got {self.ode_steps}")
        if self.rtol <= 0 or self.atol <= 0:
            raise bad("rtol" if self.rtol <= 0 else "atol", "ODE tolerances must be positive")
        if self.graph not in GRAPHS:
            raise bad("graph", f"unknown preset {self.graph!r}; choose from {', '.join(GRAPHS)}")
        if self.graph == "graphml" and not self.graph_file:
            raise bad("graph-file", "--graph graphml needs --graph-file FILE.graphml")
        if self.graph_file and not Path(self.graph_file).is_file():
            raise bad("graph-file", f"no such file: {self.graph_file}")
        if self.init not in INITS:
            raise bad("init", f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if self.mode not in MODES:
            raise bad("mode", f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        if mode_class(self.mode).needs_source and not self.from_run:
            raise bad("from", f"mode {self.mode} starts from a trained run: pass --from RUN_DIR")
        if self.from_run and not Path(self.from_run).is_dir():
            raise bad("from", f"no such run directory: {self.from_run}")
        if self.data not in DATASETS:
            raise bad("data", f"unknown data set {self.data!r}; choose from {', '.join(DATASETS)}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise bad(name.replace("_", "-"), f"must be a positive number of images, got {value}")
        if self.edges is not None and self.edges <= 0:
            raise bad("edges", f"must be a positive number of real edges, got {self.edges}")
        for name in ("epochs", "batch_size", "snapshot_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise bad(name, f"must be positive, got {getattr(self, name)}")
        if self.candidate_grad_every < 1:
            raise bad("candidate_grad_every", f"must be at least 1, got {self.candidate_grad_every}")
        if self.update_every < 1:
            raise bad("update_every", f"must be at least 1 (training steps between two rewirings), got {self.update_every}")
        if not 0 <= self.drop_fraction <= 1:
            raise bad("drop_fraction", f"must be in [0, 1] (a fraction of the real edges), got {self.drop_fraction}")
        if self.drop_schedule not in DROP_SCHEDULES:
            raise bad("drop_schedule", f"unknown schedule {self.drop_schedule!r}; choose from {', '.join(DROP_SCHEDULES)}")
        if not 0 <= self.drop_until <= 1:
            raise bad("drop_until", f"must be in [0, 1] (a fraction of training), got {self.drop_until}")
        if mode_class(self.mode).updates and self.candidate_grad_every != 1:
            raise bad("candidate_grad_every", f"does not apply to --mode {self.mode}: it rewires every --update-every "
                                              f"steps (rigl computes the candidates' gradient on those steps only)")
        if self.check_wiring_every < 0:
            raise bad("check_wiring_every", f"must be 0 (off) or positive, got {self.check_wiring_every}")
        for name in ("lr", "momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise bad(name, f"must be non-negative, got {getattr(self, name)}")
        if self.momentum >= 1:
            raise bad("momentum", f"must be below 1 (SGD momentum 1 or more never forgets a step), got {self.momentum}")
        if self.gamma <= 0:
            raise bad("gamma", f"must be positive (the multistep schedule multiplies lr by it), got {self.gamma}")
        if not 0 <= self.td_rho <= 1:
            raise bad("td_rho", f"must be in [0, 1], got {self.td_rho}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.image_size is not None and self.image_size < 8:
            raise bad("image_size", f"must be at least 8, got {self.image_size}")
        if self.progress not in ("auto", "bar", "lines", "none"):
            raise bad("progress", "choose from auto, bar, lines, none")
        if self.progress_every <= 0:
            raise bad("progress_every", f"must be positive (seconds between two progress lines), got {self.progress_every}")
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise bad("tensorboard", "needs the tensorboard package: pip install tensorboard "
                                     "(or pip install 'wiring[tensorboard]')")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise bad("device", f"expected auto, cpu or cuda[:N], got {self.device!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise bad("backend", f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        return self


def check_model(cfg: "Config") -> None:
    """Refuse a ``--width`` or ``--setting`` the model's registry spec does not declare
    (:mod:`models.registry`): a config is checked against the spec, never by building."""
    if cfg.model not in MODELS:         # a config read back from a file is not validated
        raise ConfigError(f"--model: unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
    spec = MODELS[cfg.model]
    if cfg.width is not None and not spec.takes("width"):
        raise ConfigError(f"--width: model {cfg.model} has no width multiplier")
    if cfg.setting not in spec.settings:
        raise ConfigError(f"--setting: model {cfg.model} has {' / '.join(spec.settings)} graphs only, not the "
                          f"{cfg.setting!r} setting")


_HELP = {
    "model": "network to build", "graph": "initial wiring preset",
    "width": "width multiplier, for models that have one (mobilenetv1)",
    "setting": "static (feed-forward DAG), discrete (recurrent) or continuous (neural ODE) graph",
    "steps": "discrete setting: applications of the graph",
    "solver": "continuous setting: torchdiffeq method (dopri5 adaptive; euler, midpoint, rk4 take --ode-steps fixed steps)",
    "ode_steps": "continuous setting with a fixed-step solver: equal steps over [0, 1]",
    "rtol": "continuous setting: relative tolerance", "atol": "continuous setting: absolute tolerance",
    "self_loops": "dynamic settings: allow self-loop candidates",
    "graph_file": "GraphML wiring to start from (with --graph graphml)",
    "edges": "k, the number of real edges (with --mode complete: all candidates)",
    "init": "initial weights: authors (PyTorch's module defaults, as the authors' code: edges U(+-1/sqrt(fan-in)), "
            "node kernels U(+-1/3)) or kaiming (this engine's earlier init)",
    "mode": "how real edges are chosen and updated", "td_rho": "targeted dropout probability (--mode td)",
    "from_run": "trained run directory that fine_tune / lottery start from",
    "data": "data set", "data_dir": "folder holding the data set's files",
    "image_size": "resize images to this side (default: native)",
    "train_subset": "train on this many training images (a fixed random subset, the same for every seed; default: all)",
    "test_subset": "evaluate on this many test images (a fixed random subset; default: all)",
    "epochs": "training epochs", "batch_size": "training batch size", "lr": "initial learning rate",
    "momentum": "SGD momentum", "weight_decay": "weight decay (edge weights included)",
    "schedule": "learning-rate schedule: cosine (stepped every epoch), cosine_step (stepped every iteration, "
                "the authors' MobileNet runs), multistep (x gamma at --milestones), constant",
    "milestones": "multistep: epochs where lr is multiplied by gamma",
    "gamma": "multistep factor", "seed": "random seed (wiring, data order, weights)",
    "device": "auto, cpu or cuda[:N]",
    "backend": "real-edge product: auto (measured fastest per device), native, torch, torch_sparse, torch_scatter "
               "(default: $WIRING_BACKEND, else auto)",
    "out": "run directory (default runs/<data>-<model>-<graph>-<mode>-<edges>-s<seed>, with <model>-<setting> "
           "for a discrete or continuous setting and 'all' for <edges> when every candidate is real, then each "
           "other setting that differs from its default, e.g. -rk4-sub5000-e1, or -h<hash> when they would "
           "read long; --resume finds it whatever --epochs)",
    "candidate_grad_every": "give the hallucinated (not real) candidates their gradient only every N-th training "
                            "step (default 1: every step, as DNW; N > 1 trades swap speed for step time)",
    "update_every": f"--mode rigl / set: training steps between two rewirings (Delta T; default {UPDATE_EVERY}: "
                    f"RigL's 100 scaled to these short runs)",
    "drop_fraction": f"--mode rigl / set: the fraction of the real edges the first rewiring replaces "
                     f"(default {DROP_FRACTION})",
    "drop_schedule": "--mode rigl / set: how that fraction falls: cosine (to 0 at --drop-until, RigL's) or constant",
    "drop_until": f"--mode rigl / set: the fraction of training after which the wiring no longer changes "
                  f"(default {DROP_UNTIL})",
    "resume": "continue the run in --out from its checkpoint",
    "overwrite": "replace an existing run directory",
    "check_wiring_every": "distributed runs: assert every N steps that all ranks hold the same real edges (0: never)",
    "deterministic": "use only deterministic algorithms (bit-exact reruns and resumes on one machine)",
    "debug": "check the wiring invariants after every step, not only every epoch", "snapshot_every": "save the wiring every N steps",
    "eval_batch_size": "evaluation batch size", "progress": "auto (bar on a terminal, lines otherwise), bar, lines, none",
    "progress_every": "progress as lines (--progress lines, or auto without a terminal): a line for the epoch under "
                      "way every SECONDS",
    "tensorboard": "also log the epoch scalars and the ranked wiring picture for TensorBoard to RUN_DIR/tb "
                   "(needs the tensorboard package)",
    "config": "YAML file of settings (command-line flags win)",
}
_CHOICES = {"backend": BACKENDS, "model": tuple(MODELS), "setting": SETTINGS, "graph": GRAPHS, "mode": tuple(MODES), "data": DATASETS, "schedule": SCHEDULES}
_CHOICES["init"] = INITS
_CHOICES["drop_schedule"] = DROP_SCHEDULES


class OneLineParser(argparse.ArgumentParser):
    """argparse whose mistakes raise :class:`ConfigError` (one line, exit 2 in the CLI)
    instead of printing the usage block and exiting."""

    def error(self, message: str):
        raise ConfigError(" ".join(message.split()))


def build_parser(prog: str = "python -m wiring.train") -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description="Train a network while learning its wiring (DNW).",
                           argument_default=argparse.SUPPRESS)
    for f in fields(Config):
        flag = "--from" if f.name == "from_run" else "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_with_default(_HELP.get(f.name), default)}
        if f.type in ("bool",) or isinstance(f.default, bool):
            kwargs["action"] = "store_true"
        elif f.name == "milestones":
            kwargs.update(type=int, nargs="+", metavar="EPOCH")
        else:
            kwargs["type"] = {"int": int, "float": float, "int | None": int,
                              "float | None": float}.get(str(f.type), str)
            if _CHOICES.get(f.name):
                kwargs["choices"] = _CHOICES[f.name]
            kwargs["metavar"] = f.name.upper() if "choices" not in kwargs else None
        parser.add_argument(flag, **{k: v for k, v in kwargs.items() if v is not None})
    return parser


def help_main(argv: Sequence[str] | None = None) -> int:
    """``python -m wiring.train --help`` (or ``-h`` among other flags): the parser's answer,
    with nothing else imported (PyTorch loads only when a run starts); a mistake before the
    ``--help`` is the usual one line and exit 2."""
    return run_cli(lambda args: build_parser().parse_args(args) and 0, "python -m wiring.train", argv)


def _from_yaml(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config: no such file: {path}")
    try:
        data = yaml.safe_load(read_text(p)) or {}
    except NotText as err:
        raise ConfigError(f"--config: {err}: a settings file is UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config: {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of settings")
    known = {f.name: f for f in fields(Config)}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = "from_run" if name == "from" else name
        if name not in known or name == "config":
            raise ConfigError(f"--config: unknown setting {key!r} in {path}")
        out[name] = value
    return out


def _convert(name: str, kind: str, value: Any) -> Any:
    """``value`` as the field's type, strictly: no int from 2.7, no bool from "maybe".
    Numeric strings convert (YAML 1.1 reads ``1e-4`` as a string), as do the
    strings true / false / yes / no for switches."""
    flag = f"--{name.replace('_', '-')}"
    optional = kind.endswith("| None")
    kind = kind.replace("| None", "").strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{flag}: a value is required")
    if isinstance(value, str) and kind in ("int", "float"):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{flag}: expected {kind}, got {value!r}") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        words = {"true": True, "yes": True, "false": False, "no": False}
        if isinstance(value, str) and value.lower() in words:
            return words[value.lower()]
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "list[int]":
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
    raise ConfigError(f"{flag}: expected {kind}, got {value!r}")


def saved_values(values: dict[str, Any]) -> dict[str, Any]:
    """A saved run's config dict with the keys added since it was saved filled in as
    that run had them: ``init`` missing means the run was trained with ``kaiming``."""
    return {"init": LEGACY_INIT, **values}


def config_from_saved(values: dict[str, Any]) -> Config:
    """:func:`config_from_dict` of a saved run's config (``config.yaml``, a checkpoint's
    ``config``): settings it predates take the value the run was trained with."""
    return config_from_dict(saved_values(values))


def config_from_dict(values: dict[str, Any]) -> Config:
    """A :class:`Config` from a plain dict (a saved ``config.yaml``), type-checked."""
    known = {f.name: f for f in fields(Config)}
    cfg = Config()
    for name, value in values.items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}")
        setattr(cfg, name, _convert(name, str(known[name].type), value))
    return cfg


# Settings that describe one invocation, not the run: never taken from a saved config.
INVOCATION = ("resume", "overwrite", "config")


def parse_config(argv: Sequence[str] | None = None, prog: str = "python -m wiring.train", *,
                 base: dict[str, Any] | None = None) -> Config:
    """Defaults, then ``base`` (a saved run's config, when resuming), then ``--config``
    YAML, then command-line flags; validated."""
    args = vars(build_parser(prog).parse_args(argv))
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    if base:
        values.update({k: v for k, v in saved_values(base).items() if k in known and k not in INVOCATION})
    given = set(args)                              # what this invocation asks for (flags, YAML)
    if args.get("config"):
        from_file = _from_yaml(args["config"])
        values.update(from_file)
        given |= set(from_file)
    values.update(args)
    cfg = config_from_dict(values).validate()
    if "edges" in given and cfg.model in WIDTH_BUDGET_MODELS and cfg.edges is not None:
        raise ConfigError(f"--edges: {cfg.model} takes its real edges per stage from --width (k = the pointwise "
                          f"weights of MobileNetV1 at that width); drop --edges, or use --mode complete for "
                          f"every candidate")
    return cfg
