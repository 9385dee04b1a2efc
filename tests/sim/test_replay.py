"""kmmio.sim.replay: a recorded log as the device (reads served, writes checked, polling
tolerance, threads matched per recorded thread, devices by path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmmio.errors import ServedAccessError, TraceFormatError, UsageError
from kmmio.sim.replay import Divergence, Replay
from kmmio.trace import (
    Access,
    Kind,
    Map,
    MapInfo,
    PciDev,
    Record,
    Unmap,
    Version,
    format_record,
    read_records,
)

UIO = "/dev/uio0"
BASE = 0xF7C00000
PC = 0x401234
TID = 5000  # the program's thread; the recording's is 100
# The registers of the tests' device.
STATUS, CTRL, DATA, RESULT, IRQ = 0x0, 0x4, 0x10, 0x14, 0x18


@dataclass
class Log:
    """A log built record by record; record k of ``records`` is line k + 1."""

    records: list[Record] = field(default_factory=lambda: [Version()])
    count: int = 0  # R/W records so far

    def map(
        self,
        map_id: int = 1,
        phys: int = BASE,
        length: int = 0x1000,
        path: str | None = UIO,
        kind: str = "uio",
        device: str = "uio0",
        region: str = "map 0",
    ) -> None:
        ts = len(self.records)
        self.records.append(Map(ts, map_id, phys, 0x7F0000000000 + map_id * 0x10000, length, 0x401000, 100))
        if path is not None:
            self.records.append(MapInfo(ts, map_id, path, kind, device, region))

    def acc(self, kind: Kind, off: int, value: int, width: int = 4, pid: int = 100, map_id: int = 1,
            base: int = BASE) -> int:  # fmt: skip
        """Append an access; its record number."""
        self.records.append(Access(kind, width, len(self.records), map_id, base + off, value, 0x400000, pid))
        self.count += 1
        return self.count

    def r(self, off: int, value: int, **kw: int) -> int:
        return self.acc(Kind.READ, off, value, **kw)

    def w(self, off: int, value: int, **kw: int) -> int:
        return self.acc(Kind.WRITE, off, value, **kw)

    def lines(self) -> list[str]:
        return [format_record(r) + "\n" for r in self.records]

    def line_of(self, record_no: int) -> int:
        accesses = [i for i, r in enumerate(self.records, 1) if isinstance(r, Access)]
        return accesses[record_no - 1]


def rd(rp: Replay, off: int, width: int = 4, tid: int = TID, base: int = BASE) -> int | None:
    return rp.access(Kind.READ, base + off, width, None, PC, tid)


def wr(rp: Replay, off: int, value: int, width: int = 4, tid: int = TID, base: int = BASE) -> int | None:
    return rp.access(Kind.WRITE, base + off, width, value, PC, tid)


def crc_log() -> Log:
    """The issue's CRC engine: data in, START, poll BUSY (1, 1, 1, 0), RESULT, IRQ cleared on read."""
    log = Log()
    log.map()
    log.w(DATA, 0xDEADBEEF)
    log.w(DATA, 0x12345678)
    log.w(CTRL, 0x1)
    for busy in (1, 1, 1, 0):
        log.r(STATUS, busy)
    log.r(RESULT, 0xCAFEF00D)
    log.r(IRQ, 0x4)
    log.r(IRQ, 0x0)
    log.w(CTRL, 0x0)
    return log


def crc_driver(rp: Replay, polls: int | None = None, data2: int = 0x12345678) -> list[int | None]:
    """Run the driver; ``polls``: read STATUS that many times whatever it says (else until 0)."""
    got: list[int | None] = [wr(rp, DATA, 0xDEADBEEF), wr(rp, DATA, data2), wr(rp, CTRL, 1)]
    if polls is None:
        while (v := rd(rp, STATUS)) != 0:
            got.append(v)
        got.append(v)
    else:
        got += [rd(rp, STATUS) for _ in range(polls)]
    got += [rd(rp, RESULT), rd(rp, IRQ), rd(rp, IRQ), wr(rp, CTRL, 0)]
    return got


