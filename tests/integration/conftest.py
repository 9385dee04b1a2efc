"""End-to-end fixtures: C programs built with ``cc`` at test time, and a runner for kmmio.

Every test in this folder traces real processes: each is marked ``ptrace`` (so that
``pytest -m "not ptrace"`` runs the pure tests alone); a test that traces nothing belongs
elsewhere.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmmio.trace import Record, read_records

HERE = Path(__file__).parent
PROGRAMS = HERE / "programs"
FLAGS = {
    "forms": ["-O1", "-mavx2"],
    "threads": ["-O1", "-pthread"],
    "kept": ["-O1", "-msse4.1"],
    "churn": ["-O1", "-pthread"],
    "timeouts": ["-O1", "-pthread"],
    "shlocks": ["-O1", "-pthread"],
    "lendblock": ["-O1", "-pthread"],
    "madvise": ["-O1", "-pthread"],
    "alu": ["-O1"],
    "vectors": ["-O1", "-mavx2"],
    "avx512": ["-O1", "-mavx512f", "-mavx512bw", "-mavx512vl"],
}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder ``ptrace`` (a ``pytestmark`` here would
    not reach the test modules)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.ptrace)


@pytest.fixture(scope="session", autouse=True)
def sigint_not_ignored() -> Iterator[None]:
    """Ctrl-C's tests need the programs they start to die of SIGINT as from a terminal; a
    background job of a non-interactive shell (``cmd &``, ``nohup``) starts with SIGINT
    ignored, and an ignored signal stays ignored across fork and exec.  Handled here, it is
    the default again in every program started (exec resets handled signals)."""
    old = signal.getsignal(signal.SIGINT)
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


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


def backend_args(mode: str) -> list[str]:
    """``kmmio trace``'s options for a ``mode`` of the fixture below: ``"agent"`` is the
    in-process agent backend (in auto mode), anything else a ``--mode`` of the ptrace one."""
    if mode == "agent":
        return ["--backend", "agent", "--mode", "auto"]
    return ["--backend", "ptrace", "--mode", mode]


def trace(program: list[str], pattern: str, tmp: Path, mode: str = "auto", timeout: float = 600) -> Run:
    log = tmp / "trace.log"
    return kmmio(["trace", *backend_args(mode), "-o", str(log), "-m", pattern, "--", *program], log, timeout)


@pytest.fixture(params=["step", "auto", "agent"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every way of running a traced access: ptrace single-stepping it, ptrace emulating
    it where possible, the in-process agent."""
    return str(request.param)


def wait_for_lines(log: Path, n: int, needle: str = "\n", timeout: float = 60) -> None:
    """Wait until the log being written holds more than ``n`` of ``needle`` (lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(needle) > n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} of {needle!r} in {log} after {timeout} s")


#: Processes a test started in the background (kmmio, or a program), killed at its end.
background: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_background() -> Iterator[None]:
    """Whatever a test leaves running (after a failure) is killed."""
    yield
    while background:
        proc = background.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def kmmio_async(args: list[str], **kw: object) -> subprocess.Popen[str]:
    """``kmmio ARGS`` in the background, its output piped (``kw`` for Popen)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-m", "kmmio", *args], text=True, **kw)  # type: ignore[call-overload]
    background.append(proc)
    return proc


class ReadyProgram:
    """A program started in the background that prints "ready PID" first (attachee.c,
    stoppable.c...): its pid, and the lines of its maps naming ``dev``."""

    def __init__(self, argv: list[str], dev: Path) -> None:
        self.dev = dev
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        background.append(self.proc)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        assert first[0] == "ready", first
        self.pid = int(first[1])

    def maps(self) -> list[str]:
        with open(f"/proc/{self.pid}/maps") as f:
            return [line for line in f if self.dev.name in line]

    def tracer_pid(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            return int(next(line for line in f if line.startswith("TracerPid:")).split()[1])

    def finish(self) -> str:
        out, _ = self.proc.communicate(timeout=120)
        return str(out)


#: ``kmmio`` as user nobody, with no groups and one capability: CAP_DAC_READ_SEARCH, to
#: read the checkout, the venv and the Python install wherever they are (a clone in a
#: mode-700 ``mktemp -d``, a pyenv under ``/root``).  Reading files plays no part in
#: whether the kernel lets a process ptrace another: that is the uid and CAP_SYS_PTRACE.
NOBODY = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=-all,+dac_read_search",
]
