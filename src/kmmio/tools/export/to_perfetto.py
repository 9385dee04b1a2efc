"""A log as a Perfetto trace (``export --format perfetto``), for ui.perfetto.dev.

Tracks (``TrackDescriptor`` packets, each written just before its first event):

* ``tid N``, one per thread: an instant per access (``TYPE_INSTANT``, category ``read`` or
  ``write``), named after what it touched (``tdev.CTRL``, ``tdev.CTRL[23:8]``, or the
  address ``0xf7c00010`` without a map), with debug annotations ``value`` (hex text:
  values may be wider than 64 bits), ``width`` (bytes), ``pc`` and ``phys``; the thread's
  ``UNKNOWN`` records (category ``unknown``) and kernel accesses (``syscall write reads``,
  category ``syscall``) are instants there too;
* one counter track per register (or address) written, under a ``registers`` track: its
  value after each write (a register keeps the bits a narrower write did not reach; see
  :mod:`kmmio.tools.export.names`), as an integer up to 2**63 - 1 and as a (rounded)
  double beyond;
* ``mmiotrace``: an instant per ``MAP``, ``UNMAP`` and ``MARK`` line (its text as the
  name).  ``VERSION`` and ``PCIDEV`` lines have no time and are left out.  A plain ``MARK``
  whose timestamp is 0 is the kernel's (``MARK 0.000000 Lost N events.``: the kernel
  writes them without a time): it is placed at the timestamp of the last event before it,
  or, when it comes first, of the first event after it (up to ``HOLD`` such marks wait for
  one; with no event at all they stay at 0), so that it does not stretch the timeline
  back to 0.

Timestamps are the log's microseconds as nanoseconds on Perfetto's default clock.  Event
names, categories and annotation names are interned (one packet sequence).  The file is
the concatenation of serialized ``Trace`` messages of ``CHUNK`` packets each, built with
``perfetto.trace_builder.proto_builder.TraceProtoBuilder``: a ``Trace`` is a repeated
field 1 (``packet``), so concatenated ``Trace`` messages are one ``Trace``, and memory
stays bounded by one chunk (plus a name per distinct register, address and thread).

Memory per distinct address: its counter track's uuid (a ``dict`` of ``int`` to ``int``,
about 100 bytes an address written); interned event names are forgotten, and the
sequence's incremental state cleared and interned again, every ``MAX_NAMES`` names.  So
10^6 distinct addresses written take about 100 MB beyond the fixed cost; the limit is the
machine's memory (a counter track per address is what the format asks for).  Timestamps
past 2**64 ns (about 584 years) do not fit Perfetto's clock: such a log is refused.
"""

from __future__ import annotations

from typing import IO, Any

from kmmio.errors import UsageError
from kmmio.tools.export.names import Namer, Values, Var
from kmmio.tools.export.source import rows
from kmmio.tools.extras import need
from kmmio.tools.scan import Batch, Progress, scan
from kmmio.trace.records import KernelAccess, Map, MapInfo, Mark, Record, Unknown, Unmap

#: Packets per serialized chunk.
CHUNK = 4096
#: The packet sequence every packet belongs to.
SEQUENCE = 1
#: Track uuids: the log's track, the registers' parent, threads (+ tid), counters (+ n).
LOG_TRACK = 1
REGISTERS_TRACK = 2
THREAD_BASE = 1 << 40
COUNTER_BASE = 2 << 40

#: Interned once, at the start of the sequence.
CATEGORIES = {"read": 1, "write": 2, "unknown": 3, "syscall": 4, "mmiotrace": 5}
ANNOTATIONS = {"value": 1, "width": 2, "pc": 3, "phys": 4, "map": 5, "virt": 6, "length": 7, "tid": 8}

#: Interned event names before the sequence's interned state is cleared.
MAX_NAMES = 1 << 16
#: Kernel marks (timestamp 0) held until the first timestamp.
HOLD = 1 << 12
#: The latest timestamp Perfetto's clock (uint64 nanoseconds) holds, in microseconds.
MAX_TS_US = ((1 << 64) - 1) // 1000

_I64_MAX = (1 << 63) - 1


