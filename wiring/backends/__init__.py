"""The real-edge product backends: one registry, one signature, chosen per device.

The engine aggregates over real edges in two places: the forward ``out = A x`` and the
gradient to the sources ``grad_x = A^T grad_out`` (:func:`wiring.ops._real_product`, used
by :func:`wiring.ops.propagate` and the fused static graph of :mod:`wiring.fused`). Both
are one CSR product, ``out[r] = sum_{rowptr[r] <= j < rowptr[r+1]} values[j] * x[col[j]]``,
and every backend computes it with the same signature::

    spmm(rowptr, col, values, x, out=None, accumulate=False) -> Tensor

(``rowptr`` ``[rows + 1]`` and ``col`` ``[E]`` int64 on ``x``'s device, ``values`` ``[E]``
of ``x``'s dtype, ``x`` ``[cols, F]``; the ``[rows, F]`` result goes into ``out`` when
given, added to it with ``accumulate``; rows without an entry get 0):

==================  ===========================================================================
``native``          the C++ kernels of :mod:`wiring.backends.kernels` (CPU, float32/float64; built with g++)
``torch``           ``torch.sparse`` CSR times dense: needs nothing beyond PyTorch, any device
``torch_sparse``    ``torch_sparse.matmul`` of a ``SparseTensor`` (PyG's kernels; CPU and CUDA)
``torch_scatter``   ``torch_scatter.segment_csr`` over the target-sorted messages, built in
                    feature chunks of at most :data:`~wiring.backends.torch_scatter.CHUNK_ELEMENTS`
==================  ===========================================================================

When the real edges fill at least ``DENSE_FORWARD_FILL`` of the rectangle, every backend
hands the product to one dense GEMM instead (:mod:`wiring.ops`); the hallucinated-edge
gradient (a dense GEMM per block) is not a backend's business either.

The choice: :func:`select` (``--backend``), else the environment variable
``WIRING_BACKEND``, else ``auto``. ``auto`` takes, per device type, the first backend of
:data:`AUTO` that is installed and takes the tensors (measured order, fastest first; see
:data:`MEASURED`). A backend named explicitly that is not installed, or cannot take the
tensors (``native`` on CUDA), is one :class:`BackendError` naming the problem, never a
silent fallback.

>>> import torch
>>> rowptr, col = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1])
>>> x = torch.arange(6.0).view(3, 2)                     # 3 source rows, 2 features
>>> with using("torch"):
...     spmm(rowptr, col, torch.tensor([1.0, 1.0, 2.0]), x).tolist()
[[4.0, 6.0], [0.0, 0.0], [4.0, 6.0]]
"""
from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Iterator

from wiring.lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

NAMES = ("native", "torch", "torch_sparse", "torch_scatter")
CHOICES = ("auto", *NAMES)
ENV = "WIRING_BACKEND"
_MODULES = {"native": "native", "torch": "torch_ops", "torch_sparse": "torch_sparse",
            "torch_scatter": "torch_scatter"}

# The order auto tries per device type, fastest first, from `python -m wiring.bench --backend all`
# (full training steps of the tiny classifier, 900 and 4,000 nodes at 1/5/20% density; the table
# is in docs/performance.md). CPU: torch.sparse's CSR product (MKL) 1.01-1.20x the native kernel
# wherever the product stays sparse, torch_scatter 0.34-0.75x; torch_sparse 0.97x at the paper's
# 900 nodes but 1.4-1.6x at 4,000 nodes and 5% (third here: the paper's network is the small one);
# at 20% every backend hands the product to the same dense GEMM (noise). CUDA: nothing measured yet.
MEASURED = {
    "cpu": "2026-12-01 and 2026-12-02, 2-core AMD EPYC VM (AVX2; shared), torch 2.13.0+cpu with MKL, "
           "torch-sparse 0.6.18, torch-scatter 2.1.2",
    "cuda": "not measured yet (no GPU here): today's torch.sparse CSR path until bench/gpu_check.sh has run",
}
AUTO = {
    "cpu": ("torch", "native", "torch_sparse", "torch_scatter"),
    "cuda": ("torch", "torch_sparse", "torch_scatter"),
}
_OTHER_DEVICES = ("torch",)                                  # mps, xpu, ...: what runs anywhere

_state: dict = {}                                            # "selected": a name set by select()/using()
_modules: dict[str, ModuleType] = {}


class BackendError(ValueError):
    """A backend was asked for that does not exist, is not installed or cannot take the tensors."""


