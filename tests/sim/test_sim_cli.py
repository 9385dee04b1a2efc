"""``kmmio sim``, ``kmmio replay``, ``kmmio trace --hook`` and ``kmmio demo --sim`` as a user
runs them: the CRC example recorded under ``sim``, replayed with no model (a driver that
polls twice as often passes; one that writes one wrong word fails at exactly that record),
model failures and bad input as one line with their exit statuses, fault injection on a
real trace."""

from __future__ import annotations

import mmap
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kmmio.trace import Access, Kind, read_records

pytestmark = pytest.mark.ptrace

UIO = "/dev/uio0"
MODEL = "kmmio.demo.crc.model:CrcEngine"


def kmmio(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmmio", *args], capture_output=True, text=True, timeout=timeout
    )


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmmio: ") and "Traceback" not in err, err
    return lines[0]


def accesses(path: Path) -> list[Access]:
    with open(path) as f:
        return [r for r in read_records(f) if isinstance(r, Access)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, program: Callable[[str], str]) -> Path:
    log = tmp_path_factory.mktemp("rec") / "crc.log"
    run = kmmio("sim", "-o", str(log), "--device", f"{UIO}={MODEL}", "--", program("crc_driver"), UIO)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "crc: 0x687f4193 after 4 polls, irq status 0 (ok)\n"
    assert run.stderr == "kmmio: 17 accesses answered (7 reads, 10 writes); exit status 0\n"
    return log


def test_replay_of_the_sims_log_passes_with_no_model(recording: Path, program: Callable[[str], str]) -> None:
    run = kmmio("replay", str(recording), "-q", "--", program("crc_driver"), UIO)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == "crc: 0x687f4193 after 4 polls, irq status 0 (ok)\n"


def test_replay_of_the_python_driver_too(recording: Path) -> None:
    run = kmmio("replay", str(recording), "-q", "--", sys.executable, "-m", "kmmio.demo.crc.driver", UIO)
    assert (run.returncode, run.stderr) == (0, "")


def test_a_driver_that_polls_twice_as_often_passes(recording: Path, program: Callable[[str], str]) -> None:
    run = kmmio("replay", str(recording), "-q", "--", program("crc_driver"), UIO, "--poll2")
    assert (run.returncode, run.stderr) == (0, "")
    assert "after 5 polls" in run.stdout and "(ok)" in run.stdout


def test_a_wrong_word_fails_at_exactly_its_record(recording: Path, program: Callable[[str], str]) -> None:
    recorded = accesses(recording)
    # The driver's third DATA word (offset 0xc) is wrong: the 5th access, after ID, CTRL
    # and two DATA words.
    assert [(a.kind, a.phys) for a in recorded[2:5]] == [(Kind.WRITE, 0xC)] * 3
    good = recorded[4]
    run = kmmio("replay", str(recording), "--", program("crc_driver"), UIO, "--wrong")
    assert run.returncode == 1
    line = one_line(run.stderr)
    want = (
        f"kmmio: replay: record 5 (line 8): expected W 4 0xc {good.value:#x}, got W 4 0xc {good.value ^ 1:#x}"
    )
    assert line.startswith(want + " at pc 0x"), line
    assert f"(recorded tid {good.pid})" in line
    assert run.stdout == ""  # stopped there: it never printed its result


def test_replay_paths_from_device_options(recording: Path, program: Callable[[str], str]) -> None:
    other = "/dev/uio7"
    run = kmmio("replay", str(recording), "-q", "--device", other, "--", program("crc_driver"), other)
    assert (run.returncode, run.stderr) == (0, "")
    run = kmmio("replay", str(recording), "--device", other, "--device", "/dev/uio8", "--", "true")
    assert run.returncode == 2 and "replay" in one_line(run.stderr)


def test_a_model_that_raises_is_one_line_and_exit_1(tmp_path: Path, program: Callable[[str], str]) -> None:
    model = tmp_path / "bad.py"
    model.write_text(
        "class Bad:\n    size = 4096\n"
        "    def read(self, offset, width):\n        raise RuntimeError('no such luck')\n"
        "    def write(self, offset, width, value):\n        pass\n"
    )
    run = kmmio("sim", "--device", f"{UIO}={model}:Bad", "--", program("crc_driver"), UIO)
    assert run.returncode == 1
    assert one_line(run.stderr).startswith(
        f"kmmio: the model of {UIO} failed on R 4 at offset 0x0 at pc 0x"
    ) and one_line(run.stderr).endswith(": RuntimeError: no such luck")
    verbose = kmmio("sim", "--verbose", "--device", f"{UIO}={model}:Bad", "--", program("crc_driver"), UIO)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "raise RuntimeError('no such luck')" in verbose.stderr
    no_pc = re.compile(r"at pc 0x[0-9a-f]+")
    assert no_pc.sub("", verbose.stderr.splitlines()[-1]) == no_pc.sub("", one_line(run.stderr))


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (f"{UIO}=nowhere.py:X", "model 'nowhere.py:X': no file nowhere.py"),
        (
            f"{UIO}=kmmio.demo.crc.model:Nope",
            "model 'kmmio.demo.crc.model:Nope': kmmio.demo.crc.model has no 'Nope'",
        ),
        (f"{UIO}=kmmio.demo.crc:ID", "model 'kmmio.demo.crc:ID': ID is neither a class nor a function"),
        (f"{UIO}=no.such.module:X", "model 'no.such.module:X': cannot import no.such.module"),
        ("dev/uio0=kmmio.demo.crc.model:CrcEngine", "PATH must be absolute"),
        (f"{UIO}", "expected PATH=MODEL"),
        (f"{UIO}=builtins:object", "needs 'size'"),
    ],
)
def test_bad_devices_are_one_line_and_exit_2(device: str, message: str) -> None:
    run = kmmio("sim", "--device", device, "--", "true")
    assert run.returncode == 2
    assert message in one_line(run.stderr)