# -- exact replay, reads served ---------------------------------------------------------------


def test_exact_replay_passes_and_serves_the_recorded_values() -> None:
    rp = Replay(crc_log().lines())
    assert crc_driver(rp) == [None, None, None, 1, 1, 1, 0, 0xCAFEF00D, 0x4, 0x0, None]
    end = rp.finish()
    assert (end.complete, end.matched, end.skipped, end.repeated, end.remaining) == (True, 11, 0, 0, 0)
    assert end.note == ""
    assert rp.pairs == {TID: 100}


def test_clear_on_read_register_reads_its_value_then_zero() -> None:
    log = Log()
    log.map()
    log.r(IRQ, 0x5)
    log.r(IRQ, 0x0)
    log.w(CTRL, 0x2)
    log.r(IRQ, 0x1)
    log.r(IRQ, 0x0)
    rp = Replay(log.lines())
    assert [rd(rp, IRQ), rd(rp, IRQ), wr(rp, CTRL, 2), rd(rp, IRQ), rd(rp, IRQ)] == [5, 0, None, 1, 0]
    # Read once more (the program checks again): the last recorded value, 0.
    assert rd(rp, IRQ) == 0
    assert rp.finish().complete


def test_wide_values_are_served_and_checked_whole() -> None:
    big16 = 0x0123456789ABCDEF_FEDCBA9876543210
    big64 = int.from_bytes(bytes(range(64)), "little")
    log = Log()
    log.map()
    log.w(0x40, big16, width=16)
    n = log.w(0x80, big64, width=64)
    log.r(0xC0, big64 ^ (1 << 511), width=64)
    rp = Replay(log.lines())
    assert wr(rp, 0x40, big16, width=16) is None
    with pytest.raises(Divergence) as exc:
        wr(rp, 0x80, big64 ^ (1 << 300), width=64)
    assert exc.value.record_no == n
    assert str(exc.value) == (
        f"replay: record 2 (line 5): expected W 64 0xf7c00080 {big64:#x}, "
        f"got W 64 0xf7c00080 {big64 ^ (1 << 300):#x} at pc 0x401234 tid 5000 (recorded tid 100)"
    )
    rp = Replay(log.lines())
    wr(rp, 0x40, big16, width=16)
    wr(rp, 0x80, big64, width=64)
    assert rd(rp, 0xC0, width=64) == big64 ^ (1 << 511)


# -- divergences ----------------------------------------------------------------------------


def test_a_changed_written_value_fails_at_exactly_that_record() -> None:
    log = crc_log()
    rp = Replay(log.lines())
    with pytest.raises(Divergence) as exc:
        crc_driver(rp, data2=0x12345679)
    d = exc.value
    assert (d.record_no, d.line_no) == (2, 5) == (2, log.line_of(2))
    assert d.expected == log.records[4]
    assert d.got == (Kind.WRITE, BASE + DATA, 4, 0x12345679)
    assert (d.pc, d.tid) == (PC, TID)
    assert str(d) == (
        "replay: record 2 (line 5): expected W 4 0xf7c00010 0x12345678, "
        "got W 4 0xf7c00010 0x12345679 at pc 0x401234 tid 5000 (recorded tid 100)"
    )
    assert isinstance(d, ServedAccessError)
    d.pc = 0x401300  # as the fault path fills it in
    assert str(d).endswith("0x12345679 at pc 0x401300 tid 5000 (recorded tid 100)")
    # The replay is over: the next access raises the same divergence.
    with pytest.raises(Divergence) as again:
        wr(rp, CTRL, 1)
    assert again.value is d
    assert rp.finish().diverged is d
    assert not rp.finish().complete


def test_records_given_as_records_have_no_line_number() -> None:
    rp = Replay(list(read_records(crc_log().lines())))
    with pytest.raises(Divergence) as exc:
        crc_driver(rp, data2=0)
    assert (exc.value.record_no, exc.value.line_no) == (2, None)
    assert str(exc.value).startswith(
        "replay: record 2: expected W 4 0xf7c00010 0x12345678, got W 4 0xf7c00010 0x0"
    )


