"""Every number of a log line is range-checked by the reader: the largest value a field
holds is read, one more is a TraceFormatError with the line's number and exact message."""

from __future__ import annotations

import io

import pytest

from kmmio.errors import TraceFormatError
from kmmio.trace import Access, Kind, read_records
from kmmio.trace.reader import MAX_LINE, MAX_TS, MAX_WIDTH, parse_line
from kmmio.trace.records import KernelAccess, Map, MapInfo, PciDev, Unknown, Unmap

U32 = 2**32 - 1
U64 = 2**64 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
SEC = MAX_TS // 1_000_000  # the largest whole second
BIG_SEC = f"{MAX_TS // 1_000_000}.{MAX_TS % 1_000_000:06d}"  # MAX_TS itself

#: The largest value each field holds, read back.
ACCEPTED = [
    (f"R 4 1.000000 {I32_MAX} 0x10 0x1 0x0 {U32}", Access(Kind.READ, 4, 1_000_000, I32_MAX, 0x10, 1, 0, U32)),
    (
        f"W 4 1.000000 {I32_MIN} {U64:#x} 0x1 {U64:#x} 0",
        Access(Kind.WRITE, 4, 1_000_000, I32_MIN, U64, 1, U64, 0),
    ),
    (
        f"W 64 {BIG_SEC} 1 0x10 {2**512 - 1:#x} 0x0 0",
        Access(Kind.WRITE, 64, MAX_TS, 1, 0x10, 2**512 - 1, 0, 0),
    ),
    (
        f"MAP 1.000000 {I32_MIN} {U64:#x} {U64:#x} {U64:#x} {U64:#x} {U32}",
        Map(1_000_000, I32_MIN, U64, U64, U64, U64, U32),
    ),
    (f"UNMAP 1.000000 {I32_MAX} {U64:#x} {U32}", Unmap(1_000_000, I32_MAX, U64, U32)),
    (
        f"UNKNOWN 1.000000 {I32_MAX} {U64:#x} f0,0f {U64:#x} {U32}",
        Unknown(1_000_000, I32_MAX, U64, b"\xf0\x0f", U64, U32),
    ),
    (
        f"MARK 1.000000 syscall write reads map {I32_MAX} {U64:#x}+{U64:#x} tid {U32}",
        KernelAccess(1_000_000, "write", "reads", I32_MAX, U64, U64, U32),
    ),
    (f"MARK 1.000000 map {I32_MAX} /dev/mem file", MapInfo(1_000_000, I32_MAX, "/dev/mem", "file", "", "")),
    ("PCIDEV " + " ".join([f"{U64:x}"] * 17), PciDev(U64, U64, U64, (U64,) * 7, (U64,) * 7, "")),
]


@pytest.mark.parametrize(("line", "record"), ACCEPTED)
def test_the_largest_values_are_read(line: str, record: object) -> None:
    assert parse_line(line) == record


