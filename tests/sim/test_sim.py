"""``kmmio.sim.run`` (through the ``kmmio_sim`` pytest fixture, as a driver's own tests
would use it): the CRC example's drivers against its model, exact calls; UIO interrupts
through read, poll and epoll; two threads on two devices; what no model can answer.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from kmmio.demo.crc import ID_VALUE
from kmmio.demo.crc.model import CrcEngine
from kmmio.sim.device import ModelFailure, NotServable
from kmmio.trace import Access, Map, MapInfo, PciDev, read_records

pytestmark = pytest.mark.ptrace

TEXT = b"kmmio sim answers every access"
UIO = "/dev/uio0"
BAR = "/sys/bus/pci/devices/0000:3a:00.0/resource0"


def words(text: bytes) -> list[int]:
    padded = text.ljust((len(text) + 3) // 4 * 4, b"\0")
    return [int.from_bytes(padded[i : i + 4], "little") for i in range(0, len(padded), 4)]


def expected_calls(text: bytes, busy_reads: int = 3) -> list[tuple[str, str, int]]:
    """What the CRC model must see from either driver, polling, in order."""
    crc = zlib.crc32(text.ljust((len(text) + 3) // 4 * 4, b"\0"))
    return [
        ("R", "ID", ID_VALUE),
        ("W", "CTRL", 2),
        *(("W", "DATA", w) for w in words(text)),
        ("W", "CTRL", 1),
        *([("R", "STATUS", 1)] * busy_reads),
        ("R", "STATUS", 2),
        ("R", "RESULT", crc),
        ("R", "IRQ_STATUS", 0),
    ]


def test_the_c_driver_against_the_model(kmmio_sim: Callable[..., Any], program: Callable[[str], str]) -> None:
    engine = CrcEngine()
    result = kmmio_sim([program("crc_driver"), UIO], {UIO: engine})
    assert result.status == 0
    assert engine.calls == expected_calls(TEXT)
    # Every call the model saw is an access of the log, in order, with its exact width.
    recs = list(read_records(result.log.splitlines()))
    accesses = [r for r in recs if isinstance(r, Access)]
    assert [(a.kind.value, a.phys, a.width, a.value) for a in accesses] == [
        (a.kind.value, a.phys, a.width, a.value) for a in result.accesses
    ]
    assert len(accesses) == len(engine.calls)
    (info,) = [r for r in recs if isinstance(r, MapInfo)]
    assert (info.path, info.kind, info.device, info.region) == (UIO, "uio", "uio0", "map 0")


def test_the_python_driver_against_the_model(kmmio_sim: Callable[..., Any]) -> None:
    engine = CrcEngine()
    result = kmmio_sim([sys.executable, "-m", "kmmio.demo.crc.driver", UIO], {UIO: engine})
    assert result.status == 0
    assert engine.calls == expected_calls(TEXT)


def test_a_pci_bar_at_the_models_physical_address(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str]
) -> None:
    engine = CrcEngine()
    engine.phys = 0xF7C00000  # type: ignore[attr-defined]
    engine.vendor_device = 0x8086100E  # type: ignore[attr-defined]
    result = kmmio_sim([program("crc_driver"), BAR, "abc"], {BAR: engine})
    assert result.status == 0
    recs = list(read_records(result.log.splitlines()))
    (pci,) = [r for r in recs if isinstance(r, PciDev)]
    assert (pci.devfn, pci.vendor_device, pci.starts[0], pci.sizes[0]) == (
        0x3A00,
        0x8086100E,
        0xF7C00000,
        0x1000,
    )
    (m,) = [r for r in recs if isinstance(r, Map)]
    assert m.phys == 0xF7C00000
    first = next(r for r in recs if isinstance(r, Access))
    assert (first.phys, first.value) == (0xF7C00000, ID_VALUE)


def test_uio_interrupts_through_read_poll_and_epoll(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str]
) -> None:
    engine = CrcEngine(busy_us=1000)
    result = kmmio_sim([program("uio_wait"), UIO], {UIO: engine}, log=None)
    assert result.status == 0
    # uio_wait's own lines (it prints to its standard output, which is ours).


def test_uio_interrupt_output(program: Callable[[str], str], tmp_path: Any) -> None:
    """The program's view of the interrupts, line by line (a subprocess, to see its output)."""
    import subprocess

    model = tmp_path / "m.py"
    model.write_text(
        "from kmmio.demo.crc.model import CrcEngine\ndef make():\n    return CrcEngine(busy_us=1000)\n"
    )
    cmd = [sys.executable, "-m", "kmmio", "sim", "-q", "--device", f"{UIO}={model}:make", "--"]
    run = subprocess.run([*cmd, program("uio_wait"), UIO], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "idle poll 0",
        "poll 1 revents 0x1 fd 1",
        "read 1",
        "epoll 1 data 0x1234",
        "read 2",
        "nonblock 11",
    ]


def test_the_python_driver_waits_for_the_interrupt(kmmio_sim: Callable[..., Any]) -> None:
    engine = CrcEngine()
    result = kmmio_sim([sys.executable, "-m", "kmmio.demo.crc.driver", UIO, "--irq"], {UIO: engine})
    assert result.status == 0
    # Started with IRQ_EN: no busy polling, the interrupt status read (and cleared) once.
    assert [c for c in engine.calls if c[1] in ("STATUS", "IRQ_STATUS")] == [
        ("R", "STATUS", 2),
        ("R", "IRQ_STATUS", 1),
    ]