def test_an_extra_write_fails_there() -> None:
    rp = Replay(crc_log().lines())
    wr(rp, DATA, 0xDEADBEEF)
    with pytest.raises(Divergence) as exc:
        wr(rp, DATA, 0xDEADBEEF)  # once more
    assert str(exc.value) == (
        "replay: record 2 (line 5): expected W 4 0xf7c00010 0x12345678, "
        "got W 4 0xf7c00010 0xdeadbeef at pc 0x401234 tid 5000 (recorded tid 100)"
    )


def test_an_extra_write_after_a_poll_fails_there() -> None:
    rp = Replay(crc_log().lines())
    for v in (0xDEADBEEF, 0x12345678, 1):
        wr(rp, DATA if v != 1 else CTRL, v)
    assert [rd(rp, STATUS), rd(rp, STATUS)] == [1, 1]
    with pytest.raises(Divergence) as exc:
        wr(rp, CTRL, 1)  # the program restarts the engine: not recorded
    # The reads of STATUS left are skipped: what it fails to match is RESULT's read.
    assert (exc.value.record_no, exc.value.line_no) == (8, 11)
    assert str(exc.value) == (
        "replay: record 8 (line 11): expected R 4 0xf7c00014, "
        "got W 4 0xf7c00004 0x1 at pc 0x401234 tid 5000 (recorded tid 100)"
    )


def test_a_missing_write_fails_at_the_next_access() -> None:
    rp = Replay(crc_log().lines())
    wr(rp, DATA, 0xDEADBEEF)
    wr(rp, DATA, 0x12345678)
    with pytest.raises(Divergence) as exc:
        rd(rp, STATUS)  # CTRL.START never written
    assert exc.value.record_no == 3
    assert exc.value.got == (Kind.READ, BASE + STATUS, 4, None)
    assert str(exc.value) == (
        "replay: record 3 (line 6): expected W 4 0xf7c00004 0x1, "
        "got R 4 0xf7c00000 at pc 0x401234 tid 5000 (recorded tid 100)"
    )


@pytest.mark.parametrize(
    ("width", "off", "kind"),
    [(2, RESULT, Kind.READ), (4, STATUS, Kind.READ), (4, RESULT, Kind.WRITE)],
    ids=["width", "register", "kind"],
)
def test_another_width_register_or_kind_diverges(width: int, off: int, kind: Kind) -> None:
    log = Log()
    log.map()
    log.w(CTRL, 1)
    log.r(RESULT, 7)
    rp = Replay(log.lines())
    wr(rp, CTRL, 1)
    with pytest.raises(Divergence) as exc:
        rp.access(kind, BASE + off, width, 7 if kind is Kind.WRITE else None, PC, TID)
    assert exc.value.record_no == 2
    assert exc.value.expected == log.records[4]


def test_past_the_end_of_the_recording() -> None:
    log = Log()
    log.map()
    log.w(CTRL, 1)
    rp = Replay(log.lines())
    wr(rp, CTRL, 1)
    with pytest.raises(Divergence) as exc:
        wr(rp, CTRL, 0)
    d = exc.value
    assert (d.record_no, d.line_no, d.expected) == (None, None, None)
    assert str(d) == (
        "replay: end of recorded tid 100 (after its last access, record 1 (line 4)): "
        "expected nothing, got W 4 0xf7c00004 0x0 at pc 0x401234 tid 5000"
    )


def test_a_program_thread_with_no_recorded_thread_left() -> None:
    log = Log()
    log.map()
    log.w(CTRL, 1)
    rp = Replay(log.lines())
    wr(rp, CTRL, 1)
    with pytest.raises(Divergence) as exc:
        wr(rp, CTRL, 1, tid=TID + 1)
    assert str(exc.value) == (
        "replay: no recorded thread left for this thread (1 recorded, all paired): "
        "expected nothing, got W 4 0xf7c00004 0x1 at pc 0x401234 tid 5001"
    )


# -- polling ------------------------------------------------------------------------------


