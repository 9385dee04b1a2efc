"""The ``kmmio_sim`` pytest fixture (registered through the ``pytest11`` entry point, so
installing kmmio is enough): a driver's test reads like a unit test::

    def test_crc(kmmio_sim):
        engine = CrcEngine()
        result = kmmio_sim(["./driver", "/dev/uio0"], {"/dev/uio0": engine})
        assert result.status == 0
        assert engine.calls[0] == ("R", "ID", 0x43524331)

It calls :func:`kmmio.sim.run` (same arguments, same :class:`~kmmio.sim.runner.Result`).  A
model that raises on an illegal access fails the test with that error (the program is
killed first); so does an access no model can answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def kmmio_sim() -> Callable[..., Any]:
    """``kmmio_sim(argv, devices, **kwargs)``: :func:`kmmio.sim.runner.run`."""
    from kmmio.sim.runner import run

    return run
