"""The tools' reader (kmmio.tools.scan) gives exactly what kmmio.trace.read_records gives,
whatever the chunk and batch boundaries, and the same errors at the same line numbers."""

from __future__ import annotations

import gc
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmmio.cli import main
from kmmio.errors import TraceFormatError
from kmmio.tools import scan as scan_mod
from kmmio.tools.scan import Batch, scan
from kmmio.trace import Access, Kind, Map, Mark, format_record, read_records
from kmmio.trace.records import Record


def flat(data: bytes, chunk: int = scan_mod.CHUNK) -> list[Record]:
    out: list[Record] = []
    for item in scan(io.BytesIO(data), chunk=chunk):
        if isinstance(item, Batch):
            assert item.n > 0
            out.extend(item.accesses())
        else:
            out.append(item)
    return out


def reference(data: bytes) -> list[Record]:
    return list(read_records(data.decode().splitlines(keepends=True)))


accesses = st.builds(
    lambda kind, w, ts, m, off, value, pc, tid: Access(
        kind, w, ts, m, 0xF7C00000 + off, value % (1 << (8 * w)), pc, tid
    ),
    st.sampled_from(Kind),
    st.sampled_from([1, 2, 4, 8, 16, 32, 64]),
    st.integers(0, 10**12),
    st.integers(-1, 9),
    st.integers(0, 0xFFFF),
    st.integers(0, (1 << 512) - 1),
    st.integers(0, (1 << 64) - 1),
    st.integers(0, (1 << 32) - 1),
)
others = st.one_of(
    st.builds(Mark, st.integers(0, 10**9), st.sampled_from(["hello", "Lost 3 events.", "x y z"])),
    st.builds(Map, st.integers(0, 10**9), st.integers(1, 5), st.integers(0, 1 << 40), st.integers(0, 1 << 47),
              st.integers(1, 1 << 20), st.integers(0, 1 << 47), st.integers(0, 1 << 22)),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(accesses, accesses, accesses, others), max_size=60),
    st.integers(1, 300),
    st.booleans(),
    st.booleans(),
)
def test_scan_equals_the_reader(records: list[Record], chunk: int, crlf: bool, blanks: bool) -> None:
    lines = [format_record(r) for r in records]
    if blanks:
        lines = [x for line in lines for x in (line, "", "# a comment")]
    text = "".join(line + ("\r\n" if crlf else "\n") for line in lines)
    data = text.encode()
    assert flat(data, chunk) == reference(data) == records


def test_batches_split_at_rows_and_keep_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 4)
    recs = [Access(Kind.READ, 4, i, 1, 0x100 + i, i, 0x400000, 7) for i in range(10)]
    lines = (
        [format_record(r) for r in recs[:5]]
        + ["MARK 0.000001 between"]
        + [format_record(r) for r in recs[5:]]
    )
    items = list(scan(io.BytesIO(("\n".join(lines) + "\n").encode())))
    shape = [(x.first_line, x.n) if isinstance(x, Batch) else type(x).__name__ for x in items]
    assert shape == [(1, 4), (5, 1), "Mark", (7, 4), (11, 1)]
    got = [a for x in items if isinstance(x, Batch) for a in x.accesses()]
    assert got == recs


def test_columns_are_typed_views() -> None:
    data = b"W 8 12.000105 -1 0xf7c00020 0x1122334455667788 0x4011a7 4242\nR 1 0.000000 3 0x0 0xff 0x0 0\n"
    (b,) = list(scan(io.BytesIO(data)))
    assert isinstance(b, Batch)
    assert list(b.kind) == [1, 0]
    assert list(b.width) == [8, 1]
    assert list(b.ts) == [12_000_105, 0]
    assert list(b.map_id) == [-1, 3]
    assert list(b.phys) == [0xF7C00020, 0]
    assert list(b.value) == [0x1122334455667788, 0xFF]
    assert list(b.pc) == [0x4011A7, 0]
    assert list(b.tid) == [4242, 0]
    assert b.wide == {}


def test_wide_values_are_kept_whole() -> None:
    value = int("ab" * 32, 16)
    data = format_record(Access(Kind.WRITE, 32, 5, 1, 0x40, value, 0x1, 2)).encode() + b"\n"
    (b,) = list(scan(io.BytesIO(data)))
    assert isinstance(b, Batch)
    assert b.wide == {0: value}
    assert list(b.value) == [value & (1 << 64) - 1]


def test_the_kernels_trace_file_form_and_a_last_line_without_newline() -> None:
    data = b"# tracer: mmiotrace\n#\nR 4 1.000000 1 0x10 0x0 0x0 0\nW 4 1.000001 1 0x10 0x1 0x0 0"
    assert flat(data, 7) == reference(data)
    assert len(flat(data)) == 2