def test_polling_twice_as_long_repeats_the_last_value() -> None:
    rp = Replay(crc_log().lines())
    got = crc_driver(rp, polls=8)
    assert got == [None, None, None, 1, 1, 1, 0, 0, 0, 0, 0, 0xCAFEF00D, 0x4, 0x0, None]
    end = rp.finish()
    assert (end.complete, end.matched, end.repeated, end.skipped) == (True, 11, 4, 0)


def test_polling_half_as_long_skips_the_recorded_reads_left() -> None:
    rp = Replay(crc_log().lines())
    got = crc_driver(rp, polls=2)
    assert got == [None, None, None, 1, 1, 0xCAFEF00D, 0x4, 0x0, None]
    end = rp.finish()
    assert (end.complete, end.matched, end.repeated, end.skipped) == (True, 9, 0, 2)


def test_polling_longer_before_a_write_and_at_the_end() -> None:
    log = Log()
    log.map()
    log.r(STATUS, 3)
    log.w(CTRL, 1)
    log.r(STATUS, 0)
    rp = Replay(log.lines())
    assert [rd(rp, STATUS) for _ in range(3)] == [3, 3, 3]
    wr(rp, CTRL, 1)
    assert [rd(rp, STATUS) for _ in range(3)] == [0, 0, 0]
    assert rp.finish().complete


# -- the end of the run --------------------------------------------------------------------


def test_a_recording_consumed_partially_is_a_note() -> None:
    log = crc_log()
    rp = Replay(log.lines())
    wr(rp, DATA, 0xDEADBEEF)
    wr(rp, DATA, 0x12345678)
    end = rp.finish()
    assert not end.complete
    assert (end.matched, end.remaining, end.diverged) == (2, 9, None)
    assert end.first_remaining is not None and end.first_remaining.record_no == 3
    assert end.note == (
        "replay: note: the program ended before the recording did: 9 recorded accesses not "
        "replayed, the first record 3 (line 6): W 4 0xf7c00004 0x1 of recorded tid 100"
    )


def test_trailing_reads_of_the_last_register_are_skipped_not_left() -> None:
    log = Log()
    log.map()
    log.w(CTRL, 1)
    for v in (1, 1, 0):
        log.r(STATUS, v)
    rp = Replay(log.lines())
    wr(rp, CTRL, 1)
    rd(rp, STATUS)
    end = rp.finish()
    assert (end.complete, end.remaining, end.skipped, end.note) == (True, 0, 2, "")


def test_a_recorded_thread_that_never_ran_is_left_over() -> None:
    log = Log()
    log.map()
    log.w(CTRL, 1, pid=100)
    log.w(DATA, 2, pid=101)
    rp = Replay(log.lines())
    wr(rp, CTRL, 1)
    end = rp.finish()
    assert (
        end.remaining,
        end.note.endswith("record 2 (line 5): W 4 0xf7c00010 0x2 of recorded tid 101"),
    ) == (
        1,
        True,
    )


# -- threads -------------------------------------------------------------------------------


def two_thread_log() -> Log:
    """Thread 100 drives engine A (0x000-0x0ff), thread 101 engine B (0x100-0x1ff)."""
    log = Log()
    log.map()
    for i in range(3):
        log.w(DATA, i, pid=100)
        log.w(0x100 + DATA, 0x10 + i, pid=101)
        log.r(STATUS, i, pid=100)
        log.r(0x100 + STATUS, 0x10 + i, pid=101)
    return log


def test_two_threads_interleaved_otherwise_than_recorded() -> None:
    rp = Replay(two_thread_log().lines())
    # Thread B runs first and all at once, then A.
    got = []
    for i in range(3):
        wr(rp, 0x100 + DATA, 0x10 + i, tid=7001)
        got.append(rd(rp, 0x100 + STATUS, tid=7001))
    for i in range(3):
        wr(rp, DATA, i, tid=7000)
        got.append(rd(rp, STATUS, tid=7000))
    assert got == [0x10, 0x11, 0x12, 0, 1, 2]
    assert rp.threads == (100, 101)
    assert rp.pairs == {7001: 101, 7000: 100}
    assert rp.finish().complete


