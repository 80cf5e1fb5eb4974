"""The one way from a training config to a model: :func:`build_model` and :func:`model_from_checkpoint`.

``wiring.train``, ``wiring.profile``, ``wiring.bench``, ``wiring.compact`` and ``wiring.export``
build every network here: :func:`model_options` turns a :class:`~wiring.train.config.Config`
and a data set's shape into the keyword options of the registered factory
(:mod:`models.registry`), :func:`build_model` builds it. What a model takes is its
registry spec's business (``--width`` and ``--setting`` are checked against it when the
config is validated); what a mode takes is the mode's (:attr:`wiring.modes.Mode.options`):
this module offers every mode option a config gives (:func:`mode_offer`) and the mode
picks its own.

>>> from types import SimpleNamespace
>>> from wiring.train.config import Config
>>> info = SimpleNamespace(channels=1, num_classes=10, image_size=8, train_size=64)
>>> build_model(Config(model="micro", edges=100), info).graph.k
100
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from torch import nn

from models import create_model
from wiring.io import read_graphml
from wiring.modes import every_candidate_real, mode_options
from wiring.train.checkpoint import CheckpointError, check_data_info, check_weights
from wiring.train.config import Config, ConfigError, check_model, config_from_saved

#: the config fields a dynamic setting passes to the model
SETTING_FIELDS = {"discrete": ("steps", "self_loops"),
                  "continuous": ("solver", "rtol", "atol", "ode_steps", "self_loops")}


def mode_offer(cfg: Config, total_steps: int) -> dict[str, Any]:
    """Every mode option a config gives (each mode takes those it declares): ``rho``
    (``--td-rho``), the rewiring modes' ``update_every`` ... ``seed``, and the run's
    ``total_steps`` (epochs x steps per epoch)."""
    return {"rho": cfg.td_rho, "update_every": cfg.update_every, "drop_fraction": cfg.drop_fraction,
            "drop_schedule": cfg.drop_schedule, "drop_until": cfg.drop_until, "total_steps": int(total_steps),
            "seed": cfg.seed}


def model_options(cfg: Config, data_info: Any) -> dict[str, Any]:
    """The keyword options of ``cfg.model``'s factory for ``cfg`` and a data set described by
    ``data_info`` (``channels``, ``num_classes``, ``image_size``; ``train_size`` for the
    rewiring modes' total steps). Reads ``--graph-file`` for ``--graph graphml``."""
    steps = cfg.epochs * math.ceil(getattr(data_info, "train_size", 0) / cfg.batch_size)    # rigl / set
    options: dict[str, Any] = dict(
        in_channels=data_info.channels, num_classes=data_info.num_classes, image_size=data_info.image_size,
        edges=None if every_candidate_real(cfg.mode, cfg.graph) else cfg.edges, mode=cfg.mode, preset=cfg.graph,
        seed=cfg.seed, preset_options={"wiring": read_graphml(cfg.graph_file)} if cfg.graph == "graphml" else {},
        mode_options=mode_options(cfg.mode, mode_offer(cfg, steps)), init=cfg.init,
        candidate_grad_every=cfg.candidate_grad_every)
    if cfg.setting != "static":
        options.update(setting=cfg.setting, **{name: getattr(cfg, name) for name in SETTING_FIELDS[cfg.setting]})
    if cfg.width is not None:
        options["width"] = cfg.width
    return options


def build_model(cfg: Config, data_info: Any, **options: Any) -> nn.Module:
    """The model of ``cfg`` for a data set described by ``data_info`` (see :func:`model_options`);
    ``options``: more options the model's spec declares (``wiring.profile``'s ``node_width``).

    Raises:
        ConfigError: the model's spec has no ``--width`` or not the ``--setting`` (a config read back
            from a file is not validated), or an optional package the model needs is missing (the
            message says how to get it).
    """
    check_model(cfg)
    try:
        return create_model(cfg.model, **model_options(cfg, data_info), **options)
    except ImportError as err:
        raise ConfigError(str(err)) from None


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """Rebuild the model a ``wiring.train`` checkpoint was saved from, with its weights.

    Raises:
        CheckpointError: the checkpoint lacks its config or data_info, or they or its weights are
            not what wiring.train writes (:mod:`wiring.train.checkpoint`).
    """
    if "data_info" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError("the checkpoint lacks its config or data_info: was it written by wiring.train?")
    check_data_info(checkpoint["data_info"], checkpoint.get("model"), checkpoint["config"])  # before building
    cfg = config_from_saved(checkpoint["config"])
    cfg.graph = "random_k" if cfg.graph == "graphml" else cfg.graph   # weights come from the checkpoint
    model = build_model(cfg, SimpleNamespace(**checkpoint["data_info"]))
    check_weights(checkpoint["model"], model.state_dict())
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint does not fit its model ({str(err).splitlines()[0]})") from None
    return model
