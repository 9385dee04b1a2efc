"""Simulation tests: the CRC example's drivers (src/kmmio/demo/crc) and the test programs
in programs/ (each described in its header), built with ``cc`` at test time.  The modules
whose tests run programs under the tracer mark themselves ``ptrace``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CRC = Path(__file__).parents[2] / "src" / "kmmio" / "demo" / "crc"
SOURCES = {
    "crc_driver": CRC / "driver.c",
    "uio_wait": HERE / "programs" / "uio_wait.c",
    "two_devices": HERE / "programs" / "two_devices.c",
    "misuse": HERE / "programs" / "misuse.c",
    "uio_more": HERE / "programs" / "uio_more.c",
}


@pytest.fixture(scope="session")
def program(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    out = tmp_path_factory.mktemp("simbin")
    cc = shutil.which("cc")
    assert cc is not None, "the simulation tests need a C compiler (cc)"
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            exe = out / name
            subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(SOURCES[name])], check=True)
            built[name] = str(exe)
        return built[name]

    return build
