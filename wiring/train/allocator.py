"""Keep freed feature maps in the process heap instead of handing them back to the OS.

A training step allocates and frees the same large tensors (tens of MB of node
features and their gradients) every step. glibc's malloc serves blocks above its
``mmap`` threshold with fresh pages from the kernel, so every step pays a page fault
per 4 KiB touched (measured here: 10-15 ms to zero one 26 MB gradient that a warm
block fills in ~2 ms, and 5-10% of a tiny-classifier step). :func:`tune_malloc` raises
the threshold to 256 MiB (32 MiB where an older glibc refuses more) and stops the heap
from being trimmed, so those blocks are reused warm. The price: the process keeps its
peak heap instead of returning it to the OS.

It changes the whole process, so only entry points call it (``wiring.train``,
``wiring.bench``, ``wiring.study``), never the library. On anything but glibc (macOS,
Windows, musl) it does nothing and returns False.

>>> isinstance(tune_malloc(), bool)
True
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLDS = (256 << 20, 32 << 20)   # the first one glibc accepts (older ones cap at 32 MiB)
TRIM_THRESHOLD = 1 << 30


def tune_malloc() -> bool:
    """Raise glibc's mmap threshold and trim threshold; True if both took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_ok = any(mallopt(_M_MMAP_THRESHOLD, value) for value in MMAP_THRESHOLDS)
    return mmap_ok and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
