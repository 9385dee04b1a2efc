"""``kmmio summary``: a log at a glance, one row per register (or address), polling loops folded.

**Rows.**  With register maps, an access that hits a register (its first one, as
:attr:`kmmio.maps.Decoded.register` names it) is counted on that register's row, whatever
its width, byte offset or map id; every other access is counted on its physical address:
one row per address, whatever map ids it came through (a BAR unmapped and mapped again
has a new map id; the ``maps`` column lists them).  A row holds reads, writes, the widths
used, the number of *distinct values written* (the different numbers written to the row,
whatever the width or offset of the write), the first and last value (of any access,
read or written) with their time and line, the number of threads, and its polling runs
(how many, the reads they hold, the longest).  Rows are sorted by accesses (reads +
writes), most first, then by first line.

**Caps.**  Distinct values and threads are counted exactly up to :data:`DISTINCT_CAP` and
:data:`THREADS_CAP` per row (65,536); a row that reaches the cap shows the cap as a lower
bound: ``≥65,536`` in the table, ``"distinct_capped": true`` (``threads_capped``) in JSON.
A row lists at most :data:`MAPS_CAP` (8) map ids (``8+``, ``"maps_capped": true``).
Values wider than 64 bits are told apart by a 64-bit hash of their bytes (two different
ones colliding, about 2**-64 per pair, would count as one); their first and last values
are kept whole.

**Polling runs.**  A polling run is a maximal sequence of consecutive accesses of one
thread that are all reads of the same row at the same width: with a map, the same
register (at any byte offset within it); without, the same address (whatever its map
id).  Other threads' accesses in between do not end it; any other access of the thread
does (a write, a read of another row or at another width), and so do its ``UNKNOWN``
faults and the kernel reaching traced memory for its syscalls (``MARK ... syscall ...
tid T``; a tid above 32 bits is no traced thread's: it ends nothing).  Other records
(``MAP``, ``MARK`` text...) do not.  A run of at least :data:`MIN_RUN` (3) reads is
*folded*: shown as one line with its count, its first value, its last value (the one that
ended the wait, when it differs) and the time from its first to its last read::

    R tdev.STATUS x10,231 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 42, lines 3-10233)

The longest :data:`TOP_RUNS` runs are kept (``--runs N``; ties: the earlier one), longest
first; a run's ``map`` is the map id of its first read.

**Times** are the log's own ``seconds.micros`` text (``12.000104``), in JSON too
(strings: exact, where a float would round).

**How, and memory.**  Everything per access is compiled (``_summary_impl.c`` and
``_summary_out.c`` through ``kmmio.tools._tools``): the tools' reader
(:func:`kmmio.tools.scan.scan`) hands each batch of columns to the C side, which keeps the
rows in a table of at most :data:`BUDGET` bytes, spills it to a temporary file (sorted by
address; in ``$TMPDIR``) whenever it is full, merges the spilled parts at the end (a log
whose table never filled needs no file) and streams the rows,
ordered, back: as records (:meth:`Summary.rows`, a few at a time) or as the table's or
JSON's text (:meth:`Summary.chunks`).  Python holds no per-row state: memory is bounded by
the budget (twice: the table while reading, the ordered rows while printing, not at the
same time), the register map and the kept runs, whatever the log holds.  With a map, the
register an access hits is settled in C when it lies within one register that overlaps no
other; other accesses to registers (straddling two, or where registers overlap) are
decoded here once per (kind, width, address).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from kmmio.maps.format import Decoder
from kmmio.maps.model import Register, RegisterMap
from kmmio.tools._tools import ffi, lib
from kmmio.tools.scan import Batch, Progress, scan
from kmmio.trace.records import KernelAccess, Map, Mark, Record, Unknown

#: The fewest reads a polling run needs to be folded (and counted as one).
MIN_RUN = 3
#: How many polling runs are kept and shown by default (the longest).
TOP_RUNS = 20
#: Distinct values written, threads and map ids counted exactly per row up to these.
DISTINCT_CAP = 65536
THREADS_CAP = 65536
MAPS_CAP = 8
#: Bytes the compiled table (and, at the end, the ordered rows) may take before spilling.
BUDGET = 160 << 20
#: Rows handed to Python at a time by :meth:`Summary.rows`.
ROW_CHUNK = 1024
#: Bytes of text asked of the compiled side at a time by :meth:`Summary.chunks`.
TEXT_CHUNK = 1 << 20
#: The widest access (the log's widest, AVX-512): the compiled side's wide values' size.
MAX_WIDTH = 64

_FIRST_WIDE, _LAST_WIDE, _DISTINCT_CAPPED, _THREADS_CAPPED, _MAPS_CAPPED = 1, 2, 4, 8, 16
_TEXT, _JSON = 1, 2
_LOST = re.compile(r"Lost (\d+) events\.")


class SpillError(OSError):
    """A temporary file could not be written (``filename``: the directory)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One register (``register`` its path, ``phys`` its address) or, when ``register`` is
    ``None``, one address ``phys``; ``maps`` the map ids it was accessed through."""

    register: str | None
    phys: int
    maps: tuple[int, ...]
    reads: int
    writes: int
    widths: tuple[int, ...]
    distinct: int
    first_value: int
    last_value: int
    first_ts: int
    last_ts: int
    first_line: int
    last_line: int
    threads: int
    runs: int
    polled: int
    longest: int
    distinct_capped: bool = False
    threads_capped: bool = False
    maps_capped: bool = False

    @property
    def count(self) -> int:
        return self.reads + self.writes


@dataclass(frozen=True, slots=True)
class Run:
    """A folded polling run: ``count`` reads of ``width`` bytes of a row (register
    ``register`` at ``phys``, or the address ``phys``) by thread ``tid``, the first
    through map ``map_id``."""

    register: str | None
    map_id: int
    phys: int
    width: int
    tid: int
    count: int
    first_value: int
    last_value: int
    first_ts: int
    last_ts: int
    first_line: int
    last_line: int

    @property
    def micros(self) -> int:
        """Microseconds from the first read to the last."""
        return self.last_ts - self.first_ts


@dataclass(slots=True)
class Totals:
    """A summary's totals."""

    reads: int = 0
    writes: int = 0
    rows: int = 0
    #: Polling runs folded in all (not only those kept), and the reads they hold.
    total_runs: int = 0
    polled: int = 0
    #: ``MAP`` lines, and the events ``MARK ... Lost N events.`` lines say were lost.
    mappings: int = 0
    lost: int = 0
    #: The times of the first and the last access (by line).
    first_ts: int | None = None
    last_ts: int | None = None
    min_run: int = MIN_RUN

    @property
    def accesses(self) -> int:
        return self.reads + self.writes