class PerfettoExport:
    """Writes accesses and records as Perfetto packets to ``sink`` as they come;
    :meth:`close` writes the last chunk."""

    def __init__(self, sink: IO[bytes], namer: Namer, chunk: int | None = None) -> None:
        builder_mod = need("perfetto.trace_builder.proto_builder", "export --format perfetto")
        pb = need("perfetto.protos.perfetto.trace.perfetto_trace_pb2", "export --format perfetto")
        self._builder_cls = builder_mod.TraceProtoBuilder
        self.sink = sink
        self.namer = namer
        self.chunk = CHUNK if chunk is None else chunk
        self.instant = pb.TrackEvent.TYPE_INSTANT
        self.counter = pb.TrackEvent.TYPE_COUNTER
        self.needs_state = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        self.cleared = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
        self.builder = self._builder_cls()
        self.in_chunk = 0
        self.values = Values(keep_addresses=False)  # only registers merge with their old value
        self.threads: set[int] = set()
        self.counters: dict[Var | int, int] = {}  # a register by its Var, an address by itself
        self.names: dict[str, int] = {}
        self.max_names = MAX_NAMES
        self.events = 0  # instants and counter values
        self.counter_values = 0
        self.last_ts: int | None = None  # the latest event's timestamp
        self._held: list[Mark] = []  # kernel marks waiting for a timestamp
        self._start()

    def _packet(self) -> Any:
        if self.in_chunk >= self.chunk:
            self.sink.write(self.builder.serialize())
            self.builder = self._builder_cls()
            self.in_chunk = 0
        self.in_chunk += 1
        p = self.builder.add_packet()
        p.trusted_packet_sequence_id = SEQUENCE
        return p

    def _start(self) -> None:
        """The sequence's first packet: the interned categories and annotation names, and
        the log's and registers' tracks."""
        self._intern()
        self._track(LOG_TRACK, "mmiotrace")
        self._track(REGISTERS_TRACK, "registers")

    def _intern(self) -> None:
        """A packet clearing the sequence's interned state and interning the categories
        and annotation names again (event names start over)."""
        p = self._packet()
        p.sequence_flags = self.cleared
        for name, iid in CATEGORIES.items():
            p.interned_data.event_categories.add(iid=iid, name=name)
        for name, iid in ANNOTATIONS.items():
            p.interned_data.debug_annotation_names.add(iid=iid, name=name)
        self.names.clear()

    def _track(self, uuid: int, name: str, parent: int = 0, counter: bool = False) -> None:
        p = self._packet()
        d = p.track_descriptor
        d.uuid = uuid
        d.name = name
        if parent:
            d.parent_uuid = parent
        if counter:
            d.counter.SetInParent()

    def _event(self, ts: int, track: int, kind: int, category: str) -> Any:
        if ts > MAX_TS_US:
            raise UsageError(
                f"timestamp {ts // 1_000_000}.{ts % 1_000_000:06d} is past the end of Perfetto's clock "
                f"(2**64 ns, {MAX_TS_US // 1_000_000} s)"
            )
        p = self._packet()
        p.timestamp = ts * 1000
        p.sequence_flags = self.needs_state
        e = p.track_event
        e.type = kind
        e.track_uuid = track
        if category:
            e.category_iids.append(CATEGORIES[category])
        self.events += 1
        return p

    def _thread(self, tid: int) -> int:
        uuid = THREAD_BASE + tid
        if tid not in self.threads:
            self.threads.add(tid)
            self._track(uuid, f"tid {tid}")
        return uuid

    def access(self, kind: int, width: int, ts: int, phys: int, value: int, pc: int, tid: int) -> None:
        """One access (kind 0 read, 1 write)."""
        naming = self.namer.naming(kind, phys, width)
        self._time(ts)
        track = self._thread(tid)
        iid = self.names.get(naming.label)
        if iid is None and len(self.names) >= self.max_names:
            self._intern()
        p = self._event(ts, track, self.instant, "write" if kind else "read")
        e = p.track_event
        if iid is None:
            iid = self.names[naming.label] = len(self.names) + 1
            p.interned_data.event_names.add(iid=iid, name=naming.label)
        e.name_iid = iid
        e.debug_annotations.add(name_iid=1, string_value=f"{value:#x}")
        e.debug_annotations.add(name_iid=2, uint_value=width)
        e.debug_annotations.add(name_iid=3, pointer_value=pc)
        e.debug_annotations.add(name_iid=4, pointer_value=phys)
        for var, new, _changed in self.values.apply(naming.slots, value):
            if kind:
                self._count(ts, var, new)

    def _time(self, ts: int) -> None:
        """An event at ``ts`` comes: the kernel marks held go first, at ``ts``."""
        if self._held:
            held, self._held = self._held, []
            for mark in held:
                self._mark(ts, mark.text)
        self.last_ts = ts

    def _mark(self, ts: int, text: str) -> None:
        self._event(ts, LOG_TRACK, self.instant, "mmiotrace").track_event.name = text

    def _count(self, ts: int, var: Var, value: int) -> None:
        key: Var | int = var if var.is_register else var.address
        uuid = self.counters.get(key)
        if uuid is None:
            uuid = self.counters[key] = COUNTER_BASE + len(self.counters)
            self._track(uuid, var.name, parent=REGISTERS_TRACK, counter=True)
        e = self._event(ts, uuid, self.counter, "").track_event
        self.counter_values += 1
        if value <= _I64_MAX:
            e.counter_value = value
        else:
            e.double_counter_value = float(value)

    def record(self, rec: Record) -> None:
        """A record that is not an access."""
        if type(rec) is Mark and rec.ts == 0:  # the kernel's: see the module docstring
            if self.last_ts is not None:
                self._mark(self.last_ts, rec.text)
            elif len(self._held) < HOLD:
                self._held.append(rec)
            else:
                self._mark(0, rec.text)
            return
        if isinstance(rec, Unknown | KernelAccess | Map | Unmap | Mark | MapInfo):
            self._time(rec.ts)
        match rec:
            case Unknown():
                e = self._event(rec.ts, self._thread(rec.pid), self.instant, "unknown").track_event
                e.name = "UNKNOWN " + ",".join(f"{b:02x}" for b in rec.code)
                self._args(e, map=rec.map_id, phys=rec.phys, pc=rec.pc)
            case KernelAccess():
                e = self._event(rec.ts, self._thread(rec.tid), self.instant, "syscall").track_event
                e.name = f"syscall {rec.syscall} {rec.direction}"
                self._args(e, map=rec.map_id, phys=rec.phys, length=rec.length)
            case Map():
                e = self._event(rec.ts, LOG_TRACK, self.instant, "mmiotrace").track_event
                e.name = f"MAP {rec.map_id}"
                self._args(e, phys=rec.phys, virt=rec.virt, length=rec.length, pc=rec.pc, tid=rec.pid)
            case Unmap():
                e = self._event(rec.ts, LOG_TRACK, self.instant, "mmiotrace").track_event
                e.name = f"UNMAP {rec.map_id}"
                self._args(e, pc=rec.pc, tid=rec.pid)
            case Mark() | MapInfo():
                self._mark(rec.ts, rec.text)
            case _:
                pass  # VERSION, PCIDEV: no time

    @staticmethod
    def _args(e: Any, **values: int | None) -> None:
        for name, v in values.items():
            if v is None:
                continue
            if name in ("pc", "phys", "virt"):
                e.debug_annotations.add(name_iid=ANNOTATIONS[name], pointer_value=v)
            else:
                e.debug_annotations.add(name_iid=ANNOTATIONS[name], int_value=v)

    def close(self) -> None:
        """Write the kernel marks still held (at 0: no event had a time) and the last
        chunk."""
        held, self._held = self._held, []
        for mark in held:
            self._mark(0, mark.text)
        if self.in_chunk:
            self.sink.write(self.builder.serialize())
            self.builder = self._builder_cls()
            self.in_chunk = 0


def export_perfetto(
    stream: IO[bytes],
    sink: IO[bytes],
    namer: Namer,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> PerfettoExport:
    """Write the log read from ``stream`` to ``sink`` as a Perfetto trace; returns the
    exporter (its ``events``, ``threads`` and ``counters``).  A malformed line raises
    :class:`~kmmio.errors.TraceFormatError`."""
    exp = PerfettoExport(sink, namer, chunk)
    for item in scan(stream, progress=progress):
        if isinstance(item, Batch):
            for kind, width, ts, _map_id, phys, value, pc, tid in rows(item):
                exp.access(kind, width, ts, phys, value, pc, tid)
        else:
            exp.record(item)
    exp.close()
    return exp
