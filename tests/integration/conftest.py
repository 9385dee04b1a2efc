"""End-to-end fixtures: C programs built with ``cc`` at test time, and a runner for kmmio."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmmio.trace import Record, read_records

PROGRAMS = Path(__file__).parent / "programs"
FLAGS = {
    "forms": ["-O1", "-mavx2"],
    "threads": ["-O1", "-pthread"],
    "churn": ["-O1", "-pthread"],
    "shlocks": ["-O1", "-pthread"],
    "lendblock": ["-O1", "-pthread"],
    "madvise": ["-O1", "-pthread"],
    "alu": ["-O1"],
    "vectors": ["-O1", "-mavx2"],
    "avx512": ["-O1", "-mavx512f", "-mavx512bw", "-mavx512vl"],
}


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("bin")
    cc = shutil.which("cc")
    assert cc is not None, "the end-to-end tests need a C compiler (cc)"
    built: dict[str, Path] = {}

    def _build(name: str) -> Path:
        if name not in built:
            exe = out / name
            subprocess.run(
                [cc, *FLAGS.get(name, ["-O1"]), "-o", str(exe), str(PROGRAMS / f"{name}.c")],
                check=True,
            )
            built[name] = exe
        return built[name]

    return _build


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str
    records: list[Record]
    log: str


def kmmio(args: list[str], log: Path, timeout: float = 600, **kw: object) -> Run:
    """Run ``kmmio`` as a user would and read back its log."""
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )  # type: ignore[call-overload]
    text = log.read_text() if log.exists() else ""
    return Run(proc.returncode, proc.stdout, proc.stderr, list(read_records(text.splitlines())), text)


def trace(program: list[str], pattern: str, tmp: Path, mode: str = "auto", timeout: float = 600) -> Run:
    log = tmp / "trace.log"
    return kmmio(["trace", "--mode", mode, "-o", str(log), "-m", pattern, "--", *program], log, timeout)


@pytest.fixture(params=["step", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both ways of running a traced access: single-stepped, and emulated where possible."""
    return str(request.param)


def wait_for_lines(log: Path, n: int, needle: str = "\n", timeout: float = 60) -> None:
    """Wait until the log being written holds more than ``n`` of ``needle`` (lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(needle) > n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} of {needle!r} in {log} after {timeout} s")
