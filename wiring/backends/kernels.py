"""Optional native CPU kernels: built once per machine, used when they load.

The engine's two hottest CPU paths have a fused C++ implementation in
``wiring/backends/kernels.cpp`` (plain C ABI, OpenMP, no PyTorch headers):

* :func:`spmm`: ``out = A x`` for a CSR matrix ``A`` (the real edges) and node-major
  ``x``, in feature chunks that stay in cache; no per-edge messages, no zero-fill and
  copy of the result as ``torch.sparse`` does on CPU;
* :func:`node_forward` / :func:`node_backward`: the paper's node op (instance norm ->
  ReLU -> depthwise 3x3) in one pass over each ``(node, sample)`` plane;
* :func:`sampled_dot`: the real edges' weight gradient ``<x[u], grad[v]>`` (the modes
  without hallucinated gradients), in place of ``torch.sparse.sampled_addmm``;
* :func:`topk_mask`: the real-edge selection by a selection algorithm in one call.

The first use compiles the source with the system's C++ compiler (``$CXX`` or ``g++``,
about 2 s) into ``$WIRING_CACHE_DIR`` (default ``~/.cache/wiring``), keyed by the
source, the compiler and the CPU, and loads it with :mod:`ctypes`. Without a compiler,
on a failed build, for CUDA tensors or other dtypes, or with ``WIRING_NATIVE=0``, the
callers use their PyTorch path, which computes the same values; :func:`status` says
which is in use and why. Thread count follows :func:`torch.get_num_threads`.

>>> import torch
>>> x = torch.arange(6.0).view(3, 2)                     # 3 source nodes, 2 features
>>> rowptr, col = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1])
>>> out = spmm(rowptr, col, torch.tensor([1.0, 1.0, 2.0]), x) if enabled(x) else torch.tensor(
...     [[4.0, 6.0], [0.0, 0.0], [4.0, 6.0]])
>>> out.tolist()                                         # row 0 = x0 + x2, row 1 empty, row 2 = 2 x1
[[4.0, 6.0], [0.0, 0.0], [4.0, 6.0]]
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from wiring.lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

SOURCE = Path(__file__).with_name("kernels.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu++17")
ABI_VERSION = 1
_DTYPES = {"torch.float32": "f32", "torch.float64": "f64"}   # by str(dtype): torch loads on first use

_state: dict = {}      # "lib": the loaded library or None, "reason": why not, "path": its file, "off"


def cache_dir() -> Path:
    return Path(os.environ.get("WIRING_CACHE_DIR") or Path.home() / ".cache" / "wiring")


def _cpu_signature() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _build() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("WIRING_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by WIRING_NATIVE=0"
    compiler = shutil.which(os.environ.get("CXX") or "g++")
    if compiler is None:
        return None, "no C++ compiler found (set CXX, or install g++)"
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), _compiler_version(compiler).encode(),
                                     _cpu_signature().encode(), platform.machine().encode()])).hexdigest()[:16]
    target = cache_dir() / "native" / f"kernels-{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                built = Path(tmp) / target.name
                result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)],
                                        capture_output=True, text=True, timeout=300)
                if result.returncode != 0:
                    first = (result.stderr.strip().splitlines() or ["no message"])[0]
                    return None, f"the C++ build failed: {first}"
                os.replace(built, target)           # atomic: concurrent builders never see half a file
        except (OSError, subprocess.SubprocessError) as err:
            return None, f"the C++ build failed: {err}"
    try:
        lib = ctypes.CDLL(str(target))
        if lib.wr_abi_version() != ABI_VERSION:
            return None, f"{target} has another ABI version"
    except (OSError, AttributeError) as err:
        return None, f"could not load {target}: {err}"
    _state["path"] = str(target)
    return lib, "loaded"


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first call; None when unavailable."""
    if "lib" not in _state:
        _state["lib"], _state["reason"] = _build()
    return _state["lib"]


def status() -> str:
    """Whether the native kernels are in use, and why not when they are not (one line).

    The library's file is ``_state["path"]`` once loaded."""
    lib = library()
    if lib is None:
        return f"native CPU kernels off: {_state['reason']}"
    return "native CPU kernels on"


@contextlib.contextmanager
def disabled():
    """Within this block the callers take their PyTorch paths (to compare the two).

    >>> with disabled():
    ...     enabled(torch.zeros(2))
    False
    """
    previous = _state.get("off", False)
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = previous