class OptionalPackage:
    """The optional package a backend runs on, imported on first use: :meth:`load` is
    the module (None when it does not import), :meth:`missing` says why not, with the
    install line ``install``."""

    def __init__(self, name: str, install: str) -> None:
        self.name, self.install = name, install
        self._tried, self._module, self._why = False, None, None

    def load(self) -> ModuleType | None:
        if not self._tried:
            self._tried = True
            try:
                self._module = importlib.import_module(self.name)
            except Exception as err:         # ImportError, or an OSError from a wheel built for another torch
                self._why = (f"{self.name} does not import ({type(err).__name__}: "
                             f"{(str(err).splitlines() or [''])[0]}); install: {self.install}")
        return self._module

    def missing(self) -> str | None:
        self.load()
        return self._why


def takes_floating(devices: tuple[str, ...] | None, x: Tensor, values: Tensor) -> bool:
    """Whether ``x`` and ``values`` are floating tensors of one dtype on one device, of a
    type in ``devices`` (None: any)."""
    return ((devices is None or x.device.type in devices) and x.is_floating_point()
            and values.dtype == x.dtype and values.device == x.device)


def _check_name(name: str, where: str) -> str:
    if name not in CHOICES:
        raise BackendError(f"{where}: unknown backend {name!r}; choose from {', '.join(CHOICES)}")
    return name


def module(name: str) -> ModuleType:
    """The module of backend ``name`` (imported on first use; its package need not be installed)."""
    _check_name(name, "backend")
    if name not in _modules:
        _modules[name] = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return _modules[name]


def missing(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine (not installed, no compiler), or None."""
    return module(name).missing()


def installed() -> tuple[str, ...]:
    """The backends that can run here, in :data:`NAMES` order."""
    return tuple(name for name in NAMES if missing(name) is None)


def requested() -> str:
    """The name asked for: :func:`select`'s, else ``$WIRING_BACKEND``, else ``auto``."""
    if "selected" in _state:
        return _state["selected"]
    return _check_name(os.environ.get(ENV, "").strip() or "auto", ENV)


def _unusable(name: str, device_type: str) -> str | None:
    """Why backend ``name`` cannot run on ``device_type`` here, or None."""
    why = missing(name)
    if why is not None:
        return f"not available: {why}"
    devices = module(name).DEVICES
    if devices is not None and device_type not in devices:
        return f"runs on {' and '.join(devices)} tensors only, not {device_type}"
    return None


def select(name: str | None, device: torch.device | str | None = None) -> str:
    """Use backend ``name`` (``auto`` or one of :data:`NAMES`) from now on in this process;
    ``None`` keeps ``$WIRING_BACKEND`` / ``auto``. With ``device``, a named backend that
    cannot run there is refused now rather than at the first product. Returns the
    backend that products on ``device`` will use (the name itself without ``device``)."""
    name = requested() if name is None else _check_name(name, "--backend")
    if device is not None and name != "auto":
        why = _unusable(name, torch.device(device).type)
        if why is not None:
            raise BackendError(f"backend {name!r} {why}")
    _state["selected"] = name
    return name if device is None else resolved(torch.device(device).type)


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    """Within this block products use backend ``name`` (tests, benchmarks).

    >>> with using("torch"):
    ...     requested()
    'torch'
    """
    _check_name(name, "backend")
    had, previous = "selected" in _state, _state.get("selected")
    _state["selected"] = name
    try:
        yield
    finally:
        if had:
            _state["selected"] = previous
        else:
            _state.pop("selected", None)


def _auto_order(device_type: str) -> tuple[str, ...]:
    return AUTO.get(device_type, _OTHER_DEVICES)


def resolved(device_type: str) -> str:
    """The name of the backend that products on ``device_type`` will use."""
    name = requested()
    if name != "auto":
        return name
    return next((c for c in _auto_order(device_type) if _unusable(c, device_type) is None), "torch")


def choose(x: Tensor, values: Tensor) -> ModuleType:
    """The backend module for a product of these tensors (see the module docstring)."""
    name = requested()
    if name == "auto":
        for candidate in _auto_order(x.device.type):
            if missing(candidate) is None and module(candidate).takes(x, values):
                return module(candidate)
        return module("torch")
    backend = module(name)
    why = _unusable(name, x.device.type)
    if why is None and backend.takes(x, values):
        return backend
    why = why or f"takes {backend.TAKES}, not {x.dtype} on {x.device}"
    raise BackendError(f"backend {name!r} {why} (name another with --backend or {ENV}, or use auto)")


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """The CSR product ``A x`` (``out (+)= A x``) on the chosen backend (signature above)."""
    return choose(x, values).spmm(rowptr, col, values, x, out=out, accumulate=accumulate)


def status(device: torch.device | str = "cpu") -> str:
    """One line for logs: the backend that products on ``device`` use, and how it was chosen."""
    device_type = torch.device(device).type
    name = requested()
    if name == "auto":
        return f"product backend {resolved(device_type)} (auto)"
    return f"product backend {name}"