#: One past each bound, and the error it gives (at line 3: two good lines before it).
REFUSED = [
    (
        f"R 4 1.000000 {I32_MAX + 1} 0x10 0x1 0x0 1",
        "map id 2147483648 is out of range (-2147483648..2147483647)",
    ),
    (
        f"R 4 1.000000 {I32_MIN - 1} 0x10 0x1 0x0 1",
        "map id -2147483649 is out of range (-2147483648..2147483647)",
    ),
    (f"R 4 1.000000 1 0x10 0x1 0x0 {U32 + 1}", "tid 4294967296 is out of range (0..4294967295)"),
    (f"R 4 1.000000 1 {U64 + 1:#x} 0x1 0x0 1", "phys 0x10000000000000000 is wider than 64 bits"),
    (f"R 4 1.000000 1 0x10 0x1 {U64 + 1:#x} 1", "pc 0x10000000000000000 is wider than 64 bits"),
    (
        f"R 4 {SEC}.{MAX_TS % 1_000_000 + 1:06d} 1 0x10 0x1 0x0 1",
        f"timestamp {SEC}.{MAX_TS % 1_000_000 + 1:06d} is out of range (at most {SEC} s)",
    ),
    (
        "R 4 99999999999999999999.000000 1 0x10 0x1 0x0 1",
        f"timestamp 99999999999999999999.000000 is out of range (at most {SEC} s)",
    ),
    ("R 65 1.000000 1 0x10 0x1 0x0 1", "width 65 is more than 64 bytes"),
    (f"W 64 1.000000 1 0x10 {2**512:#x} 0x0 1", f"value {f'{2**512:#x}'[:40]}... is wider than 64 bytes"),
    (
        f"MAP 1.000000 {I32_MAX + 1} 0x0 0x0 0x1000 0x0 1",
        "map id 2147483648 is out of range (-2147483648..2147483647)",
    ),
    (f"MAP 1.000000 1 {U64 + 1:#x} 0x0 0x1000 0x0 1", "phys 0x10000000000000000 is wider than 64 bits"),
    (f"MAP 1.000000 1 0x0 {U64 + 1:#x} 0x1000 0x0 1", "virt 0x10000000000000000 is wider than 64 bits"),
    (f"MAP 1.000000 1 0x0 0x0 {U64 + 1:#x} 0x0 1", "length 0x10000000000000000 is wider than 64 bits"),
    (f"MAP 1.000000 1 0x0 0x0 0x1000 {U64 + 1:#x} 1", "pc 0x10000000000000000 is wider than 64 bits"),
    (f"MAP 1.000000 1 0x0 0x0 0x1000 0x0 {U32 + 1}", "pid 4294967296 is out of range (0..4294967295)"),
    (f"UNMAP 1.000000 {I32_MIN - 1} 0x0 1", "map id -2147483649 is out of range (-2147483648..2147483647)"),
    (f"UNMAP 1.000000 1 {U64 + 1:#x} 1", "pc 0x10000000000000000 is wider than 64 bits"),
    (f"UNMAP 1.000000 1 0x0 {U32 + 1}", "pid 4294967296 is out of range (0..4294967295)"),
    (
        f"UNKNOWN 1.000000 {I32_MAX + 1} 0x0 f0 0x0 1",
        "map id 2147483648 is out of range (-2147483648..2147483647)",
    ),
    (f"UNKNOWN 1.000000 1 {U64 + 1:#x} f0 0x0 1", "phys 0x10000000000000000 is wider than 64 bits"),
    (f"UNKNOWN 1.000000 1 0x0 f0 {U64 + 1:#x} 1", "pc 0x10000000000000000 is wider than 64 bits"),
    (f"UNKNOWN 1.000000 1 0x0 f0 0x0 {U32 + 1}", "pid 4294967296 is out of range (0..4294967295)"),
    (
        f"MARK 1.000000 syscall write reads map {I32_MAX + 1} 0x0 tid 1",
        "map id 2147483648 is out of range (0..2147483647)",
    ),
    (
        f"MARK 1.000000 syscall write reads map 1 {U64 + 1:#x} tid 1",
        "phys 0x10000000000000000 is wider than 64 bits",
    ),
    (
        f"MARK 1.000000 syscall write reads map 1 0x0+{U64 + 1:#x} tid 1",
        "length 0x10000000000000000 is wider than 64 bits",
    ),
    (
        f"MARK 1.000000 syscall write reads map 1 0x0 tid {U32 + 1}",
        "tid 4294967296 is out of range (0..4294967295)",
    ),
    (f"MARK 1.000000 map {I32_MAX + 1} /dev/mem file", "map id 2147483648 is out of range (0..2147483647)"),
    (
        f"MARK {SEC + 1}.000000 Lost 3 events.",
        f"timestamp {SEC + 1}.000000 is out of range (at most {SEC} s)",
    ),
    ("PCIDEV " + " ".join([f"{U64 + 1:x}"] + ["0"] * 16), "a PCIDEV field is wider than 64 bits"),
]


@pytest.mark.parametrize(("line", "message"), REFUSED)
def test_one_past_a_bound_is_an_error_at_its_line(line: str, message: str) -> None:
    text = "VERSION 20070824\nR 4 1.000000 1 0x10 0x1 0x0 1\n" + line + "\n"
    with pytest.raises(TraceFormatError) as info:
        list(read_records(io.StringIO(text)))
    assert (info.value.line_no, info.value.message) == (3, message)
    assert str(info.value) == f"line 3: {message}"


def test_a_marks_free_text_is_not_held_to_bounds() -> None:
    (rec,) = read_records(["MARK 0.000000 Lost 99999999999999999999999 events."])
    assert rec.text == "Lost 99999999999999999999999 events."  # type: ignore[union-attr]


def test_a_line_longer_than_the_cap_is_refused() -> None:
    ok = "MARK 1.000000 " + "x" * (MAX_LINE - len("MARK 1.000000 "))
    assert len(ok) == MAX_LINE
    assert parse_line(ok + "\r\n") is not None
    with pytest.raises(TraceFormatError) as info:
        list(read_records(["VERSION 20070824\n", ok + "y\n"]))
    assert str(info.value) == "line 2: the line is longer than 1,048,576 bytes"


def test_the_widest_access_is_64_bytes() -> None:
    assert MAX_WIDTH == 64
