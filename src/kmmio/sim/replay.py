"""A recorded mmiotrace log as the device: the pure core of ``kmmio replay``.

:class:`Replay` answers the program's reads with the recorded values and checks its writes
against the recorded ones; the tracer calls :meth:`Replay.access` for each access the
program makes to a replayed device (or a :meth:`Replay.device` adapter's ``read``/``write``),
and :meth:`Replay.finish` when the program has ended.  Nothing here touches the system.

The rules
=========

**Numbering.**  Record N is the N-th ``R``/``W`` line of the log, counting every device's
accesses (``awk '/^[RW] / && ++n == N'``); its line number in the file is given too when
the log was read as text (a path or lines), not when it was given as records.

**Devices.**  A device is a path the log maps: the ``MARK map N PATH KIND`` line after each
``MAP`` names it, and every ``MAP`` of one path belongs to it (a program that maps twice,
or maps two regions of one file).  A ``MAP`` with no such line (a log of the kernel's, or
of a kmmio before it wrote them) is named ``map N`` (its id), and shares the name of an
earlier unnamed ``MAP`` at the same physical start.  The log's paths are ordered by their
first ``MAP``.  ``devices`` renames them:

* ``None``: every path of the log is replayed, under its recorded name;
* a sequence (``--device PATH ...``): the N-th path given is the log's N-th path; the
  log's paths past the last one given are not replayed; the same path given twice joins
  the two recorded paths into one device; more paths than the log has is a
  :class:`~kmmio.errors.UsageError`;
* a mapping ``{program path: recorded path}``: exactly those, by name.

An access of the log to a map of no replayed device is ignored (another device, not
replayed).  Map ids only say which device an access of the log belongs to: the program's
accesses are matched by physical address, whichever of its mappings they go through.

**Matching.**  An access matches a recorded one with the same kind, physical address and
width, and for a write the same value.  Time stamps, PCs and map ids are not compared.

**Threads.**  The recording is split per recorded thread (its ``R``/``W`` PID field) and
each program thread is matched against one recorded thread only, so the threads may
interleave differently than they did.  Program threads are paired with recorded threads
in the order of their first access to any replayed device: a program thread's first access
takes the first recorded thread not yet paired whose first access it matches, or, if none
matches, the first not yet paired (and then diverges there).  A program thread with no
recorded thread left diverges.

**Polling.**  A run of reads of one register may be longer or shorter than recorded.  In a
thread, the program's access is matched against the next recorded access; if it does not
match:

* *repeat*: a read of the register (physical address and width) that the last matched
  record read is answered with that record's value again (the program polls longer, or
  reads once more after the recording moved on, also past the recording's end);
* *skip*: otherwise the recorded reads of that register that follow are skipped, values
  and all (the program polls less), and the access is matched against what comes next;
* else it is a :class:`Divergence`, naming the record it failed to match: the one after
  the skipped reads.  A missing write thus shows at the program's next access that is
  neither a repeat nor a match (a re-read of the last register just before it is a repeat).

After a divergence the replay is over: every later call raises the same divergence.

**End.**  :meth:`Replay.finish` counts the recorded accesses the program never reached:
a program that stops before the end of the recording is not a divergence, only a
:attr:`ReplayEnd.note` (one line).  Reads of the last read register that end a thread are
skipped by the polling rule, not left over; a recorded thread no program thread was paired
with is left over whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from kmmio.errors import ServedAccessError, UsageError
from kmmio.trace.reader import parse_line
from kmmio.trace.records import Access, Kind, Map, MapInfo, PciDev, Record

#: What :class:`Replay` reads: a path (``str`` is always a path), lines of text or bytes
#: (with line numbers), or records (without).
LogSource = str | PurePath | Iterable[str] | Iterable[bytes] | Iterable[Record]

#: A program's access as :class:`Divergence` reports it: kind, phys, width, value (``None``
#: for a read).
Got = tuple[Kind, int, int, int | None]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded access of a replayed device: its number among the log's ``R``/``W``
    records (from 1), its line (``None`` when the log came as records) and the access."""

    record_no: int
    line_no: int | None
    access: Access

    def where(self) -> str:
        return f"record {self.record_no}" + (f" (line {self.line_no})" if self.line_no else "")