def enabled(*tensors: Tensor) -> bool:
    """True when the native kernels can take these tensors: all on the CPU, one float dtype."""
    if _state.get("off") or not tensors or any(t.device.type != "cpu" for t in tensors):
        return False
    dtype = tensors[0].dtype
    if str(dtype) not in _DTYPES or any(t.dtype != dtype for t in tensors):
        return False
    return library() is not None


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _fn(name: str, dtype: torch.dtype):
    return getattr(library(), f"{name}_{_DTYPES[str(dtype)]}")


_I64 = ctypes.c_int64


def _check(ok: bool, message: str) -> None:
    """The kernels trust their arguments (a wrong size reads out of bounds), so the wrappers check."""
    if not ok:
        raise ValueError(message)


def _same_kind(x: Tensor, *others: Tensor) -> None:
    _check(x.device.type == "cpu" and str(x.dtype) in _DTYPES, f"native kernels take float32/float64 CPU tensors, "
           f"got {x.dtype} on {x.device}")
    _check(all(t.device == x.device and t.dtype == x.dtype for t in others), "native kernels take tensors of one "
           "dtype and device")


def _output(out: Tensor, shape: tuple[int, ...], like: Tensor) -> None:
    _check(tuple(out.shape) == shape and out.is_contiguous(), f"out must be a contiguous tensor of shape "
           f"{list(shape)}, got {list(out.shape)}")
    _same_kind(like, out)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor, out: Tensor | None = None,
         accumulate: bool = False) -> Tensor:
    """``out[r] = sum_j values[j] * x[col[j]]`` over ``rowptr[r] <= j < rowptr[r+1]``
    (``out +=`` that with ``accumulate``). ``x`` is ``[cols, F]``; returns ``[rows, F]``."""
    _check(x.dim() == 2 and rowptr.dim() == 1 and rowptr.numel() >= 1, "spmm takes x [cols, F] and a 1-D rowptr")
    _same_kind(x, values)
    x = x.contiguous()
    rows, features = rowptr.numel() - 1, x.size(1)
    rowptr, col, values = rowptr.to(torch.int64).contiguous(), col.to(torch.int64).contiguous(), values.contiguous()
    _check(col.numel() == values.numel() == int(rowptr[-1]) and int(rowptr[0]) == 0
           and bool((rowptr[1:] >= rowptr[:-1]).all()), "spmm: rowptr must rise from 0 to the number of entries")
    if col.numel():
        low, high = torch.aminmax(col)
        _check(int(low) >= 0 and int(high) < x.size(0), f"spmm: a column index is outside x's {x.size(0)} rows")
    if out is None:
        out = x.new_empty(rows, features)
        accumulate = False
    _output(out, (rows, features), x)
    _fn("wr_spmm", x.dtype)(_I64(rows), _I64(features), _ptr(rowptr), _ptr(col), _ptr(values), _ptr(x), _ptr(out),
                            ctypes.c_int(int(accumulate)), ctypes.c_int(torch.get_num_threads()))
    return out