def test_threads_alike_pair_in_the_order_of_their_first_access() -> None:
    log = Log()
    log.map()
    log.r(STATUS, 1, pid=100)
    log.r(STATUS, 2, pid=101)
    log.w(CTRL, 0xA, pid=101)
    log.w(CTRL, 0xB, pid=100)
    rp = Replay(log.lines())
    assert rd(rp, STATUS, tid=9) == 1  # first program thread <-> first recorded thread
    assert rd(rp, STATUS, tid=8) == 2
    wr(rp, CTRL, 0xB, tid=9)
    wr(rp, CTRL, 0xA, tid=8)
    assert rp.pairs == {9: 100, 8: 101}
    assert rp.finish().complete


# -- devices, maps, paths ------------------------------------------------------------------


def test_two_mappings_of_one_device_match_by_phys_and_other_devices_are_ignored() -> None:
    log = Log()
    log.map(1)
    log.map(3, phys=0xE0000000, path="/dev/uio1", device="uio1")
    log.w(CTRL, 1, map_id=1)
    log.w(0x0, 0x99, map_id=3, base=0xE0000000)  # the other device
    log.records.append(Unmap(100, 1, 0x401000, 100))
    log.map(2)  # the program maps uio0 again
    log.r(STATUS, 0, map_id=2)
    log.w(CTRL, 0, map_id=2)
    rp = Replay(log.lines(), devices=[UIO])
    assert rp.recorded_paths == (UIO, "/dev/uio1")
    assert list(rp.devices) == [UIO]
    assert [m.map_id for m in rp.devices[UIO].maps] == [1, 2]
    assert [wr(rp, CTRL, 1), rd(rp, STATUS), wr(rp, CTRL, 0)] == [None, 0, None]
    assert rp.finish().complete
    with pytest.raises(Divergence) as exc:  # replaying both, uio1's write is missing
        rp = Replay(log.lines())
        wr(rp, CTRL, 1)
        rd(rp, STATUS)
    assert exc.value.record_no == 2


def test_device_paths_by_position_or_by_name() -> None:
    log = Log()
    log.map(1)
    log.map(2, phys=0xE0000000, path="/dev/uio1", device="uio1")
    log.w(0x0, 0x99, map_id=2, base=0xE0000000)
    rp = Replay(log.lines(), devices=["/tmp/a", "/tmp/b"])
    assert {p: d.recorded_path for p, d in rp.devices.items()} == {"/tmp/a": UIO, "/tmp/b": "/dev/uio1"}
    assert rp.device("/tmp/b").phys == 0xE0000000
    rp = Replay(log.lines(), devices=["/tmp/a", "/tmp/a"])  # one device for both paths
    assert [m.map_id for m in rp.devices["/tmp/a"].maps] == [1, 2]
    rp = Replay(log.lines(), devices={"/tmp/b": "/dev/uio1"})
    assert list(rp.devices) == ["/tmp/b"]
    rp.device("/tmp/b").write(0, 4, 0x99)
    assert rp.finish().complete
    with pytest.raises(
        UsageError, match=r"^replay: 3 --device given but the log maps 2 paths \(/dev/uio0, /dev/uio1\)$"
    ):
        Replay(log.lines(), devices=["/a", "/b", "/c"])
    with pytest.raises(UsageError, match="the log maps no '/dev/uio7'"):
        Replay(log.lines(), devices={"/a": "/dev/uio7"})
    with pytest.raises(UsageError, match="'/tmp/c' is not a replayed device"):
        Replay(log.lines(), devices=["/tmp/a", "/tmp/b"]).device("/tmp/c")


def test_maps_without_a_mark_line_are_named_by_id_and_joined_by_phys() -> None:
    log = Log()
    log.map(1, path=None)
    log.map(2, phys=0xE0000000, path=None)
    log.map(3, path=None)  # mapped again at map 1's phys
    log.w(CTRL, 1, map_id=3)
    rp = Replay(log.lines())
    assert rp.recorded_paths == ("map 1", "map 2")
    assert [m.map_id for m in rp.devices["map 1"].maps] == [1, 3]
    rp = Replay(log.lines(), devices=["/dev/uio0"])
    rp.device("/dev/uio0").write(CTRL, 4, 1)
    assert rp.finish().complete