def _describe(kind: Kind, phys: int, width: int, value: int | None) -> str:
    """``W 4 0xf7c00010 0x1``; a read without its value (what is compared)."""
    text = f"{kind.value} {width} {phys:#x}"
    return f"{text} {value:#x}" if kind is Kind.WRITE and value is not None else text


class Divergence(ServedAccessError):
    """The program's access differs from the recording: ``record_no``/``line_no`` and
    ``expected`` name the recorded access it failed to match (``None`` for all three when
    the program's thread is past the end of its recorded thread, or has none); ``got`` is
    the program's access (kind, phys, width, value or ``None`` for a read); ``pc``,
    ``tid`` the program's instruction and thread.  ``str()`` is one line.  A
    :class:`~kmmio.errors.ServedAccessError`: the trace stops there."""

    def __init__(
        self,
        record_no: int | None,
        line_no: int | None,
        expected: Access | None,
        got: Got,
        pc: int,
        tid: int,
        context: str = "",
    ) -> None:
        self.record_no = record_no
        self.line_no = line_no
        self.expected = expected
        self.got = got
        self.pc = pc
        self.tid = tid
        self.context = context
        super().__init__(str(self))

    def __str__(self) -> str:
        # Built on demand: the fault path may fill in ``pc`` after the fact.
        e = self.expected
        exp = "nothing" if e is None else _describe(e.kind, e.phys, e.width, e.value)
        if self.record_no is not None:
            where = f"record {self.record_no}" + (f" (line {self.line_no})" if self.line_no else "")
        else:
            where = self.context or "end of the recording"
        mine = f"at pc {self.pc or 0:#x} tid {self.tid}"
        if e is not None and e.pid != self.tid:
            mine += f" (recorded tid {e.pid})"
        return f"replay: {where}: expected {exp}, got {_describe(*self.got)} {mine}"


@dataclass(frozen=True, slots=True)
class RecordedDevice:
    """A replayed device: the path the program maps (``path``), the log's name for it
    (``recorded_path``), what its ``MARK map`` line says (``kind``, ``device``, ``region``:
    empty without one) and its recorded ``MAP`` records.

    ``phys`` is the physical address of offset 0 for :meth:`Replay.device`: for a ``pci``
    path whose device and BAR have a ``PCIDEV`` line, that BAR's start (flag bits cleared);
    else the lowest recorded physical start of its maps (right for a program that maps the
    file from offset 0; a UIO device with several maps should be reached by physical address
    through :meth:`Replay.access`).  ``size`` reaches the highest recorded end.
    """

    path: str
    recorded_path: str
    kind: str
    device: str
    region: str
    maps: tuple[Map, ...]
    phys: int

    @property
    def size(self) -> int:
        return max(m.phys + m.length for m in self.maps) - self.phys

    def contains(self, phys: int) -> bool:
        return any(m.phys <= phys < m.phys + m.length for m in self.maps)


@dataclass(frozen=True, slots=True)
class ReplayEnd:
    """What :meth:`Replay.finish` says: recorded accesses ``matched`` (reads served and
    writes checked), ``skipped`` by the polling rule, program reads ``repeated``, and those
    ``remaining`` that the program never reached (``first_remaining`` the earliest of them);
    ``diverged`` if the replay stopped at a divergence."""

    matched: int
    skipped: int
    repeated: int
    remaining: int
    first_remaining: Recorded | None
    diverged: Divergence | None

    @property
    def complete(self) -> bool:
        """The recording was replayed to its end, without divergence."""
        return self.remaining == 0 and self.diverged is None

    @property
    def note(self) -> str:
        """One line when the program stopped before the end of the recording, else ``""``."""
        if self.remaining == 0 or self.first_remaining is None:
            return ""
        first = self.first_remaining
        a = first.access
        return (
            f"replay: note: the program ended before the recording did: {self.remaining} recorded "
            f"access{'es' if self.remaining != 1 else ''} not replayed, the first {first.where()}: "
            f"{_describe(a.kind, a.phys, a.width, a.value)} of recorded tid {a.pid}"
        )


