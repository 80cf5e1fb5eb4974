"""Every cell of a study checked before the first one trains (``--dry-run`` too).

Contract: :func:`check_size` refuses a grid of more than ``max_cells`` cells from its
dimensions (:meth:`~wiring.study.spec.Study.count`, no cell made); :func:`check_cells` refuses,
as one :class:`~wiring.study.spec.StudyError` line, what would fail every cell or one cell
later: the backend (``backend`` or ``$WIRING_BACKEND``) and the device not usable here, the
data set's files missing (saying how to get them), a budget of ``grid.edges`` /
``mode_edges`` above the candidate edges of the model in a setting. The model is built once
per setting, on the data set's image shape (:data:`IMAGE_SHAPES`), nothing trained or loaded.
"""
from __future__ import annotations

import os
from typing import Any

from wiring.study.spec import ALL_REAL, DEPENDENT, Study, StudyError

#: the limit on a grid's cells unless ``--max-cells`` says otherwise
MAX_CELLS = 10_000

#: (channels, classes, native side) of each data set: the model a cell builds, without loading it
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 10, 8), "fashion-mnist": (1, 10, 28), "mnist": (1, 10, 28), "mnist5k": (1, 10, 28),
    "cifar10": (3, 10, 32), "imagenet": (3, 1000, 224),
}


def check_size(study: Study, max_cells: int = MAX_CELLS) -> int:
    """The grid's cell count; a :class:`StudyError` when it is above ``max_cells``."""
    count = study.count()
    if count > max_cells:
        dims = " x ".join(f"{len(study.grid[k])} {k}" for k in ("setting", "mode", "edges", "seed"))
        raise StudyError(f"study {study.name}: the grid has {count:,} cells ({dims}), more than the "
                         f"limit of {max_cells:,}: cut the grid down, or pass --max-cells {count}")
    return count


def _backend_and_device(base: Any) -> None:
    from wiring import backends
    from wiring.train.pipeline import resolve_device

    try:
        device = resolve_device(base.device)
    except Exception as err:          # UsageError: CUDA asked for where there is none
        raise StudyError(f"base: {err}") from None
    env = os.environ.get(backends.ENV, "").strip()
    where, name = ("base: backend", base.backend) if base.backend else (f"${backends.ENV}", env or "auto")
    if name not in backends.CHOICES:
        raise StudyError(f"{where}: unknown backend {name!r}; choose from {', '.join(backends.CHOICES)}")
    if name != "auto":
        why = backends.missing(name)
        devices = backends.module(name).DEVICES
        if why is None and devices is not None and device.type not in devices:
            why = f"it runs on {' and '.join(devices)} tensors only, not {device.type}"
        if why is not None:
            raise StudyError(f"{where}: backend {name!r} cannot run every cell here: {why}")


def _candidates(study: Study, setting: str) -> tuple[int, str]:
    """The candidate edges of the study's model in ``setting`` (built once, untrained)."""
    import torch

    from wiring.train.data import DatasetInfo
    from wiring.train.monitor import edge_budget
    from wiring.train.build import build_model
    from wiring.train.config import config_from_dict

    base = study.base_config()
    channels, classes, side = IMAGE_SHAPES.get(base.data, (1, 10, 8))
    info = DatasetInfo(base.data, classes, channels, base.image_size or side, 0, 0)
    modes = [m for m in study.grid["mode"] if m not in DEPENDENT and not ALL_REAL(m)] or ["dnw"]
    cfg = config_from_dict({**study.base, "setting": setting, "mode": modes[0], "edges": 1})
    state = torch.random.get_rng_state()
    try:
        model = build_model(cfg, info)
    except Exception as err:  # noqa: BLE001 - any refusal of the model is the study's refusal
        raise StudyError(f"study {study.name}: model {base.model} (setting {setting}) cannot be built: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    finally:
        torch.random.set_rng_state(state)
    return edge_budget(model)[1], base.model


def _edges(study: Study) -> None:
    sparse = [m for m in study.grid["mode"] if not ALL_REAL(m)]
    budgets = {e for m in sparse for e in study.edges_of(m) if e is not None}
    if not budgets:
        return
    for setting in study.grid["setting"]:
        candidates, model = _candidates(study, setting)
        over = sorted(e for e in budgets if e > candidates)
        if over:
            raise StudyError(f"study {study.name}: grid.edges {', '.join(map(str, over[:3]))}"
                             f"{' ...' if len(over) > 3 else ''} is more than the {candidates} candidate edges "
                             f"of model {model} in setting {setting}: every budget must be at most {candidates}")


def check_cells(study: Study) -> None:
    """Refuse now what would fail a cell later (see the module docstring)."""
    from wiring.train.data import DataError, check_dataset

    base = study.base_config()
    _backend_and_device(base)
    try:
        check_dataset(base.data, base.data_dir)
    except DataError as err:
        raise StudyError(f"study {study.name}: {err}") from None
    _edges(study)
