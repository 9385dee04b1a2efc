"""The tools' reader: a log, streamed in chunks, as columns of accesses and records.

:func:`scan` yields, in log order, a :class:`Batch` for each run of consecutive ``R``/``W``
lines (columns over C arrays, filled by the compiled ``kmmio_scan`` without a Python step
per line) and a :mod:`kmmio.trace` record for every other line.  Lines the compiled
scanner does not take as plain accesses (other records, the kernel's ``trace``-file form,
values wider than 64 bits, malformed lines) go through :func:`kmmio.trace.parse_line`, so
the records and errors are exactly the reader's: a malformed line raises
:class:`~kmmio.errors.TraceFormatError` with its number.  Memory is bounded by one chunk of
text and one batch of columns, whatever the log's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any, Literal, Protocol

from kmmio.errors import TraceFormatError
from kmmio.tools._tools import ffi, lib
from kmmio.trace.reader import parse_line
from kmmio.trace.records import Access, Kind, Record

#: Bytes read at a time.
CHUNK = 1 << 22
#: Rows per batch.
ROWS = 1 << 16
#: The widest access a batch can hold (the width column is one byte).
MAX_WIDTH = 255

_FULL, _NEED_MORE, _OTHER = 0, 1, 2

#: Column name → (C type, memoryview format).
COLUMNS: dict[str, tuple[str, Literal["B", "i", "I", "Q"]]] = {
    "kind": ("uint8_t", "B"),
    "width": ("uint8_t", "B"),
    "ts": ("uint64_t", "Q"),
    "map_id": ("int32_t", "i"),
    "phys": ("uint64_t", "Q"),
    "value": ("uint64_t", "Q"),
    "pc": ("uint64_t", "Q"),
    "tid": ("uint32_t", "I"),
}


class Progress(Protocol):
    def advance(self, nbytes: int, nlines: int) -> None: ...


class Batch:
    """Consecutive access lines as columns: ``kind`` (0 read, 1 write), ``width`` (bytes),
    ``ts`` (microseconds), ``map_id``, ``phys``, ``value`` (its low 64 bits), ``pc``,
    ``tid``, each a memoryview of ``n`` items; ``wide`` maps a row to its whole value when
    that is wider than 64 bits; row ``i`` is line ``first_line + i``."""

    __slots__ = ("_arrays", "first_line", "n", "wide")

    def __init__(self, first_line: int) -> None:
        self._arrays: dict[str, Any] = {
            name: ffi.new(f"{ctype}[{ROWS}]") for name, (ctype, _) in COLUMNS.items()
        }
        self.n = 0
        self.first_line = first_line
        self.wide: dict[int, int] = {}

    def column(self, name: str) -> memoryview:
        """A column's ``n`` items (a view of the C array, no copy)."""
        fmt = COLUMNS[name][1]
        raw = memoryview(ffi.buffer(self._arrays[name], self.n * ffi.sizeof(COLUMNS[name][0])))
        return raw.cast(fmt)

    def ptr(self, name: str) -> int:
        """The address of a column's first item, for compiled code (valid while the batch
        is referenced)."""
        return int(ffi.cast("uintptr_t", self._arrays[name]))

    def cdata(self, name: str) -> Any:
        """A column as a cffi pointer."""
        return self._arrays[name]

    @property
    def kind(self) -> memoryview:
        return self.column("kind")

    @property
    def width(self) -> memoryview:
        return self.column("width")

    @property
    def ts(self) -> memoryview:
        return self.column("ts")

    @property
    def map_id(self) -> memoryview:
        return self.column("map_id")

    @property
    def phys(self) -> memoryview:
        return self.column("phys")

    @property
    def value(self) -> memoryview:
        return self.column("value")

    @property
    def pc(self) -> memoryview:
        return self.column("pc")

    @property
    def tid(self) -> memoryview:
        return self.column("tid")

    def append(self, acc: Access) -> None:
        """One access the compiled scanner left to the reader."""
        i = self.n
        a = self._arrays
        a["kind"][i] = 1 if acc.kind is Kind.WRITE else 0
        a["width"][i] = acc.width
        a["ts"][i] = acc.ts
        a["map_id"][i] = acc.map_id
        a["phys"][i] = acc.phys & 0xFFFF_FFFF_FFFF_FFFF
        a["value"][i] = acc.value & 0xFFFF_FFFF_FFFF_FFFF
        a["pc"][i] = acc.pc & 0xFFFF_FFFF_FFFF_FFFF
        a["tid"][i] = acc.pid
        if acc.value >> 64:
            self.wide[i] = acc.value
        self.n = i + 1

    def full(self) -> bool:
        return self.n >= ROWS

    def accesses(self) -> Iterator[Access]:
        """The rows as records (a slow path, for tests and small uses)."""
        cols = [self.column(name) for name in COLUMNS]
        for i, (k, w, ts, m, ph, v, pc, tid) in enumerate(zip(*cols, strict=True)):
            yield Access(Kind.WRITE if k else Kind.READ, w, ts, m, ph, self.wide.get(i, v), pc, tid)


def scan(
    stream: IO[bytes], *, progress: Progress | None = None, chunk: int = CHUNK
) -> Iterator[Batch | Record]:
    """Batches and records of a binary stream, in log order (see the module docstring)."""
    pos_p = ffi.new("long[1]")
    rows_p = ffi.new("long[1]")
    line_no = 1  # the number of the next line to be consumed
    batch = Batch(line_no)
    tail = b""
    eof = False
    while not eof:
        data = stream.read(chunk)
        eof = not data
        buf = tail + data if tail else data
        if eof:
            if not buf:
                break
            if not buf.endswith(b"\n"):
                buf += b"\n"
        pos = 0
        consumed_lines = 0
        while True:
            if batch.n == 0:
                batch.first_line = line_no
            pos_p[0] = pos
            rows_p[0] = batch.n
            a = batch._arrays
            status = lib.kmmio_scan(
                buf, len(buf), pos_p, rows_p, ROWS,
                a["kind"], a["width"], a["ts"], a["map_id"], a["phys"], a["value"], a["pc"], a["tid"],
            )  # fmt: skip
            done = rows_p[0] - batch.n
            batch.n = rows_p[0]
            line_no += done
            consumed_lines += done
            pos = pos_p[0]
            if status == _FULL:
                yield batch
                batch = Batch(line_no)
                continue
            if status == _NEED_MORE:
                break
            end = buf.index(b"\n", pos)
            rec = parse_line(buf[pos:end].decode("utf-8", "replace"), line_no)
            pos = end + 1
            if isinstance(rec, Access):
                if rec.width > MAX_WIDTH:
                    raise TraceFormatError(line_no, f"width {rec.width} is more than {MAX_WIDTH} bytes")
                if batch.n == 0:
                    batch.first_line = line_no
                batch.append(rec)
                line_no += 1
                consumed_lines += 1
                if batch.full():
                    yield batch
                    batch = Batch(line_no)
                continue
            line_no += 1
            consumed_lines += 1
            if rec is None:
                if batch.n:  # rows stay consecutive lines
                    yield batch
                    batch = Batch(line_no)
                continue
            if batch.n:
                yield batch
                batch = Batch(line_no)
            yield rec
        tail = buf[pos:]
        if progress is not None:
            progress.advance(len(data), consumed_lines)
    if batch.n:
        yield batch