def test_two_threads_on_two_devices(kmmio_sim: Callable[..., Any], program: Callable[[str], str]) -> None:
    a, b = CrcEngine(), CrcEngine()
    result = kmmio_sim([program("two_devices"), UIO, BAR], {UIO: a, BAR: b})
    assert result.status == 0
    # two_devices reads neither ID nor IRQ_STATUS.
    assert a.calls == expected_calls(b"first device")[1:-1]
    assert b.calls == expected_calls(b"second device, other words")[1:-1]
    tids = {x.path: {y.tid for y in result.accesses if y.path == x.path} for x in result.accesses}
    assert len(tids) == 2 and all(len(t) == 1 for t in tids.values())
    assert tids[UIO] != tids[BAR]


@pytest.mark.parametrize(
    ("how", "error", "words_"),
    [
        ("atomic", NotServable, ["'lock add dword ptr", "cannot be performed against the model of " + UIO]),
        ("syscall", NotServable, [f"syscall write hands memory of the simulated {UIO} to the kernel"]),
        (
            "width",
            ModelFailure,
            [f"the model of {UIO} failed on R 2 at offset 0x0 at pc 0x", "ValueError: no 2"],
        ),
    ],
)
def test_what_no_model_can_answer_stops_the_run(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], how: str, error: type, words_: list[str]
) -> None:
    with pytest.raises(error) as raised:
        kmmio_sim([program("misuse"), UIO, how], {UIO: CrcEngine()})
    assert all(w in str(raised.value) for w in words_), str(raised.value)
    assert "\n" not in str(raised.value)


def test_dev_mem_at_the_models_physical_base(kmmio_sim: Callable[..., Any]) -> None:
    engine = CrcEngine()
    engine.phys = 0xFE000000  # type: ignore[attr-defined]
    code = (
        "import mmap, os\n"
        "fd = os.open('/dev/mem', os.O_RDWR)\n"
        "m = memoryview(mmap.mmap(fd, 4096, offset=0xFE000000)).cast('I')\n"
        "print(hex(m[0]))\n"
    )
    result = kmmio_sim([sys.executable, "-c", code], {"/dev/mem": engine})
    assert result.status == 0
    assert engine.calls == [("R", "ID", ID_VALUE)]
    (a,) = result.accesses
    assert (a.phys, a.value) == (0xFE000000, ID_VALUE)


class Memory:
    """A model that is plain memory, keeping every call: (kind, offset, width); an
    interrupt when offset 0 is written."""

    size = 0x1000

    def __init__(self) -> None:
        self.bytes = bytearray(self.size)
        self.calls: list[tuple[str, int, int]] = []

    def read(self, offset: int, width: int) -> int:
        self.calls.append(("R", offset, width))
        return int.from_bytes(self.bytes[offset : offset + width], "little")

    def write(self, offset: int, width: int, value: int) -> None:
        self.calls.append(("W", offset, width))
        self.bytes[offset : offset + width] = value.to_bytes(width, "little")
        if offset == 0:
            self.irq()  # type: ignore[attr-defined]


def _stdout(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return capfd.readouterr().out.splitlines()


def test_one_interrupt_wakes_a_reader_on_each_fd(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert kmmio_sim([program("uio_more"), UIO, "twowait"], {UIO: Memory()}).status == 0
    assert sorted(_stdout(capfd)) == ["fd 0 count 1", "fd 1 count 1"]


def test_epoll_sees_an_interrupt_pending_before_it_was_asked(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert kmmio_sim([program("uio_more"), UIO, "epollpend"], {UIO: Memory()}).status == 0
    assert _stdout(capfd) == ["epoll 1"]


def test_select_waits_for_the_interrupt(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert kmmio_sim([program("uio_more"), UIO, "select"], {UIO: Memory()}).status == 0
    assert _stdout(capfd) == ["idle select 0 set 0", "select 1 set 1"]


def test_what_a_fd_has_seen_is_shared_by_its_dup_and_a_forked_child(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert kmmio_sim([program("uio_more"), UIO, "dupfork"], {UIO: Memory()}).status == 0
    assert _stdout(capfd) == ["dup -1 11", "child -1 11", "dup 4 count 2"]


def test_a_poll_stopped_and_continued_still_waits(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert kmmio_sim([program("uio_more"), UIO, "pollstop"], {UIO: Memory()}).status == 0
    assert _stdout(capfd) == ["poll 0 revents 0"]


def test_vector_and_string_copies_reach_the_model_access_by_access(
    kmmio_sim: Callable[..., Any], program: Callable[[str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    model = Memory()
    result = kmmio_sim([program("uio_more"), UIO, "vectors"], {UIO: model})
    assert result.status == 0
    assert _stdout(capfd) == ["same"]
    # Each access of the log is one call of the model, same kind, place and width.
    assert model.calls == [(a.kind.value, a.phys, a.width) for a in result.accesses]
    copies = [c for c in model.calls if c[1] < 0x400]
    for kind in "RW":  # the 300 bytes at 256 each touched (glibc's tails may overlap)
        touched = {b for k, o, w in copies if k == kind for b in range(o, o + w)}
        assert touched == set(range(256, 556)), kind
    assert {w for _, _, w in copies} - {1, 2, 4, 8, 16, 32, 64} == set()
    assert max(w for _, _, w in copies) >= 16  # glibc copies with vector registers
    # rep movsb: one call per byte, in order; then the program's byte reads.
    movsb = [("W", 0x400 + i, 1) for i in range(20)]
    assert [c for c in model.calls if c[1] >= 0x400] == movsb + [("R", 0x400 + i, 1) for i in range(20)]