def test_trace_hooks_replace_reads_and_drop_writes_on_a_real_mapping(tmp_path: Path) -> None:
    """Fault injection on a real trace: the third read of the status word reads 0xffffffff,
    writes to offset 0x10 never reach the mapped file."""
    shm = Path("/dev/shm") / f"kmmio-hook-{os.getpid()}"
    shm.write_bytes(b"\x01\0\0\0" * 1024)
    hook = tmp_path / "hook.py"
    hook.write_text(
        "seen = 0\n"
        "def on_read(a):\n"
        "    global seen\n"
        "    if a.offset == 0:\n"
        "        seen += 1\n"
        "        return 0xFFFFFFFF if seen == 3 else None\n"
        "def on_write(a):\n"
        "    return a.offset != 0x10\n"
    )
    code = (
        "import mmap, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "m = memoryview(mmap.mmap(fd, 4096)).cast('I')\n"
        "print([hex(m[0]) for _ in range(4)])\n"
        "m[4] = 0x1234\n"
        "m[5] = 0x5678\n"
    )
    log = tmp_path / "t.log"
    try:
        run = kmmio("trace", "-q", "-o", str(log), "--hook", str(hook), "-m", shm.name, "--",
                    sys.executable, "-c", code, str(shm))  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout == "['0x1', '0x1', '0xffffffff', '0x1']\n"
        with open(shm, "rb") as f:
            mm = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)
            assert (int.from_bytes(mm[0x10:0x14], "little"), int.from_bytes(mm[0x14:0x18], "little")) == (
                1,
                0x5678,
            )
            mm.close()
    finally:
        shm.unlink()
    got = [(a.kind.value, a.phys, a.value) for a in accesses(log)]
    assert got == [
        ("R", 0, 1),
        ("R", 0, 1),
        ("R", 0, 0xFFFFFFFF),
        ("R", 0, 1),
        ("W", 0x10, 0x1234),
        ("W", 0x14, 0x5678),
    ]


def test_a_hook_file_without_hooks_is_refused(tmp_path: Path) -> None:
    hook = tmp_path / "none.py"
    hook.write_text("x = 1\n")
    run = kmmio("trace", "--hook", str(hook), "-m", "x", "--", "true")
    assert run.returncode == 2
    assert one_line(run.stderr) == f"kmmio: --hook {hook}: defines neither on_read nor on_write"


def test_the_demo_shows_sim() -> None:
    run = kmmio("demo", "--sim")
    assert run.returncode == 0, run.stderr
    assert "every access answered by the model" in run.stdout
    assert "driver: checksum 0x99c (expected 0x99c) after 1 polls" in run.stdout
    assert run.stdout.rstrip().endswith("17 reads, 13 writes; driver exit status 0")


def test_a_failing_model_stops_the_program_where_it_is(tmp_path: Path, program: Callable[[str], str]) -> None:
    """Killed while still traced: the program never runs the access again untraced, and never
    prints what it would print after it (misuse's "done")."""
    for _ in range(5):
        run = kmmio("sim", "--device", f"{UIO}={MODEL}", "--", program("misuse"), UIO, "width")
        assert (run.returncode, run.stdout) == (1, "")
        assert "failed on R 2 at offset 0x0" in one_line(run.stderr)


TICK_FAILS = "    def tick(self, now):\n        if self.on:\n            raise RuntimeError('late')\n"
CONTROL_FAILS = "    def irq_control(self, v):\n        raise ValueError('no irq here')\n"
POKE_THEN_SLEEP = (
    "import mmap, os, time; m = memoryview(mmap.mmap(os.open('/dev/uio0', os.O_RDWR), 4096)).cast('I'); "
    "m[1] = 1; time.sleep(2)"
)
ENABLE = "import os, struct; os.write(os.open('/dev/uio0', os.O_RDWR), struct.pack('<i', 1)); print('after')"


@pytest.mark.parametrize(
    ("cls", "source", "code", "said"),
    [
        ("TickFails", TICK_FAILS, POKE_THEN_SLEEP, "failed in tick(): RuntimeError: late"),
        ("ControlFails", CONTROL_FAILS, ENABLE, "failed in irq_control(): ValueError: no irq here"),
    ],
)
def test_a_model_failing_outside_an_access_is_one_line_and_exit_1(
    tmp_path: Path, cls: str, source: str, code: str, said: str
) -> None:
    model = tmp_path / "m.py"
    model.write_text(
        f"class {cls}:\n    size = 4096\n    on = False\n"
        "    def read(self, offset, width):\n        return 0\n"
        "    def write(self, offset, width, value):\n        self.on = True\n" + source
    )
    run = kmmio("sim", "--device", f"{UIO}={model}:{cls}", "--", sys.executable, "-c", code)
    assert (run.returncode, run.stdout) == (1, "")
    assert one_line(run.stderr) == f"kmmio: the model of {UIO} {said}"


def test_timeout_ends_the_program_with_sigterm() -> None:
    run = kmmio("sim", "--timeout", "0.5", "--device", f"{UIO}={MODEL}", "--", "sleep", "30")
    assert run.returncode == 143
    assert run.stderr == "kmmio: 0 accesses answered (0 reads, 0 writes); exit status 143\n"
