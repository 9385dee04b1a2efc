"""``kmmio summary``: a log at a glance, one row per register (or address), polling loops folded.

**Rows.**  Every access (``R``/``W`` line) is counted on a *key* ``(kind, width, map id,
phys)``; keys are then gathered into rows:

* with register maps, the keys whose access hits a register (its first one, as
  :attr:`kmmio.maps.Decoded.register` names it, whichever map id it came through) make
  that register's row: a register read and written at several widths or byte offsets is
  one row (``widths 4,8``);
* every other key is counted on its address: one row per ``(map id, phys)``.

A row holds reads, writes, the widths used, the number of *distinct values written* (the
different numbers written to the row, whatever the width or offset of the write; exact,
values wider than 64 bits included), the first and last value (of any access, read or
written) with their time and line, the number of threads, and its polling runs (how many,
the reads they hold, the longest).  Rows are sorted by accesses (reads + writes),
most first, then by first line.

**Polling runs.**  A polling run is a maximal sequence of consecutive accesses of one
thread that are all reads of the same ``(map id, phys, width)``: other threads' accesses
in between do not end it; any other access of the thread does (a write, a read elsewhere
or at another width), and so do its ``UNKNOWN`` faults and the kernel reaching traced
memory for its syscalls (``MARK ... syscall ... tid T``).  Other records (``MAP``,
``MARK`` text...) do not.  A run of at least :data:`MIN_RUN` (3) reads is *folded*: shown
as one line with its count, its first value, its last value (the one that ended the
wait, when it differs) and the time from its first to its last read::

    R tdev.STATUS x10,231 0x0 -> 0x1 after 1.203 s

The longest :data:`TOP_RUNS` runs are kept (``--runs N``; ties: the earlier one), longest
first.  ``kmmio diff`` folds reads the same way.

**How.**  The per-access work is compiled (``_summary_impl.c`` through
``kmmio.tools._tools``): the tools' reader (:func:`kmmio.tools.scan.scan`) hands it each
batch of columns; Python sees only the few rows whose value is wider than 64 bits (the C
side sees their low bits: their exact values are kept here) and the other records.  At
the end the keys (a few per address touched) are named and grouped here, and the C side
counts distinct values and threads over the groups exactly.
"""

from __future__ import annotations

import re
import struct
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from kmmio.maps.format import Decoder
from kmmio.maps.model import RegisterMap
from kmmio.tools._tools import ffi, lib
from kmmio.tools.scan import Batch, Progress, scan
from kmmio.trace.records import KernelAccess, Map, Mark, Record, Unknown

#: The fewest reads a polling run needs to be folded (and counted as one).
MIN_RUN = 3
#: How many polling runs are kept and shown by default (the longest).
TOP_RUNS = 20

#: ``kmmio_sum_entry`` and ``kmmio_sum_run``: every field 64 bits (the map id signed).
_ENTRY = struct.Struct("<QQqQ12Q")
_RUN = struct.Struct("<9Q")
_LOST = re.compile(r"Lost (\d+) events\.")

#: A key: kind (0 read, 1 write), width, map id, phys.
Key = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Row:
    """One register (``register`` its path, ``phys`` its address) or, when ``register`` is
    ``None``, one address ``phys`` of map ``maps[0]``."""

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

    @property
    def count(self) -> int:
        return self.reads + self.writes


@dataclass(frozen=True, slots=True)
class Run:
    """A folded polling run: ``count`` reads of ``width`` bytes at ``phys`` (map
    ``map_id``, register ``register``) by thread ``tid``."""

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
class Summary:
    """The rows (sorted), the longest runs (longest first) and totals."""

    rows: list[Row] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    reads: int = 0
    writes: int = 0
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


