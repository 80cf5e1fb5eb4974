"""The product backends the equivalence tests run over (fixture ``product_backend`` in conftest.py).

``auto`` is the engine as shipped (the dense product above ``DENSE_FORWARD_FILL``); each
named backend runs with the dense switch off, so that its own kernel computes every
real-edge product, ``k = C`` included. A backend that is not installed is skipped.
"""
from __future__ import annotations

import pytest

from wiring import backends

PARAMS = ("auto", *backends.NAMES)


def skip_unless_on(device_type: str, name: str) -> None:
    """Skip the calling test when backend ``name`` cannot run on ``device_type``."""
    if name == "auto":
        return
    devices = backends.module(name).DEVICES
    if devices is not None and device_type not in devices:
        pytest.skip(f"backend {name} does not run on {device_type}")