@pytest.mark.parametrize(
    "line",
    [
        "R 4 1.00000 1 0x10 0x0 0x0 0",  # five digits of microseconds
        "R 0 1.000000 1 0x10 0x0 0x0 0",  # width 0
        "R 4 1.000000 1 10 0x0 0x0 0",  # no 0x
        "R 4 1.000000 1 0x10 0x0 0x0",  # a field short
        "Q 4 1.000000 1 0x10 0x0 0x0 0",  # no such record
    ],
)
def test_a_malformed_line_is_the_readers_error_at_its_line(line: str) -> None:
    data = ("R 4 1.000000 1 0x10 0x0 0x0 0\n\n" + line + "\n").encode()
    with pytest.raises(TraceFormatError) as ours:
        flat(data, 5)
    with pytest.raises(TraceFormatError) as theirs:
        reference(data)
    assert ours.value.line_no == theirs.value.line_no == 3
    assert str(ours.value) == str(theirs.value)


def test_a_width_the_columns_cannot_hold_is_refused() -> None:
    with pytest.raises(TraceFormatError, match="line 1: width 300"):
        flat(b"R 300 1.000000 1 0x10 0x0 0x0 0\n")


def test_progress_counts_every_byte_and_line() -> None:
    class Count:
        nbytes = 0
        nlines = 0

        def advance(self, nbytes: int, nlines: int) -> None:
            self.nbytes += nbytes
            self.nlines += nlines

    data = (
        b"".join(f"R 4 1.{i:06d} 1 0x10 0x{i:x} 0x0 0\n".encode() for i in range(1000)) + b"MARK 2.000000 x\n"
    )
    c = Count()
    for _ in scan(io.BytesIO(data), progress=c, chunk=333):
        pass
    assert (c.nbytes, c.nlines) == (len(data), 1001)


def test_wide_values_are_parsed_by_the_compiled_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_python(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"parse_line called on {args[0]!r}")

    monkeypatch.setattr(scan_mod, "parse_line", no_python)
    v16 = int("0f1e2d3c4b5a69788796a5b4c3d2e1f0", 16)
    v64 = (1 << 512) - 1
    data = (
        f"W 16 1.000000 1 0x40 {v16:#x} 0x1 2\n"
        "R 4 1.000001 1 0x44 0x5 0x1 2\n"
        f"R 32 1.000002 1 0x60 0x{'0' * 90}1f 0x1 2\r\n"  # leading zeros, a small value
        f"W 64 1.000003 1 0x80 {v64:#x} 0x1 2\n"
    ).encode()
    (b,) = list(scan(io.BytesIO(data)))
    assert isinstance(b, Batch)
    assert b.n == 4 and b.has_wide
    assert list(b.value) == [v16 & (1 << 64) - 1, 5, 0x1F, (1 << 64) - 1]
    assert b.wide_offsets.tolist() == [0, 16, 16, 48, 112]
    assert bytes(b.wide_bytes) == v16.to_bytes(16, "little") + (0x1F).to_bytes(32, "little") + b"\xff" * 64
    assert [b.wide_value(i) for i in range(4)] == [v16, 5, 0x1F, v64]
    assert b.wide == {0: v16, 3: v64}  # the rows whose value is over 64 bits


def test_a_batch_without_wide_rows_has_an_empty_wide_area() -> None:
    (b,) = list(scan(io.BytesIO(b"R 8 1.000000 1 0x40 0xffffffffffffffff 0x1 2\n")))
    assert isinstance(b, Batch)
    assert (b.has_wide, b.wide_offsets.tolist(), bytes(b.wide_bytes), b.wide) == (False, [0, 0], b"", {})