class Summary:
    """The totals, the longest runs (longest first) and the rows, streamed from the
    compiled side in order each time they are asked for (never all held here)."""

    def __init__(self, agg: Aggregator, totals: Totals, runs: list[Run]) -> None:
        self._agg = agg
        self.totals = totals
        self.runs = runs

    def rows(self) -> Iterator[Row]:
        """The rows, most accessed first, :data:`ROW_CHUNK` at a time from the compiled
        side (starting over at each call; one iteration at a time)."""
        return self._agg._rows()

    def chunks(self, as_json: bool = False) -> Iterator[bytes]:
        """The text table (its header, then a line per row) or the JSON rows (a line
        each), as pieces of whole lines (UTF-8)."""
        return self._agg._chunks(_JSON if as_json else _TEXT)

    @property
    def spills(self) -> int:
        """How many times the table was spilled to the temporary file while reading."""
        return self._agg.stats()["spills"]


class Aggregator:
    """Accumulates batches and records; :meth:`result` ends them (once).

    ``top`` runs of at least ``min_run`` reads are kept; ``regmap`` names the registers;
    ``budget`` bytes (default :data:`BUDGET`) bound the compiled table (then it spills to
    a file in ``tmpdir``; 0, for tests: before every access); ``caps`` are the
    distinct-values, threads and map-ids caps (default: :data:`DISTINCT_CAP`,
    :data:`THREADS_CAP`, :data:`MAPS_CAP`).
    """

    def __init__(
        self,
        top: int = TOP_RUNS,
        min_run: int = MIN_RUN,
        regmap: RegisterMap | None = None,
        *,
        budget: int | None = None,
        caps: tuple[int, int, int] | None = None,
        tmpdir: str | None = None,
    ) -> None:
        if min_run < 2:
            raise ValueError("a polling run is at least 2 reads")
        caps = caps or (DISTINCT_CAP, THREADS_CAP, MAPS_CAP)
        budget = BUDGET if budget is None else budget
        if not 1 <= caps[2] <= MAPS_CAP or min(caps) < 1:
            raise ValueError(f"caps must be positive, the map ids' at most {MAPS_CAP}")
        self.top = max(0, min(top, 1 << 40))
        self.tmpdir = tmpdir or tempfile.gettempdir()
        handle = lib.kmmio_sum_new(min_run, self.top, caps[0], caps[1], caps[2], budget, self.tmpdir.encode())
        if handle == ffi.NULL:
            raise MemoryError("kmmio summary: out of memory")
        self._h: Any = ffi.gc(handle, lib.kmmio_sum_free)
        self.min_run = min_run
        self.mappings = 0
        self.lost = 0
        self._done = False
        self._names: list[str] = []
        self._addresses: list[int] = []
        self._index: dict[Register, int] = {}
        self._decoder = Decoder(regmap) if regmap is not None else None
        if regmap is not None:
            self._set_map(regmap)

    def _set_map(self, regmap: RegisterMap) -> None:
        """Give the compiled side the registers, and the address ranges where one register
        alone settles an access (``reg``) or the decoder must (``-1``)."""
        regs = regmap.registers
        self._names = [r.path for r in regs]
        self._addresses = [r.address for r in regs]
        self._index = {r: i for i, r in enumerate(regs)}
        starts: list[int] = []
        ends: list[int] = []
        owner: list[int] = []
        for i, r in enumerate(regs):  # sorted by address: clusters of overlapping registers
            end = r.address + max(1, r.size)
            if starts and r.address < ends[-1]:
                ends[-1] = max(ends[-1], end)
                owner[-1] = -1
            else:
                starts.append(r.address)
                ends.append(end)
                owner.append(i)
        names = b"".join(n.encode() + b"\0" for n in self._names)
        rc = lib.kmmio_sum_set_map(
            self._h,
            len(regs),
            names,
            ffi.new("uint64_t[]", [r.address for r in regs] or [0]),
            len(starts),
            ffi.new("uint64_t[]", starts or [0]),
            ffi.new("uint64_t[]", ends or [0]),
            ffi.new("int32_t[]", owner or [0]),
        )
        self._check(rc)

    def add(self, batch: Batch) -> None:
        """Count a batch of accesses."""
        if self._done:
            raise RuntimeError("the summary is finished")
        cols = [batch.cdata(name) for name in ("kind", "width", "ts", "map_id", "phys", "value", "tid")]
        wide = (batch.cdata("wide_off"), batch.cdata("wide_data"))
        start = 0
        while start < batch.n:
            done = lib.kmmio_sum_add(self._h, *cols, *wide, batch.n, start, batch.first_line)
            self._check(done)
            if done < batch.n:
                self._resolve()
            start = done

    def _resolve(self) -> None:
        """Name the register of the access the compiled side stopped at."""
        assert self._decoder is not None
        phys_p = ffi.new("uint64_t *")
        kw = lib.kmmio_sum_need(self._h, phys_p)
        kind, width, phys = kw >> 8, kw & 0xFF, int(phys_p[0])
        d = self._decoder.decode_at("W" if kind else "R", phys, width, 0)
        reg = self._index[d.registers[0].register] if d.registers else -1
        self._check(lib.kmmio_sum_resolve(self._h, kind, width, phys, reg))

    def note(self, rec: Record) -> None:
        """A record that is not an access: mappings, lost events, and what ends a run."""
        if isinstance(rec, Map):
            self.mappings += 1
        elif isinstance(rec, KernelAccess):
            self._check(lib.kmmio_sum_break(self._h, rec.tid))
        elif isinstance(rec, Unknown):
            self._check(lib.kmmio_sum_break(self._h, rec.pid))
        elif isinstance(rec, Mark):
            m = _LOST.fullmatch(rec.text.strip())
            if m:
                self.lost += int(m.group(1))

    def _check(self, rc: int) -> None:
        if rc >= 0:
            return
        if rc == -1:
            raise MemoryError("kmmio summary: out of memory")
        if rc == -3:
            err = lib.kmmio_sum_errno(self._h)
            raise SpillError(err, f"cannot write a temporary file: {_strerror(err)}", self.tmpdir)
        raise RuntimeError(f"kmmio summary: the aggregator refused a call ({rc})")

    def stats(self) -> dict[str, int]:
        """The compiled side's counters: ``spills`` (times the table went to the file
        while the log was read), ``segments`` (the parts merged at the end: the spills and
        the table's last content), ``peak_bytes`` (the most the table or the ordered rows
        took), ``rows``."""
        t = ffi.new("kmmio_sum_totals *")
        lib.kmmio_sum_totals_of(self._h, t)
        return {"spills": t.spills, "segments": t.segments, "peak_bytes": t.peak_bytes, "rows": t.rows}

    def result(self) -> Summary:
        """End the open runs, order the rows and return the summary (once)."""
        if self._done:
            raise RuntimeError("the summary is finished")
        self._done = True
        self._check(lib.kmmio_sum_finish(self._h))
        t = ffi.new("kmmio_sum_totals *")
        lib.kmmio_sum_totals_of(self._h, t)
        totals = Totals(
            reads=t.reads,
            writes=t.writes,
            rows=t.rows,
            total_runs=t.total_runs,
            polled=t.polled,
            mappings=self.mappings,
            lost=self.lost,
            first_ts=t.first_ts if t.any else None,
            last_ts=t.last_ts if t.any else None,
            min_run=self.min_run,
        )
        buf = ffi.new("kmmio_sum_run[]", max(1, min(self.top, t.total_runs)))
        got = lib.kmmio_sum_runs(self._h, buf, len(buf))
        self._check(got)
        runs = [self._run(buf[i]) for i in range(got)]
        return Summary(self, totals, runs)

    def _label(self, reg: int, key: int) -> tuple[str | None, int]:
        if reg:
            return self._names[key], self._addresses[key]
        return None, key

    def _run(self, r: Any) -> Run:
        name, phys = self._label(r.reg, r.key)
        first = _wide_int(r.first) if r.flags & _FIRST_WIDE else int(r.first_value)
        last = _wide_int(r.last) if r.flags & _LAST_WIDE else int(r.last_value)
        return Run(name, r.map_id, phys, r.width, r.tid, r.count, first, last,
                   r.first_ts, r.last_ts, r.first_line, r.last_line)  # fmt: skip

    def _rows(self) -> Iterator[Row]:
        self._check(lib.kmmio_sum_rewind(self._h))
        out = ffi.new("kmmio_sum_out[]", ROW_CHUNK)
        wide = ffi.new("uint8_t[]", ROW_CHUNK * 2 * MAX_WIDTH)
        while True:
            got = lib.kmmio_sum_rows(self._h, out, wide, ROW_CHUNK)
            self._check(got)
            if got == 0:
                return
            for i in range(got):
                yield self._row(out[i], wide, i)

    def _row(self, o: Any, wide: Any, i: int) -> Row:
        flags = o.flags
        base = i * 2 * MAX_WIDTH
        first = int(o.first_value)
        last = int(o.last_value)
        if flags & _FIRST_WIDE:
            first = int.from_bytes(ffi.buffer(wide + base, MAX_WIDTH), "little")
        if flags & _LAST_WIDE:
            last = int.from_bytes(ffi.buffer(wide + base + MAX_WIDTH, MAX_WIDTH), "little")
        widths = o.widths
        return Row(
            register=self._names[o.reg_index] if o.reg else None,
            phys=o.phys,
            maps=tuple(o.maps[j] for j in range(o.nmaps)),
            reads=o.reads,
            writes=o.writes,
            widths=tuple(w for w in range(1, MAX_WIDTH + 1) if widths >> (w - 1) & 1),
            distinct=o.distinct,
            first_value=first,
            last_value=last,
            first_ts=o.first_ts,
            last_ts=o.last_ts,
            first_line=o.first_line,
            last_line=o.last_line,
            threads=o.threads,
            runs=o.runs,
            polled=o.polled,
            longest=o.longest,
            distinct_capped=bool(flags & _DISTINCT_CAPPED),
            threads_capped=bool(flags & _THREADS_CAPPED),
            maps_capped=bool(flags & _MAPS_CAPPED),
        )

    def _chunks(self, mode: int) -> Iterator[bytes]:
        self._check(lib.kmmio_sum_rewind(self._h))
        size = TEXT_CHUNK
        buf = ffi.new("char[]", size)
        while True:
            got = lib.kmmio_sum_format(self._h, mode, buf, size)
            if got == -4:  # a line longer than the buffer (a very long register name)
                size *= 2
                buf = ffi.new("char[]", size)
                continue
            self._check(got)
            if got == 0:
                return
            yield ffi.buffer(buf, got)[:]


def _wide_int(data: Any) -> int:
    return int.from_bytes(bytes(data), "little")


def _strerror(err: int) -> str:
    import os

    return os.strerror(err) if err else "input/output error"


def aggregate(
    items: Iterable[Batch | Record],
    top: int = TOP_RUNS,
    min_run: int = MIN_RUN,
    regmap: RegisterMap | None = None,
    **options: Any,
) -> Aggregator:
    """An aggregator fed with what :func:`~kmmio.tools.scan.scan` yields."""
    agg = Aggregator(top, min_run, regmap, **options)
    for item in items:
        if isinstance(item, Batch):
            agg.add(item)
        else:
            agg.note(item)
    return agg


def summarize(
    stream: IO[bytes],
    regmap: RegisterMap | None = None,
    *,
    top: int = TOP_RUNS,
    min_run: int = MIN_RUN,
    progress: Progress | None = None,
    **options: Any,
) -> Summary:
    """The summary of a log read from a binary stream.  A malformed line raises
    :class:`~kmmio.errors.TraceFormatError` with its number; a temporary file that cannot
    be written, :class:`SpillError`."""
    return aggregate(scan(stream, progress=progress), top, min_run, regmap, **options).result()
