"""The ``machine`` fixture: a fake machine in ``tmp_path`` (devices_fake.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from devices_fake import Machine, build


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return build(tmp_path)