def test_a_log_without_maps_is_refused() -> None:
    with pytest.raises(UsageError, match="no MAP line"):
        Replay(["VERSION 20070824\n", "R 4 0.000001 1 0x10 0x0 0x0 0\n"])


def test_a_malformed_line_names_its_line() -> None:
    with pytest.raises(TraceFormatError, match=r"^line 2: "):
        Replay(["VERSION 20070824\n", "MAP nonsense\n"])


def test_the_device_adapter_turns_offsets_into_the_recorded_phys() -> None:
    bar0 = 0xFB000000
    log = Log()
    starts = (bar0 | 0x4, 0, 0, 0, 0, 0, 0)  # a 64-bit memory BAR: flag bits in the start
    log.records.append(PciDev(0x0300, 0x10EC8168, 0x10, starts, (0x10000, 0, 0, 0, 0, 0, 0)))
    res0 = "/sys/devices/pci0000:00/0000:03:00.0/resource0"
    log.map(
        1, phys=bar0 + 0x2000, length=0x1000, path=res0, kind="pci", device="0000:03:00.0", region="bar 0"
    )
    log.r(0x2010, 0xAB, base=bar0, pid=100)
    log.w(0x2014, 0x1, base=bar0, pid=101)
    rp = Replay(log.lines(), devices=["/sys/bus/pci/devices/0000:03:00.0/resource0"])
    dev = rp.device("/sys/bus/pci/devices/0000:03:00.0/resource0")
    assert (dev.phys, dev.size) == (bar0, 0x3000)  # offsets are the BAR's, as the program's mmap
    assert dev.read(0x2010, 4, pc=PC, tid=1) == 0xAB
    dev.write(0x2014, 4, 1, pc=PC, tid=2)
    assert rp.pairs == {1: 100, 2: 101}
    assert rp.finish().complete
    # Without a PCIDEV line: the lowest mapped phys; or as the tracer says.
    rp = Replay([line for line in log.lines() if not line.startswith("PCIDEV")])
    assert (rp.device(res0).phys, rp.device(res0).size) == (bar0 + 0x2000, 0x1000)
    assert rp.device(res0, phys=bar0).read(0x2010, 4) == 0xAB


def test_a_log_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "dev.log"
    path.write_text("".join(crc_log().lines()))
    for source in (path, str(path)):
        rp = Replay(source)
        with pytest.raises(Divergence, match=r"^replay: record 3 \(line 6\): expected W 4 0xf7c00004 0x1, "):
            wr(rp, DATA, 0xDEADBEEF)
            wr(rp, DATA, 0x12345678)
            wr(rp, CTRL, 2)
    rp = Replay([line.encode() for line in crc_log().lines()])
    assert crc_driver(rp)[3:7] == [1, 1, 1, 0]


# -- properties ----------------------------------------------------------------------------

REGS = [(0x0, 4), (0x8, 8), (0x10, 1), (0x20, 16), (0x40, 64), (0x80, 2)]


@st.composite
def thread_ops(draw: st.DrawFn) -> list[tuple[str, int, int, list[int]]]:
    """A thread's accesses: ("W", off, width, [value]) or ("R", off, width, values of a run),
    adjacent runs of one register merged."""
    ops: list[tuple[str, int, int, list[int]]] = []
    for _ in range(draw(st.integers(1, 8))):
        off, width = draw(st.sampled_from(REGS))
        value = st.integers(0, (1 << (8 * width)) - 1)
        if draw(st.booleans()):
            ops.append(("W", off, width, [draw(value)]))
        else:
            values = draw(st.lists(value, min_size=1, max_size=4))
            if ops and ops[-1][0] == "R" and ops[-1][1] == off:
                ops[-1][3].extend(values)
            else:
                ops.append(("R", off, width, values))
    return ops


def interleave(draw: st.DrawFn, seqs: Sequence[Sequence[object]]) -> list[int]:
    """An interleaving of the sequences: the index of the sequence each step takes from."""
    order = [i for i, s in enumerate(seqs) for _ in s]
    return list(draw(st.permutations(order)))