class Aggregator:
    """Accumulates batches and records; :meth:`result` names and groups them.

    ``top`` runs of at least ``min_run`` reads are kept.  Memory does not grow with the
    log's length, only with what it holds: about 140 bytes per key, 20 to 45 per distinct
    (key, value written) and per (key, thread), and per value wider than 64 bits written
    (those are kept here, in Python) its size.
    """

    #: Wide read values kept before those no run needs are forgotten (doubles as needed).
    WIDE_KEEP = 4096

    def __init__(self, top: int = TOP_RUNS, min_run: int = MIN_RUN) -> None:
        if min_run < 2:
            raise ValueError("a polling run is at least 2 reads")
        self.top = max(0, min(top, 1 << 40))
        handle = lib.kmmio_sum_new(min_run, self.top)
        if handle == ffi.NULL:
            raise MemoryError("kmmio summary: out of memory")
        self._h: Any = ffi.gc(handle, lib.kmmio_sum_free)
        self.min_run = min_run
        self.mappings = 0
        self.lost = 0
        self._done = False
        # Rows whose value is wider than 64 bits: per key, (first line, value, last line,
        # value); the distinct (key, value) written; the read values runs may still show.
        self._wide_ends: dict[Key, list[int]] = {}
        self._wide_written: set[tuple[Key, int]] = set()
        self._wide_reads: dict[int, int] = {}
        self._wide_limit = self.WIDE_KEEP

    def add(self, batch: Batch) -> None:
        """Count a batch of accesses."""
        if self._done:
            raise RuntimeError("the summary is finished")
        skip: Any = ffi.NULL
        nskip = 0
        if batch.wide:
            rows = sorted(batch.wide)
            self._note_wide(batch, rows)
            skip = ffi.from_buffer("uint32_t[]", array("I", rows))
            nskip = len(rows)
        rc = lib.kmmio_sum_add(
            self._h,
            batch.cdata("kind"),
            batch.cdata("width"),
            batch.cdata("ts"),
            batch.cdata("map_id"),
            batch.cdata("phys"),
            batch.cdata("value"),
            batch.cdata("tid"),
            batch.n,
            batch.first_line,
            skip,
            nskip,
        )
        _check(rc)
        if len(self._wide_reads) > self._wide_limit:
            self._prune_wide_reads()

    def note(self, rec: Record) -> None:
        """A record that is not an access: mappings, lost events, and what ends a run."""
        if isinstance(rec, Map):
            self.mappings += 1
        elif isinstance(rec, KernelAccess):
            _check(lib.kmmio_sum_break(self._h, rec.tid & 0xFFFF_FFFF))
        elif isinstance(rec, Unknown):
            _check(lib.kmmio_sum_break(self._h, rec.pid & 0xFFFF_FFFF))
        elif isinstance(rec, Mark):
            m = _LOST.fullmatch(rec.text.strip())
            if m:
                self.lost += int(m.group(1))

    def _note_wide(self, batch: Batch, rows: list[int]) -> None:
        kinds, widths, maps, physs = batch.kind, batch.width, batch.map_id, batch.phys
        first = batch.first_line
        for row in rows:
            value = batch.wide[row]
            key: Key = (kinds[row], widths[row], maps[row], physs[row])
            line = first + row
            ends = self._wide_ends.get(key)
            if ends is None:
                self._wide_ends[key] = [line, value, line, value]
            else:
                ends[2], ends[3] = line, value
            if key[0]:
                self._wide_written.add((key, value))
            else:
                self._wide_reads[line] = value

    def _prune_wide_reads(self) -> None:
        """Forget the wide read values no open or kept run begins or ends with."""
        need = lib.kmmio_sum_live(self._h, ffi.NULL, 0)
        buf = ffi.new("uint64_t[]", max(1, need))
        got = lib.kmmio_sum_live(self._h, buf, need)
        live = set(ffi.unpack(buf, got))
        self._wide_reads = {k: v for k, v in self._wide_reads.items() if k in live}
        self._wide_limit = max(self.WIDE_KEEP, 2 * len(self._wide_reads))

    def result(self, regmap: RegisterMap | None = None) -> Summary:
        """End the open runs and build the summary (once: the aggregator is spent)."""
        if self._done:
            raise RuntimeError("the summary is finished")
        self._done = True
        _check(lib.kmmio_sum_finish(self._h))
        n = lib.kmmio_sum_nentries(self._h)
        raw = bytes(ffi.buffer(lib.kmmio_sum_entries(self._h), n * _ENTRY.size)) if n else b""
        entries = list(_ENTRY.iter_unpack(raw))
        labels, group_of = _group(entries, regmap)
        ng = len(labels)
        groups = array("I", group_of)
        distinct = array("Q", bytes(8 * max(1, ng)))
        threads = array("Q", bytes(8 * max(1, ng)))
        _check(
            lib.kmmio_sum_group(
                self._h,
                ffi.from_buffer("uint32_t[]", groups) if n else ffi.NULL,
                ng,
                ffi.from_buffer("uint64_t[]", distinct),
                ffi.from_buffer("uint64_t[]", threads),
            )
        )
        if self._wide_written:
            index = {e[:4]: i for i, e in enumerate(entries)}
            extra = {(group_of[index[key]], value) for key, value in self._wide_written}
            for g, _ in extra:
                distinct[g] += 1
        summary = Summary(mappings=self.mappings, lost=self.lost, min_run=self.min_run)
        summary.rows = self._rows(entries, labels, group_of, distinct, threads)
        summary.runs = self._runs(entries, labels, group_of)
        for e in entries:
            if e[0]:
                summary.writes += e[4]
            else:
                summary.reads += e[4]
            summary.total_runs += e[13]
            summary.polled += e[14]
        if summary.rows:  # the times of the first and the last access
            summary.first_ts = min(summary.rows, key=lambda r: r.first_line).first_ts
            summary.last_ts = max(summary.rows, key=lambda r: r.last_line).last_ts
        return summary

    def _ends(self, e: tuple[int, ...]) -> tuple[int, int]:
        """An entry's first and last values, wide ones whole."""
        first, last = e[7], e[8]
        ends = self._wide_ends.get((e[0], e[1], e[2], e[3]))
        if ends is not None:
            if ends[0] == e[9]:
                first = ends[1]
            if ends[2] == e[10]:
                last = ends[3]
        return first, last

    def _rows(
        self,
        entries: list[tuple[int, ...]],
        labels: list[tuple[str | None, int]],
        group_of: list[int],
        distinct: array[int],
        threads: array[int],
    ) -> list[Row]:
        acc: list[dict[str, Any]] = [
            {"maps": set(), "widths": set(), "reads": 0, "writes": 0, "runs": 0, "polled": 0, "longest": 0}
            for _ in labels
        ]
        for i, e in enumerate(entries):
            kind, width, map_id, _phys, count, first_ts, last_ts = e[:7]
            first_line, last_line, runs, polled, longest = e[9], e[10], e[13], e[14], e[15]
            a = acc[group_of[i]]
            a["maps"].add(map_id)
            a["widths"].add(width)
            a["writes" if kind else "reads"] += count
            a["runs"] += runs
            a["polled"] += polled
            a["longest"] = max(a["longest"], longest)
            first_value, last_value = self._ends(e)
            if "first" not in a or first_line < a["first"][0]:
                a["first"] = (first_line, first_ts, first_value)
            if "last" not in a or last_line > a["last"][0]:
                a["last"] = (last_line, last_ts, last_value)
        rows = [
            Row(
                register=name,
                phys=phys,
                maps=tuple(sorted(a["maps"])),
                reads=a["reads"],
                writes=a["writes"],
                widths=tuple(sorted(a["widths"])),
                distinct=distinct[g],
                first_value=a["first"][2],
                last_value=a["last"][2],
                first_ts=a["first"][1],
                last_ts=a["last"][1],
                first_line=a["first"][0],
                last_line=a["last"][0],
                threads=threads[g],
                runs=a["runs"],
                polled=a["polled"],
                longest=a["longest"],
            )
            for g, ((name, phys), a) in enumerate(zip(labels, acc, strict=True))
        ]
        rows.sort(key=lambda r: (-r.count, r.first_line))
        return rows

    def _runs(
        self, entries: list[tuple[int, ...]], labels: list[tuple[str | None, int]], group_of: list[int]
    ) -> list[Run]:
        kept = lib.kmmio_sum_nruns(self._h)
        buf = ffi.new("kmmio_sum_run[]", max(1, kept))
        got = lib.kmmio_sum_runs(self._h, buf, kept)
        _check(min(got, 0) and -2)
        raw = bytes(ffi.buffer(buf, got * _RUN.size)) if got else b""
        runs = []
        for (
            entry,
            tid,
            count,
            first_ts,
            last_ts,
            first_value,
            last_value,
            first_line,
            last_line,
        ) in _RUN.iter_unpack(raw):
            e = entries[entry]
            runs.append(
                Run(
                    register=labels[group_of[entry]][0],
                    map_id=e[2],
                    phys=e[3],
                    width=e[1],
                    tid=tid,
                    count=count,
                    first_value=self._wide_reads.get(first_line, first_value),
                    last_value=self._wide_reads.get(last_line, last_value),
                    first_ts=first_ts,
                    last_ts=last_ts,
                    first_line=first_line,
                    last_line=last_line,
                )
            )
        return runs


