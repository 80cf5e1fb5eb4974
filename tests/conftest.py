"""Shared fixtures."""
from __future__ import annotations

import pytest
import torch

from backend_params import PARAMS
from wiring import backends, ops


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors on a 2-core machine: one torch thread is several times faster than two
    (no OpenMP hand-offs), and much faster when another process is busy. Opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=PARAMS)
def product_backend(request, monkeypatch):
    """Each real-edge product backend in turn (see ``backend_params``); yields its name."""
    name = request.param
    if name != "auto":
        why = backends.missing(name)
        if why is not None:
            pytest.skip(f"backend {name}: {why}")
        monkeypatch.setattr(ops, "DENSE_FORWARD_FILL", float("inf"))    # the backend computes every product
    with backends.using(name):
        yield name