@dataclass(slots=True)
class _Thread:
    """One recorded thread's accesses and how far the program thread paired with it got."""

    tid: int
    seq: list[Recorded]
    pos: int = 0
    last: Recorded | None = None  # the last record matched
    matched: int = 0
    skipped: int = 0
    repeated: int = 0

    def _run_end(self, start: int) -> int:
        """The index after the recorded reads of the last read register from ``start``."""
        last = self.last
        if last is None or last.access.kind is not Kind.READ:
            return start
        key = (last.access.phys, last.access.width)
        end = start
        while end < len(self.seq):
            a = self.seq[end].access
            if a.kind is not Kind.READ or (a.phys, a.width) != key:
                break
            end += 1
        return end

    def remaining(self) -> tuple[int, Recorded | None]:
        """Records never reached (trailing reads of the last read register excepted)."""
        end = self._run_end(self.pos)
        if end == len(self.seq):
            return 0, None
        return len(self.seq) - self.pos, self.seq[self.pos]


def _matches(a: Access, kind: Kind, phys: int, width: int, value: int | None) -> bool:
    return a.kind is kind and a.phys == phys and a.width == width and (kind is Kind.READ or a.value == value)


def _numbered(source: LogSource) -> Iterable[tuple[Record, int | None]]:
    """The log's records with their line numbers (``None`` for records given as such)."""
    if isinstance(source, str | PurePath):
        with open(source, encoding="utf-8", errors="replace") as f:
            yield from _numbered(f)
        return
    for line_no, item in enumerate(source, 1):
        if isinstance(item, str | bytes):
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            rec = parse_line(text, line_no)
            if rec is not None:
                yield rec, line_no
        else:
            yield item, None


def _bar_start(pcidevs: Sequence[PciDev], device: str, region: str) -> int | None:
    """The start of BAR N of PCI device ``DDDD:BB:DD.F`` from its ``PCIDEV`` line."""
    try:
        _, bus, slot_fn = device.split(":")
        slot, fn = slot_fn.split(".")
        devfn = (int(bus, 16) << 8) | (int(slot, 16) << 3) | int(fn, 16)
        word, n = region.split()
        bar = int(n)
    except ValueError:
        return None
    if word != "bar":
        return None
    for dev in pcidevs:
        if dev.devfn == devfn and 0 <= bar < len(dev.starts) and dev.starts[bar]:
            start = dev.starts[bar]
            return start & ~0x3 if start & 1 else start & ~0xF
    return None