def sampled_dot(rows_a: Tensor, rows_b: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``out[j] = <a[rows_a[j]], b[rows_b[j]]>``: for the real edges ``(u, v)``, ``a`` the
    source states and ``b`` the target gradients, their weight gradient."""
    _check(a.dim() == 2 and b.dim() == 2 and a.size(1) == b.size(1), "sampled_dot takes a [n, F] and b [m, F]")
    _same_kind(a, b)
    _check(rows_a.shape == rows_b.shape and rows_a.dim() == 1, "sampled_dot takes two index lists of one length")
    a, b = a.contiguous(), b.contiguous()
    rows_a, rows_b = rows_a.to(torch.int64).contiguous(), rows_b.to(torch.int64).contiguous()
    for rows, t, name in ((rows_a, a, "a"), (rows_b, b, "b")):
        if rows.numel():
            low, high = torch.aminmax(rows)
            _check(int(low) >= 0 and int(high) < t.size(0), f"sampled_dot: an index is outside {name}'s rows")
    out = a.new_empty(rows_a.numel())
    _fn("wr_sampled_dot", a.dtype)(_I64(rows_a.numel()), _I64(a.size(1)), _ptr(rows_a), _ptr(rows_b), _ptr(a),
                                   _ptr(b), _ptr(out), ctypes.c_int(torch.get_num_threads()))
    return out


def _node_shapes(x: Tensor, gamma: Tensor, beta: Tensor, kernel: Tensor, height: int, width: int) -> tuple[int, int]:
    _check(x.dim() == 2 and height >= 1 and width >= 1 and x.size(1) % (height * width) == 0,
           f"node op: x must be [nodes, batch*{height}*{width}], got {list(x.shape)}")
    _same_kind(x, gamma, beta, kernel)
    nodes = x.size(0)
    _check(gamma.numel() == beta.numel() == nodes and tuple(kernel.shape) == (nodes, 9),
           f"node op: gamma and beta need {nodes} entries and kernel shape [{nodes}, 9]")
    return nodes, x.size(1) // (height * width)


def node_forward(x: Tensor, gamma: Tensor, beta: Tensor, kernel: Tensor, height: int, width: int,
                 eps: float = 1e-5, out: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Instance norm (affine per node) -> ReLU -> depthwise 3x3 (padding 1) of node-major
    ``x`` ``[nodes, B*height*width]``; returns ``(y, mean, rstd)``, the last two ``[nodes, B]``.
    ``out``, a contiguous tensor shaped like ``x``, receives ``y``."""
    x, gamma, beta, kernel = x.contiguous(), gamma.contiguous(), beta.contiguous(), kernel.contiguous()
    nodes, batch = _node_shapes(x, gamma, beta, kernel, height, width)
    y = torch.empty_like(x) if out is None else out
    _output(y, tuple(x.shape), x)
    mean, rstd = x.new_empty(nodes, batch), x.new_empty(nodes, batch)
    _fn("wr_node_forward", x.dtype)(_I64(nodes), _I64(batch), _I64(height), _I64(width), _ptr(x), _ptr(gamma),
                                    _ptr(beta), _ptr(kernel), ctypes.c_double(eps), _ptr(y), _ptr(mean),
                                    _ptr(rstd), ctypes.c_int(torch.get_num_threads()))
    return y, mean, rstd


def node_backward(x: Tensor, gamma: Tensor, beta: Tensor, kernel: Tensor, mean: Tensor, rstd: Tensor,
                  grad_y: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`node_forward` to ``(x, gamma, beta, kernel)``."""
    x, gamma, beta, kernel, grad_y = (t.contiguous() for t in (x, gamma, beta, kernel, grad_y))
    mean, rstd = mean.contiguous(), rstd.contiguous()
    nodes, batch = _node_shapes(x, gamma, beta, kernel, height, width)
    _same_kind(x, mean, rstd, grad_y)
    _check(grad_y.shape == x.shape and mean.shape == rstd.shape == (nodes, batch),
           "node_backward: grad_y must be shaped like x, mean and rstd [nodes, batch]")
    gx = torch.empty_like(x)
    ggamma, gbeta, gkernel = torch.empty_like(gamma), torch.empty_like(beta), torch.empty_like(kernel)
    _fn("wr_node_backward", x.dtype)(_I64(nodes), _I64(batch), _I64(height), _I64(width), _ptr(x), _ptr(gamma),
                                     _ptr(beta), _ptr(kernel), _ptr(mean), _ptr(rstd), _ptr(grad_y), _ptr(gx),
                                     _ptr(ggamma), _ptr(gbeta), _ptr(gkernel), ctypes.c_int(torch.get_num_threads()))
    return gx, ggamma, gbeta, gkernel


def topk_mask(weight: Tensor, k: int, floor: float = 0.0) -> tuple[Tensor, float]:
    """:func:`wiring.ops.topk_mask` by selection in one native call: ``(mask, threshold)``,
    the mask shaped like ``weight`` with exactly ``k`` (``1 <= k <= numel``) entries True and
    the k-th largest magnitude. With ``floor > 0`` the k-th largest is first searched among
    the magnitudes ``>= floor``, and among all when fewer than ``k`` are."""
    w = weight.detach().contiguous()
    _same_kind(w)
    _check(1 <= k <= w.numel(), f"topk_mask: k must be in 1..{w.numel()}, got {k}")
    mask = torch.empty(w.shape, dtype=torch.bool)
    fn = _fn("wr_topk_mask", w.dtype)
    fn.restype = ctypes.c_float if w.dtype == torch.float32 else ctypes.c_double
    threshold = fn(_I64(w.numel()), _I64(k), _ptr(w), ctypes.c_double(floor), _ptr(mask),
                   ctypes.c_int(torch.get_num_threads()))
    return mask, float(threshold)
