"""The mmiotrace reader and writer, both directions from one table, plus the kernel sample."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmmio.errors import TraceFormatError
from kmmio.trace import (
    Access,
    Kind,
    Map,
    Mark,
    PciDev,
    TraceWriter,
    Unknown,
    Unmap,
    Version,
    format_record,
    parse_line,
    read_records,
)

CASES = [
    ("VERSION 20070824", Version()),
    (
        "MAP 1037.681661 1 0x90000000 0xffffb7b187000000 0x1000000 0x0 0",
        Map(1037681661, 1, 0x90000000, 0xFFFFB7B187000000, 0x1000000, 0, 0),
    ),
    (
        "R 4 1037.681772 1 0x90000300 0x37002 0x0 0",
        Access(Kind.READ, 4, 1037681772, 1, 0x90000300, 0x37002),
    ),
    (
        "W 1 0.000001 12 0x0 0x80 0x55d0c0de 4242",
        Access(Kind.WRITE, 1, 1, 12, 0, 0x80, 0x55D0C0DE, 4242),
    ),
    (
        "W 32 5.100000 2 0x40 0xafaeadacabaaa9a8a7a6a5a4a3a2a1a09f9e9d9c9b9a99989796959493929190 0x1 2",
        Access(
            Kind.WRITE,
            32,
            5100000,
            2,
            0x40,
            0xAFAEADACABAAA9A8A7A6A5A4A3A2A1A09F9E9D9C9B9A99989796959493929190,
            1,
            2,
        ),
    ),
    ("UNMAP 12.000100 -1 0x0 0", Unmap(12000100, -1, 0, 0)),
    (
        "UNKNOWN 3.000000 1 0x400 c4,e2,69 0x401000 7",
        Unknown(3000000, 1, 0x400, b"\xc4\xe2\x69", 0x401000, 7),
    ),
    ("MARK 0.000000 Lost 3 events.", Mark(0, "Lost 3 events.")),
    (
        "PCIDEV 0010 80865a84 86 91000004 0 8000000c 0 f001 0 c0002 1000000 0 10000000 0 40 0 20000 i915",
        PciDev(
            0x10,
            0x80865A84,
            0x86,
            (0x91000004, 0, 0x8000000C, 0, 0xF001, 0, 0xC0002),
            (0x1000000, 0, 0x10000000, 0, 0x40, 0, 0x20000),
            "i915",
        ),
    ),
    (
        "PCIDEV 0000 80865af0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ",
        PciDev(0, 0x80865AF0, 0, (0,) * 7, (0,) * 7, ""),
    ),
]


@pytest.mark.parametrize(("line", "record"), CASES)
def test_both_directions(line: str, record: object) -> None:
    assert parse_line(line) == record
    assert format_record(record) == line  # type: ignore[arg-type]


LOCAL_SAMPLE = Path(__file__).parent / "data" / "kernel-trace-pipe.txt"


def test_kernel_trace_pipe_sample() -> None:
    records = list(read_records(LOCAL_SAMPLE.read_text().splitlines()))
    assert isinstance(records[0], Version)
    assert sum(isinstance(r, PciDev) for r in records) == 12
    accesses = [r for r in records if isinstance(r, Access)]
    assert accesses[0] == Access(Kind.READ, 4, 1037681772, 1, 0x90000300, 0x37002, 0, 0)
    # the kernel's own lines come back unchanged
    for line in LOCAL_SAMPLE.read_text().splitlines():
        assert format_record(parse_line(line)) == line  # type: ignore[arg-type]


def test_ftrace_header_form() -> None:
    text = (
        "# tracer: mmiotrace\n#\n# entries-in-buffer/entries-written: 2/2   #P:4\n"
        "#           TASK-PID     CPU#  TIMESTAMP  FUNCTION\n"
        "R 4 1037.681772 1 0x90000300 0x37002 0x0 0\n\nW 4 1037.681777 1 0x9000009c 0x17 0x0 0\n"
    )
    kinds = [r.kind for r in read_records(io.StringIO(text)) if isinstance(r, Access)]
    assert kinds == [Kind.READ, Kind.WRITE]


@pytest.mark.parametrize(
    ("text", "line_no", "msg"),
    [
        ("VERSION 20070824\nR 4 1.000000 1 0x0 0x0 0x0\n", 2, "needs 7 fields"),
        ("W 4 1.0 1 0x0 0x0 0x0 0\n", 1, "timestamp"),
        ("W 4 1.000000 1 10 0x0 0x0 0\n", 1, "0x-prefixed"),
        ("BOGUS 1\n", 1, "unknown record"),
        ("\n\nUNKNOWN 1.000000 1 0x0 zz 0x0 0\n", 3, "hex"),
        ("MARKX 1.000000 hi\n", 1, "unknown record"),
        ("R -4 1.000000 1 0x0 0x0 0x0 0\n", 1, "decimal"),
    ],
)
def test_malformed_lines_carry_their_number(text: str, line_no: int, msg: str) -> None:
    with pytest.raises(TraceFormatError, match=msg) as info:
        list(read_records(io.StringIO(text)))
    assert info.value.line_no == line_no


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_our_error(data: bytes) -> None:
    try:
        list(read_records(data.splitlines()))
    except TraceFormatError:
        pass


@given(
    st.sampled_from(list(Kind)),
    st.integers(1, 32),
    st.integers(0, 10**12),
    st.integers(1, 10**6),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**22),
)
def test_access_round_trip(
    kind: Kind, width: int, ts: int, mid: int, phys: int, value: int, pc: int, pid: int
) -> None:
    rec = Access(kind, width, ts, mid, phys, value, pc, pid)
    line = format_record(rec)
    assert len(line.split()) == 8
    assert parse_line(line) == rec


def test_writer_counts_and_flushes() -> None:
    out = io.StringIO()
    w = TraceWriter(out, flush_every=2)
    w.write(Version())
    w.write(Mark(1, "hello"))
    assert out.getvalue() == "VERSION 20070824\nMARK 0.000001 hello\n"
    assert w.count == 2


class _Failing(io.StringIO):
    def __init__(self, exc: OSError) -> None:
        super().__init__()
        self.exc = exc

    def flush(self) -> None:
        raise self.exc


def test_a_log_that_cannot_be_written_is_one_clear_error() -> None:
    from kmmio.errors import LogWriteError
    from kmmio.trace.writer import TraceWriter

    full = TraceWriter(_Failing(OSError(28, "No space left on device")), flush_every=1)
    with pytest.raises(LogWriteError, match="cannot write the log: No space left on device"):
        full.write(Version())
    gone = TraceWriter(_Failing(BrokenPipeError(32, "Broken pipe")), flush_every=1)
    gone.write(Version())  # the reader went away: not an error of the tracer


def test_the_per_access_line_is_the_records_line() -> None:
    from kmmio.trace.writer import TraceWriter

    rec = Access(Kind.READ, 2, 1037681661, 3, 0x40, 0xBEEF, 0x401000, 77)
    a, b = io.StringIO(), io.StringIO()
    TraceWriter(a, header=None).write(rec)
    TraceWriter(b, header=None).write_accesses([("R", 2, 1037681661, 3, 0x40, 0xBEEF, 0x401000, 77)])
    assert a.getvalue() == b.getvalue() == "R 2 1037.681661 3 0x40 0xbeef 0x401000 77\n"
    c = io.StringIO()
    TraceWriter(c, header=Version()).write_accesses([("W", 1, 0, 1, 0, 0, 0, 1), ("R", 8, 1, 1, 8, 1, 2, 1)])
    assert c.getvalue().splitlines() == [
        "VERSION 20070824",
        "W 1 0.000000 1 0x0 0x0 0x0 1",
        "R 8 0.000001 1 0x8 0x1 0x2 1",
    ]


def test_kmmio_marks_are_typed_records_and_plain_marks_for_others() -> None:
    """``MARK map`` and ``MARK syscall`` lines read back as MapInfo and KernelAccess, and
    as plain Marks by a reader that wants only the kernel's records."""
    from kmmio.trace import KernelAccess, MapInfo

    bar = "/sys/devices/pci0000:00/0000:03:00.0/resource0"
    recs = [
        MapInfo(1_000_001, 1, "/dev/shm/regs a (deleted)", "file"),
        MapInfo(1_000_002, 2, bar, "pci", "0000:03:00.0", "bar 0"),
        KernelAccess(1_000_003, "write", "reads", 1, 0x40, 0x400, 4242),
        KernelAccess(1_000_004, "access", "reads", 2, 0x10, None, 4242),
    ]
    lines = [format_record(r) for r in recs]
    assert lines == [
        r"MARK 1.000001 map 1 /dev/shm/regs\040a\040(deleted) file",
        "MARK 1.000002 map 2 /sys/devices/pci0000:00/0000:03:00.0/resource0 pci 0000:03:00.0 bar 0",
        "MARK 1.000003 syscall write reads map 1 0x40+0x400 tid 4242",
        "MARK 1.000004 syscall access reads map 2 0x10 tid 4242",
    ]
    assert list(read_records(lines)) == recs
    assert [type(r).__name__ for r in read_records(lines, typed_marks=False)] == ["Mark"] * 4
    assert list(read_records(["MARK 1.000005 map of the world"])) == [Mark(1_000_005, "map of the world")]