THREAD_BASE = 0x1000  # thread k's registers at BASE + k * THREAD_BASE: disjoint


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Log, list[list[tuple[str, int, int, list[int]]]], list[int], list[int]]:
    threads = draw(st.lists(thread_ops(), min_size=1, max_size=3))
    flat = [[(op, v) for op in ops for v in op[3]] for ops in threads]
    log = Log()
    log.map(1, length=0x4000)
    log.map(2, length=0x4000)  # mapped twice
    log.map(3, phys=0xE0000000, path="/dev/uio1", device="uio1")
    pos = [0] * len(flat)
    for k in interleave(draw, flat):
        (kind, off, width, _), value = flat[k][pos[k]]
        pos[k] += 1
        log.acc(Kind(kind), k * THREAD_BASE + off, value, width=width, pid=100 + k,
                map_id=draw(st.sampled_from([1, 2])))  # fmt: skip
        if draw(st.booleans()):  # another device, not replayed
            log.w(0x0, 0x1, map_id=3, base=0xE0000000, pid=100 + k)
    # How many times the program reads each run: as recorded, fewer (>= 1) or more.
    counts = [draw(st.integers(1, 2 * len(op[3]) + 1)) for ops in threads for op in ops if op[0] == "R"]
    program_order = interleave(draw, threads)
    return log, threads, counts, program_order


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_interleaving_and_any_poll_length_replays(
    scenario: tuple[Log, list[list[tuple[str, int, int, list[int]]]], list[int], list[int]],
) -> None:
    log, threads, counts, program_order = scenario
    rp = Replay(log.lines(), devices=[UIO])
    runs = iter(counts)
    plans = [[(op, next(runs) if op[0] == "R" else 1) for op in ops] for ops in threads]
    pos = [0] * len(threads)
    for k in program_order:  # each step: one op (a whole run of reads) of thread k
        (kind, off, width, values), n = plans[k][pos[k]]
        pos[k] += 1
        phys = BASE + k * THREAD_BASE + off
        tid = 9000 - k
        if kind == "W":
            assert rp.access(Kind.WRITE, phys, width, values[0], PC, tid) is None
        else:
            got = [rp.access(Kind.READ, phys, width, None, PC, tid) for _ in range(n)]
            assert got == (values + [values[-1]] * n)[:n]
    end = rp.finish()
    assert end.complete, end.note
    assert rp.pairs == {9000 - k: 100 + k for k in range(len(threads))}


@settings(max_examples=200, deadline=None)
@given(thread_ops(), st.data())
def test_any_changed_write_fails_at_its_record(
    ops: list[tuple[str, int, int, list[int]]], data: st.DataObject
) -> None:
    writes = [i for i, op in enumerate(ops) if op[0] == "W"]
    if not writes:
        ops.append(("W", 0x0, 4, [0]))
        writes = [len(ops) - 1]
    bad = data.draw(st.sampled_from(writes))
    log = Log()
    log.map()
    numbers = [[log.acc(Kind(kind), off, v, width=width) for v in values] for kind, off, width, values in ops]
    rp = Replay(log.lines())
    for i, (kind, off, width, values) in enumerate(ops):
        if i == bad:
            wrong = values[0] ^ 1
            with pytest.raises(Divergence) as exc:
                wr(rp, off, wrong, width=width)
            assert (exc.value.record_no, exc.value.line_no) == (numbers[i][0], log.line_of(numbers[i][0]))
            assert str(exc.value) == (
                f"replay: record {numbers[i][0]} (line {log.line_of(numbers[i][0])}): expected W {width} "
                f"{BASE + off:#x} {values[0]:#x}, got W {width} {BASE + off:#x} {wrong:#x} at pc 0x401234 "
                f"tid 5000 (recorded tid 100)"
            )
            return
        for v in values:
            got = rp.access(Kind(kind), BASE + off, width, v if kind == "W" else None, PC, TID)
            assert got == (v if kind == "R" else None)
