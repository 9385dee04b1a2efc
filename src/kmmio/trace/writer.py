"""Records to mmiotrace text lines (the kernel's ``trace_mmiotrace.c`` printers)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TextIO

from kmmio.errors import LogWriteError
from kmmio.trace.records import (
    Access,
    KernelAccess,
    Kind,
    Map,
    MapInfo,
    Mark,
    PciDev,
    Record,
    Unknown,
    Unmap,
    Version,
)


def format_ts(ts_us: int) -> str:
    """``1037681661`` µs → ``1037.681661`` (seconds unpadded, micros always six digits)."""
    return f"{ts_us // 1_000_000}.{ts_us % 1_000_000:06d}"


#: An access line's fields: ``"R"`` or ``"W"``, width, timestamp (µs), map id, phys,
#: value, pc, pid.
AccessRow = tuple[str, int, int, int, int, int, int, int]

#: An ``R``/``W`` line: kind, width, seconds, microseconds, map id, phys, value, pc, pid.
_ACCESS = "%s %d %d.%06d %d %#x %#x %#x %d"
_ACCESS_LINE = _ACCESS + "\n"


def format_access(
    kind: str, width: int, ts: int, map_id: int, phys: int, value: int, pc: int, pid: int
) -> str:
    """An ``R``/``W`` line from its fields (``kind`` is ``"R"`` or ``"W"``)."""
    return _ACCESS % (kind, width, ts // 1_000_000, ts % 1_000_000, map_id, phys, value, pc, pid)


def format_record(rec: Record) -> str:
    """One record as one log line, without the newline."""
    if isinstance(rec, Access):  # nearly every line: first
        kind = "R" if rec.kind is Kind.READ else "W"
        return format_access(kind, rec.width, rec.ts, rec.map_id, rec.phys, rec.value, rec.pc, rec.pid)
    match rec:
        case Map():
            return (
                f"MAP {format_ts(rec.ts)} {rec.map_id} {rec.phys:#x} {rec.virt:#x} "
                f"{rec.length:#x} {rec.pc:#x} {rec.pid}"
            )
        case Unmap():
            return f"UNMAP {format_ts(rec.ts)} {rec.map_id} {rec.pc:#x} {rec.pid}"
        case Unknown():
            code = ",".join(f"{b:02x}" for b in rec.code)
            return f"UNKNOWN {format_ts(rec.ts)} {rec.map_id} {rec.phys:#x} {code} {rec.pc:#x} {rec.pid}"
        case Mark() | KernelAccess() | MapInfo():
            return f"MARK {format_ts(rec.ts)} {rec.text}"
        case Version():
            return f"VERSION {rec.version}"
        case PciDev():
            starts = " ".join(f"{v:x}" for v in rec.starts)
            sizes = " ".join(f"{v:x}" for v in rec.sizes)
            return f"PCIDEV {rec.devfn:04x} {rec.vendor_device:08x} {rec.irq:x} {starts} {sizes} {rec.driver}"
    raise TypeError(f"not an mmiotrace record: {rec!r}")


#: What a log starts with unless a writer is told otherwise.
VERSION_HEADER: Record = Version()


class TraceWriter:
    """Writes records to a text stream, one line each, flushing as asked.

    ``header`` (by default ``VERSION 20070824``, which an mmiotrace log starts with; the
    tracer adds the ``PCIDEV`` lines) is written just before the first record, or by
    :meth:`write_header`: a writer that is given nothing (a trace refused before it
    started) writes nothing.  A ``Version`` written first takes the place of the header's
    ``Version``, the rest of the header following it; ``header=None`` writes none.

    ``flush_every`` lines are buffered at most, so a log stays whole up to a few records
    if the tracer is stopped, and memory stays flat however long the trace.
    """

    def __init__(
        self,
        stream: TextIO,
        flush_every: int = 256,
        header: Record | Sequence[Record] | None = VERSION_HEADER,
    ) -> None:
        self.stream = stream
        self.flush_every = flush_every
        self._pending = 0
        self.count = 0
        self._header: list[Record] = (
            [] if header is None else list(header) if isinstance(header, Sequence) else [header]
        )

    def write_header(self) -> None:
        """Write the header now, if it is not written yet (the log of an empty trace)."""
        header, self._header = self._header, []
        for rec in header:
            self.write(rec)

    def write(self, rec: Record) -> None:
        if isinstance(rec, Version) and any(isinstance(h, Version) for h in self._header):
            # The caller writes its own: one VERSION line, not two, and first.
            rest = [h for h in self._header if not isinstance(h, Version)]
            self._header = []
            self._put(format_record(rec) + "\n")
            for h in rest:
                self.write(h)
            return
        self._put(format_record(rec) + "\n")

    def write_accesses(self, rows: Iterable[AccessRow]) -> None:
        """The lines :meth:`write` gives ``Access(...)`` records, without building them:
        the tracer's per-access path, where every microsecond is the program's."""
        text = [
            _ACCESS_LINE % (kind, width, ts // 1_000_000, ts % 1_000_000, map_id, phys, value, pc, pid)
            for kind, width, ts, map_id, phys, value, pc, pid in rows
        ]
        self._put("".join(text), len(text))

    def write_lines(self, text: str, lines: int) -> None:
        """``lines`` whole log lines already formatted (newlines included): the access
        lines the compiled fast loop formats."""
        self._put(text, lines)

    def _put(self, text: str, lines: int = 1) -> None:
        """Write whole lines, newlines included."""
        if self._header:
            self.write_header()
        try:
            self.stream.write(text)
        except OSError as exc:
            raise LogWriteError(f"cannot write the log: {exc.strerror or exc}") from None
        self.count += lines
        self._pending += lines
        if self._pending >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Push buffered lines out; a reader that went away (closed pipe) is no error."""
        self._pending = 0
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
        except OSError as exc:
            raise LogWriteError(f"cannot write the log: {exc.strerror or exc}") from None
