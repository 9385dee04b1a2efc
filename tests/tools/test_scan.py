"""The tools' reader (kmmio.tools.scan) gives exactly what kmmio.trace.read_records gives,
whatever the chunk and batch boundaries, and the same errors at the same line numbers."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