def test_rows_the_reader_parses_land_in_the_wide_area_too() -> None:
    v = (1 << 100) + 7
    data = f"R 4 1.000000 1 0x10 0x0 0x0 1\nW 16 1.000001 -2147483648 0x40 {v:#x} 0x1 2\n".encode()
    (b,) = list(scan(io.BytesIO(data)))  # the map id is out of the compiled scanner's range
    assert isinstance(b, Batch)
    assert list(b.map_id) == [1, -(2**31)]
    assert b.wide_offsets.tolist() == [0, 0, 16]
    assert b.wide == {1: v}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("W 4 1.000000 1 0x10 0x100000000 0x0 1", "value 0x100000000 is wider than the access (4 bytes)"),
        ("W 1 1.000000 1 0x10 0x100 0x0 1", "value 0x100 is wider than the access (1 bytes)"),
        (
            f"W 16 1.000000 1 0x10 {1 << 128:#x} 0x0 1",
            f"value {1 << 128:#x} is wider than the access (16 bytes)",
        ),
        ("R 65 1.000000 1 0x10 0x0 0x0 1", "width 65 is more than 64 bytes"),
        ("R 4 1.000000 1 0x10 0x0 0x0 4294967296", "tid 4294967296 is out of range (0..4294967295)"),
        (
            "R 4 1.000000 2147483648 0x10 0x0 0x0 1",
            "map id 2147483648 is out of range (-2147483648..2147483647)",
        ),
        ("R 4 1.000000 1 0x10000000000000000 0x0 0x0 1", "phys 0x10000000000000000 is wider than 64 bits"),
    ],
)
def test_nothing_is_truncated(line: str, message: str) -> None:
    data = ("R 4 1.000000 1 0x10 0x0 0x0 1\n" + line + "\n").encode()
    with pytest.raises(TraceFormatError) as info:
        flat(data)
    assert str(info.value) == f"line 2: {message}"


class Endless(io.RawIOBase):
    """An endless line: ``b"x"`` forever, counting what was read."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = len(b)
        b[:n] = b"x" * n
        self.given += n
        return n


def test_a_line_without_end_is_refused_after_a_chunk() -> None:
    stream = Endless()
    with pytest.raises(TraceFormatError) as info:
        for _ in scan(stream, chunk=1 << 20):  # type: ignore[arg-type]
            pass
    assert str(info.value) == "line 1: the line is longer than 1,048,576 bytes"
    assert stream.given == 2 << 20  # two chunks: the cap and a byte more need two


@pytest.mark.parametrize("length", [scan_mod.MAX_LINE, scan_mod.MAX_LINE + 1])
def test_the_line_cap_is_exact(length: int) -> None:
    head = "MARK 1.000000 "
    line = head + "y" * (length - len(head))
    data = ("R 4 1.000000 1 0x10 0x0 0x0 1\n" + line + "\r\nR 4 1.000000 1 0x10 0x0 0x0 1\n").encode()
    if length <= scan_mod.MAX_LINE:
        assert len(flat(data, 1 << 16)) == 3
    else:
        with pytest.raises(TraceFormatError, match=r"^line 2: the line is longer than 1,048,576 bytes$"):
            flat(data, 1 << 16)


BAD_LINES = [
    (
        "MAP 1.000000 1 0x0 0x0 0x1000 0x0 99999999999",
        "line 3: pid 99999999999 is out of range (0..4294967295)",
    ),
    ("R 4 1.000000 1 0x10 0x1 0x0 4294967296", "line 3: tid 4294967296 is out of range (0..4294967295)"),
    (
        "UNKNOWN 1.000000 1 0x10000000000000000 f0,0f 0x0 0",
        "line 3: phys 0x10000000000000000 is wider than 64 bits",
    ),
    (
        "MARK 1.000000 syscall write reads map 1 0x0+0x400 tid 99999999999",
        "line 3: tid 99999999999 is out of range (0..4294967295)",
    ),
    (
        "R 4 99999999999999999999.000000 1 0x10 0x1 0x0 1",
        "line 3: timestamp 99999999999999999999.000000 is out of range (at most 9223372036854 s)",
    ),
    ("W 2 1.000000 1 0x10 0x12345 0x0 1", "line 3: value 0x12345 is wider than the access (2 bytes)"),
]
TOOLS = {
    "summary": ["summary", "{log}"],
    "parquet": ["export", "{log}", "-f", "parquet", "-o", "{out}.parquet"],
    "perfetto": ["export", "{log}", "-f", "perfetto", "-o", "{out}.pftrace"],
    "vcd": ["export", "{log}", "-f", "vcd", "-o", "{out}.vcd"],
    "plot": ["plot", "{log}", "-o", "{out}.png"],
    "diff": ["diff", "{good}", "{log}"],
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_every_tool_refuses_an_out_of_range_line_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], tool: str, line: str, message: str
) -> None:
    good = tmp_path / "good.log"
    good.write_text("VERSION 20070824\nR 4 1.000000 1 0x10 0x1 0x0 1\n")
    log = tmp_path / "bad.log"
    log.write_text("VERSION 20070824\nR 4 1.000000 1 0x10 0x1 0x0 1\n" + line + "\n")
    out = tmp_path / "out"
    args = [a.format(log=log, good=good, out=out) for a in TOOLS[tool]]
    assert main(args) == 2
    gc.collect()  # an unclosed writer would complain now
    captured = capfd.readouterr()
    assert captured.err == f"kmmio: {log}: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.log", "good.log"]