class Replay:
    """A recorded log as the device (the module's docstring has the rules).

    ``log``: a path, lines of text, or records; ``devices``: ``None``, the ``--device``
    paths in order, or ``{program path: recorded path}``.  A log with no ``MAP`` line, or
    ``devices`` naming what the log does not have, raises :class:`~kmmio.errors.UsageError`;
    a malformed line :class:`~kmmio.errors.TraceFormatError`.
    """

    def __init__(self, log: LogSource, devices: Sequence[str] | Mapping[str, str] | None = None) -> None:
        maps: dict[int, Map] = {}
        infos: dict[int, MapInfo] = {}
        pcidevs: list[PciDev] = []
        accesses: list[Recorded] = []
        record_no = 0
        for rec, line_no in _numbered(log):
            if isinstance(rec, Access):
                record_no += 1
                accesses.append(Recorded(record_no, line_no, rec))
            elif isinstance(rec, Map):
                maps.setdefault(rec.map_id, rec)
            elif isinstance(rec, MapInfo):
                infos.setdefault(rec.map_id, rec)
            elif isinstance(rec, PciDev):
                pcidevs.append(rec)
        if not maps:
            raise UsageError("replay: the log has no MAP line: no device to replay")

        # The log's paths, in the order of their first MAP, and the map ids of each.
        groups: dict[str, list[int]] = {}
        unnamed_at: dict[int, str] = {}
        for map_id, m in maps.items():
            # A MAP with no MARK map line: named by its id, or as an earlier one at its phys.
            name = infos[map_id].path if map_id in infos else unnamed_at.setdefault(m.phys, f"map {map_id}")
            groups.setdefault(name, []).append(map_id)
        #: Every path the log maps, in order (replayed or not).
        self.recorded_paths: tuple[str, ...] = tuple(groups)

        chosen: dict[str, list[str]] = {}  # program path -> recorded paths
        if devices is None:
            chosen = {p: [p] for p in groups}
        elif isinstance(devices, Mapping):
            for path, recorded in devices.items():
                if recorded not in groups:
                    raise UsageError(f"replay: the log maps no {recorded!r} (it maps {self._paths()})")
                chosen[path] = [recorded]
        else:
            if len(devices) > len(groups):
                raise UsageError(
                    f"replay: {len(devices)} --device given but the log maps {len(groups)} "
                    f"path{'s' if len(groups) != 1 else ''} ({self._paths()})"
                )
            for path, recorded in zip(devices, groups, strict=False):
                chosen.setdefault(path, []).append(recorded)

        #: The replayed devices by the path the program maps.
        self.devices: dict[str, RecordedDevice] = {}
        replayed: set[int] = set()
        for path, names in chosen.items():
            ids = [i for name in names for i in groups[name]]
            replayed.update(ids)
            info = next((infos[i] for i in ids if i in infos), None)
            kind, dev, region = (info.kind, info.device, info.region) if info else ("", "", "")
            mapped = tuple(maps[i] for i in ids)
            phys = min(m.phys for m in mapped)
            if kind == "pci":
                bar = _bar_start(pcidevs, dev, region)
                if bar is not None and bar <= phys:
                    phys = bar
            self.devices[path] = RecordedDevice(path, names[0], kind, dev, region, mapped, phys)

        threads: dict[int, _Thread] = {}
        for r in accesses:
            if r.access.map_id in replayed:
                threads.setdefault(r.access.pid, _Thread(r.access.pid, [])).seq.append(r)
        self._unpaired: list[_Thread] = list(threads.values())
        self._all: list[_Thread] = list(threads.values())
        self._program: dict[int, _Thread] = {}
        #: The divergence the replay stopped at, if any.
        self.diverged: Divergence | None = None

    def _paths(self) -> str:
        return ", ".join(self.recorded_paths)

    @property
    def threads(self) -> tuple[int, ...]:
        """The recorded threads of the replayed devices, in the order of their first access."""
        return tuple(t.tid for t in self._all)

    @property
    def pairs(self) -> dict[int, int]:
        """Program thread id -> the recorded thread id it is matched against."""
        return {tid: t.tid for tid, t in self._program.items()}

    def access(self, kind: Kind, phys: int, width: int, value: int | None, pc: int, tid: int) -> int | None:
        """The program's thread ``tid`` makes an access at instruction ``pc``: a read's value
        (``value`` is ignored), or ``None`` for a write that matches.  Raises
        :class:`Divergence` where the program leaves the recording."""
        found = self._access(kind, phys, width, value, pc, tid)
        return found if kind is Kind.READ else None

    def _access(self, kind: Kind, phys: int, width: int, value: int | None, pc: int, tid: int) -> int:
        """:meth:`access`, giving the matched record's value for a write too."""
        if self.diverged is not None:
            raise self.diverged
        if kind is Kind.WRITE and value is None:
            raise ValueError("replay: a write needs its value")
        if kind is Kind.READ:
            value = None
        try:
            thread = self._program.get(tid)
            if thread is None:
                thread = self._pair(kind, phys, width, value, pc, tid)
            found = self._step(thread, kind, phys, width, value, pc, tid)
        except Divergence as exc:
            self.diverged = exc
            raise
        return found

    def _pair(self, kind: Kind, phys: int, width: int, value: int | None, pc: int, tid: int) -> _Thread:
        if not self._unpaired:
            raise Divergence(
                None, None, None, (kind, phys, width, value), pc, tid,
                f"no recorded thread left for this thread ({len(self._all)} recorded, all paired)",
            )  # fmt: skip
        thread = next(
            (t for t in self._unpaired if _matches(t.seq[0].access, kind, phys, width, value)),
            self._unpaired[0],
        )
        self._unpaired.remove(thread)
        self._program[tid] = thread
        return thread

    def _step(
        self, th: _Thread, kind: Kind, phys: int, width: int, value: int | None, pc: int, tid: int
    ) -> int:
        seq, i = th.seq, th.pos
        if i < len(seq) and _matches(seq[i].access, kind, phys, width, value):
            return self._take(th, i, i)
        last = th.last
        if (
            kind is Kind.READ
            and last is not None
            and last.access.kind is Kind.READ
            and (last.access.phys, last.access.width) == (phys, width)
        ):
            th.repeated += 1
            return last.access.value
        j = th._run_end(i)
        if j < len(seq) and _matches(seq[j].access, kind, phys, width, value):
            return self._take(th, i, j)
        got = (kind, phys, width, value)
        if j < len(seq):
            r = seq[j]
            raise Divergence(r.record_no, r.line_no, r.access, got, pc, tid)
        end = f"end of recorded tid {th.tid}"
        if seq:
            end += f" (after its last access, {seq[-1].where()})"
        raise Divergence(None, None, None, got, pc, tid, end)

    @staticmethod
    def _take(th: _Thread, i: int, j: int) -> int:
        """Match record ``j``, skipping those from ``i``."""
        th.skipped += j - i
        th.matched += 1
        th.last = th.seq[j]
        th.pos = j + 1
        return th.last.access.value

    def finish(self) -> ReplayEnd:
        """How far the recording was replayed (see ``ReplayEnd.note`` for the one line)."""
        remaining = 0
        firsts: list[Recorded] = []
        skipped = 0
        for t in self._all:
            left, first = t.remaining()
            remaining += left
            if first is not None:
                firsts.append(first)
            elif t.pos < len(t.seq):
                skipped += len(t.seq) - t.pos  # trailing reads of the last read register
        first_left = min(firsts, key=lambda r: r.record_no, default=None)
        return ReplayEnd(
            matched=sum(t.matched for t in self._all),
            skipped=skipped + sum(t.skipped for t in self._all),
            repeated=sum(t.repeated for t in self._all),
            remaining=remaining,
            first_remaining=first_left,
            diverged=self.diverged,
        )

    def device(self, path: str, phys: int | None = None) -> ReplayDevice:
        """The model the tracer calls for the program's mappings of ``path``: offset ``o``
        is physical address ``phys + o`` (``phys``: the device's, see :class:`RecordedDevice`,
        unless given).  A path not replayed raises :class:`~kmmio.errors.UsageError`."""
        dev = self.devices.get(path)
        if dev is None:
            raise UsageError(f"replay: {path!r} is not a replayed device ({', '.join(self.devices)})")
        return ReplayDevice(self, dev, dev.phys if phys is None else phys)


class ReplayDevice:
    """A replayed device as a model: ``size``, ``phys`` (the physical address of offset 0,
    as a model's), ``read(offset, width)`` and ``write(offset, width, value)``, each an
    :meth:`Replay.access` at ``phys + offset``.

    The model interface has no thread: a tracer replaying a multi-threaded program passes
    ``pc=`` and ``tid=`` (keywords); without them every access is thread 0's, pc 0.
    """

    #: The tracer passes ``pc=`` and ``tid=`` (see :class:`kmmio.sim.device.ModelView`).
    with_context = True

    def __init__(self, replay: Replay, recorded: RecordedDevice, phys: int) -> None:
        self.replay = replay
        self.recorded = recorded
        self.path = recorded.path
        self.phys = phys
        self.size = max(m.phys + m.length for m in recorded.maps) - phys

    def read(self, offset: int, width: int, *, pc: int = 0, tid: int = 0) -> int:
        return self.replay._access(Kind.READ, self.phys + offset, width, None, pc, tid)

    def write(self, offset: int, width: int, value: int, *, pc: int = 0, tid: int = 0) -> None:
        self.replay.access(Kind.WRITE, self.phys + offset, width, value, pc, tid)
