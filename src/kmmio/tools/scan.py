"""The tools' reader: a log, streamed in chunks, as columns of accesses and records.

:func:`scan` yields, in log order, a :class:`Batch` for each run of consecutive ``R``/``W``
lines (columns over C arrays, filled by the compiled ``kmmio_scan`` without a Python step
per line) and a :mod:`kmmio.trace` record for every other line.  Lines the compiled
scanner does not take as plain accesses (other records, the kernel's ``trace``-file form,
malformed lines, numbers out of range) go through :func:`kmmio.trace.parse_line`, so the
records and errors are the reader's: a malformed line raises
:class:`~kmmio.errors.TraceFormatError` with its number.  On top of the reader's checks
(every number in range, see :mod:`kmmio.trace.reader`), an access's value must fit its
width (``value < 2**(8 * width)``), so no column ever truncates anything.

Values wider than 64 bits (widths 16, 32, 64: SSE, AVX, AVX-512) are parsed by the
compiled scanner too: the ``value`` column holds their low 64 bits and the batch's wide
area their whole bytes (:meth:`Batch.wide_value`, :attr:`Batch.wide_offsets`,
:attr:`Batch.wide_bytes`).

A line longer than ``MAX_LINE`` bytes (1 MiB) is an error as soon as that many bytes
came without a newline, so memory is bounded by one chunk of text, one line and one batch
of columns, whatever the log's (or a line's) length.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import IO, Any, Literal, Protocol

from kmmio.errors import TraceFormatError
from kmmio.tools._tools import ffi, lib
from kmmio.trace.reader import MAX_LINE, MAX_WIDTH, parse_line
from kmmio.trace.records import Access, Kind, Record

__all__ = ["CHUNK", "COLUMNS", "MAX_LINE", "MAX_WIDTH", "ROWS", "Batch", "Progress", "scan"]

#: Bytes read at a time.
CHUNK = 1 << 22
#: Rows per batch.
ROWS = 1 << 16

#: Column arrays are filled before they are read: no need to clear them.
_new = ffi.new_allocator(should_clear_after_alloc=False)

_FULL, _NEED_MORE, _OTHER = 0, 1, 2
_TOO_LONG = f"the line is longer than {MAX_LINE:,} bytes"

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
    ``tid``, each a memoryview of ``n`` items; row ``i`` is line ``first_line + i``.

    The whole values of rows wider than 8 bytes are in the wide area, laid out as Arrow's
    binary column: row ``i``'s bytes (little-endian, ``width`` of them; none for a row
    of 8 bytes or less) are ``wide_bytes[wide_offsets[i]:wide_offsets[i + 1]]``.
    :meth:`wide_value` reads one, :attr:`wide` gives those over 64 bits as a dict (built
    on first use)."""

    __slots__ = ("_arrays", "_wide", "first_line", "n")

    def __init__(self, first_line: int) -> None:
        self._arrays: dict[str, Any] = {
            name: _new(f"{ctype}[{ROWS}]") for name, (ctype, _) in COLUMNS.items()
        }
        self._arrays["wide_off"] = _new(f"uint32_t[{ROWS + 1}]")
        self._arrays["wide_data"] = _new(f"uint8_t[{ROWS * MAX_WIDTH}]")
        self._arrays["wide_off"][0] = 0
        self._wide: dict[int, int] | None = None
        self.n = 0
        self.first_line = first_line

    @property
    def has_wide(self) -> bool:
        """Whether a row is wider than 8 bytes."""
        return bool(self._arrays["wide_off"][self.n])

    @property
    def wide_offsets(self) -> memoryview:
        """``n + 1`` offsets (``'I'``) into :attr:`wide_bytes`, one per row and the end."""
        raw = memoryview(ffi.buffer(self._arrays["wide_off"], (self.n + 1) * 4))
        return raw.cast("I")

    @property
    def wide_bytes(self) -> memoryview:
        """The whole values of the rows wider than 8 bytes, one after the other."""
        return memoryview(ffi.buffer(self._arrays["wide_data"], self._arrays["wide_off"][self.n]))

    def wide_value(self, i: int) -> int:
        """Row ``i``'s whole value."""
        off = self._arrays["wide_off"]
        start, end = off[i], off[i + 1]
        if start == end:
            return int(self._arrays["value"][i])
        return int.from_bytes(ffi.buffer(self._arrays["wide_data"] + start, end - start), "little")

    @property
    def wide(self) -> dict[int, int]:
        """Row → whole value, for the rows whose value is wider than 64 bits (computed
        once; the other rows' value is the ``value`` column's)."""
        if self._wide is None:
            self._wide = {}
            if self.has_wide:
                off = self.wide_offsets.tolist()
                data = bytes(self.wide_bytes)
                frm = int.from_bytes
                for i, (a, b) in enumerate(pairwise(off)):
                    if a != b and (v := frm(data[a:b], "little")) >> 64:
                        self._wide[i] = v
        return self._wide

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
        """One access the compiled scanner left to the reader (its numbers in range: the
        reader checked them, and :func:`scan` the value against the width)."""
        i = self.n
        a = self._arrays
        a["kind"][i] = 1 if acc.kind is Kind.WRITE else 0
        a["width"][i] = acc.width
        a["ts"][i] = acc.ts
        a["map_id"][i] = acc.map_id
        a["phys"][i] = acc.phys
        a["value"][i] = acc.value & 0xFFFF_FFFF_FFFF_FFFF
        a["pc"][i] = acc.pc
        a["tid"][i] = acc.pid
        off = a["wide_off"][i]
        if acc.width > 8:
            ffi.memmove(a["wide_data"] + off, acc.value.to_bytes(acc.width, "little"), acc.width)
            off += acc.width
        a["wide_off"][i + 1] = off
        self._wide = None
        self.n = i + 1

    def full(self) -> bool:
        return self.n >= ROWS

    def accesses(self) -> Iterator[Access]:
        """The rows as records (a slow path, for tests and small uses)."""
        cols = [self.column(name) for name in COLUMNS]
        wide = self.wide
        for i, (k, w, ts, m, ph, v, pc, tid) in enumerate(zip(*cols, strict=True)):
            yield Access(Kind.WRITE if k else Kind.READ, w, ts, m, ph, wide.get(i, v), pc, tid)


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
                buf, len(buf), pos_p, rows_p, ROWS, MAX_LINE,
                a["kind"], a["width"], a["ts"], a["map_id"], a["phys"], a["value"], a["pc"], a["tid"],
                a["wide_off"], a["wide_data"],
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
            if end - pos > MAX_LINE and end - pos - (buf[end - 1] == 13) > MAX_LINE:
                raise TraceFormatError(line_no, _TOO_LONG)
            rec = parse_line(buf[pos:end].decode("utf-8", "replace"), line_no)
            pos = end + 1
            if isinstance(rec, Access):
                if rec.value >> (8 * rec.width):
                    raise TraceFormatError(
                        line_no, f"value {rec.value:#x} is wider than the access ({rec.width} bytes)"
                    )
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
        if len(buf) - pos > MAX_LINE + 1:  # no newline in more than MAX_LINE bytes (and a CR)
            raise TraceFormatError(line_no, _TOO_LONG)
        tail = buf[pos:]
        if progress is not None:
            progress.advance(len(data), consumed_lines)
    if batch.n:
        yield batch