def _check(rc: int) -> None:
    if rc == -1:
        raise MemoryError("kmmio summary: out of memory")
    if rc < 0:
        raise RuntimeError(f"kmmio summary: the aggregator refused a call ({rc})")


def _group(
    entries: list[tuple[int, ...]], regmap: RegisterMap | None
) -> tuple[list[tuple[str | None, int]], list[int]]:
    """Each entry's row: ``(labels, group_of)``, a label being ``(register path or None,
    address)``: by register where the map names one, else by ``(map id, phys)``."""
    decoder = Decoder(regmap) if regmap is not None else None
    index: dict[object, int] = {}
    labels: list[tuple[str | None, int]] = []
    group_of: list[int] = []
    for e in entries:
        kind, width, map_id, phys = e[0], e[1], e[2], e[3]
        name: str | None = None
        address = phys
        if decoder is not None:
            d = decoder.decode_at("W" if kind else "R", phys, width, 0)
            if d.registers:
                reg = d.registers[0].register
                name, address = reg.path, reg.address
        key: object = name if name is not None else (map_id, phys)
        g = index.get(key)
        if g is None:
            g = index[key] = len(labels)
            labels.append((name, address))
        group_of.append(g)
    return labels, group_of


def aggregate(items: Iterable[Batch | Record], top: int = TOP_RUNS, min_run: int = MIN_RUN) -> Aggregator:
    """An aggregator fed with what :func:`~kmmio.tools.scan.scan` yields."""
    agg = Aggregator(top, min_run)
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
) -> Summary:
    """The summary of a log read from a binary stream.  A malformed line raises
    :class:`~kmmio.errors.TraceFormatError` with its number."""
    return aggregate(scan(stream, progress=progress), top, min_run).result(regmap)
