"""Traced mappings and the probe handlers that log their accesses (the kernel's mmio-mod.c).

Each traced mapping is a :class:`Mapping` with a map id; its probe's ``pre_handler`` takes
the faulting instruction the fault path decoded (:meth:`MmioTrace.expect`) and works out
which of its accesses touch traced mappings; the fault path hands over their values (read
around a single step, or the ones it moved itself), and the ``post_handler`` emits one
``R``/``W`` record per access, or ``UNKNOWN`` when the decoder cannot account for the
fault.  The log reads nothing of the program.  Values are the bytes moved, little-endian and
unsigned: never a sign- or zero-extended register.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kmmio.engine import Probe, StepCondition
from kmmio.trace.reader import read_records
from kmmio.trace.records import Access, KernelAccess, Kind, Map, MapInfo, Mark, Record, Unknown, Unmap
from kmmio.trace.writer import AccessRow, TraceWriter
from kmmio.x86.decode import InstructionForm
from kmmio.x86.operands import AccessKind, MemAccess
from kmmio.x86.regs import Registers

if TYPE_CHECKING:
    from kmmio.maps.model import Decoded
    from kmmio.ptrace.process import Process


def now_us() -> int:
    """The trace clock: ``CLOCK_MONOTONIC`` in microseconds."""
    return time.monotonic_ns() // 1000


@dataclass(eq=False)
class Mapping:
    """A traced mapping: one ``MAP`` record, then accesses, then ``UNMAP``.

    ``phys`` is what the log calls the physical start: the file offset of the first byte
    for a file mapping (for ``/dev/mem`` exactly the physical address), the virtual
    address for an anonymous one.
    """

    map_id: int
    path: str
    virt: int
    phys: int
    length: int
    prot: int
    proc: Process
    probes: list[Probe] = field(default_factory=list)
    #: The size of its pages: 2 MiB (or 1 GiB) for hugetlbfs.
    page_size: int = 4096
    #: The tracer's view of the pages, for emulation (a backend object), once made.
    view: Any = field(default=None, repr=False)
    #: The inode of the file (or shared memory object) behind it, 0 for none: part of the
    #: mapping may later be replaced by another part of the same file (MAP_FIXED,
    #: remap_file_pages), so its VMAs are told apart by their offsets, ``phys`` being the
    #: object's offset of ``virt`` for a file.
    view_failed: bool = False
    inode: int = 0
    #: The object's (file's) offset of ``virt``, which ``phys`` is not for a device.
    offset: int = 0
    #: What it is (kind, device, region), as its ``MARK map`` line says.
    info: tuple[str, str, str] = ("file", "", "")

    def phys_of(self, addr: int) -> int:
        return self.phys + (addr - self.virt)

    @property
    def end(self) -> int:
        return self.virt + self.length


@dataclass(frozen=True, slots=True)
class TracedAccess:
    """One access as the per-access callback sees it."""

    kind: Kind
    width: int
    addr: int
    phys: int
    value: int
    pc: int
    tid: int
    map_id: int
    path: str
    instruction: str
    #: When it happened, in microseconds (the log line's timestamp).
    ts: int = 0
    #: The registers and fields it touched, when the tracer was given a register map
    #: (``Tracer(..., regmap=)``, ``kmmio trace --regs``).
    decoded: Decoded | None = None

    @property
    def register(self) -> str | None:
        """The full path of the (first) register it touched; ``None`` without a map or
        when no register covers it."""
        return self.decoded.register if self.decoded is not None else None


@dataclass
class _Pending:
    form: InstructionForm
    #: Decoded on demand (not at all when the tracer performs the access itself).
    accesses: list[tuple[MemAccess, Mapping]] | None
    values: dict[int, int]
    regs: Registers
    addr: int
    mapping: Mapping
    #: The thread's vector and mask registers, for a masked access.
    vectors: Any = None


class MmioTrace:
    """Builds records from faults; hands each to ``emit`` (the log) and ``on_access``."""

    def __init__(
        self,
        emit: Callable[[Record], None],
        on_access: Callable[[TracedAccess], None] | None = None,
        decode: Callable[[str, int, int, int], Decoded] | None = None,
    ) -> None:
        self.emit = emit
        self.on_access = on_access
        #: ``(kind, phys, width, value)`` to the registers touched, for ``on_access``.
        self.decode = decode
        #: When ``emit`` is a log writer's ``write``: that writer, which gets the access
        #: lines in batches of its ``flush_every`` (see :meth:`flush`), no record built.
        owner = getattr(emit, "__self__", None)
        self._lines = owner if isinstance(owner, TraceWriter) and emit == owner.write else None
        self._batch: list[AccessRow] = []
        self._batch_size = self._lines.flush_every if self._lines is not None else 0
        self.next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._expected: dict[int, tuple[InstructionForm, Any]] = {}
        self.counts = {"R": 0, "W": 0, "UNKNOWN": 0, "MAP": 0, "UNMAP": 0, "LOST": 0}

    # -- mappings -------------------------------------------------------------------------

    def new_mapping(
        self,
        proc: Process,
        path: str,
        virt: int,
        phys: int,
        length: int,
        prot: int,
        pc: int,
        tid: int,
        page_size: int = 4096,
        info: tuple[str, str, str] = ("file", "", ""),
    ) -> Mapping:
        """A traced mapping begins: ``MAP``, then ``MARK map`` saying what it is (``info``:
        kind, device, region, see :class:`kmmio.trace.MapInfo`)."""
        mapping = Mapping(self.next_id, path, virt, phys, length, prot, proc, page_size=page_size, info=info)
        self.next_id += 1
        self.counts["MAP"] += 1
        ts = now_us()
        self._emit(Map(ts, mapping.map_id, phys, virt, length, pc, tid))
        self._emit(MapInfo(ts, mapping.map_id, path, *info))
        self._push()
        return mapping

    def end_mapping(self, mapping: Mapping, pc: int, tid: int) -> None:
        self.counts["UNMAP"] += 1
        self._emit(Unmap(now_us(), mapping.map_id, pc, tid))
        self._push()

    def make_probe(self, mapping: Mapping, start: int, end: int) -> Probe:
        return Probe(start, end - start, self.pre_handler, self.post_handler, mapping, mapping.page_size)

    def logged(self, probe: Probe, mapping: Mapping) -> Probe:
        """A probe of the API's user that also logs the accesses it sees (mmio-mod.c's
        handlers around the user's, as the kernel's mmiotrace wraps its probes)."""
        user_pre, user_post = probe.pre_handler, probe.post_handler

        def pre(p: Probe, regs: Any, addr: int) -> None:
            self.pre_handler(p, regs, addr)
            if user_pre is not None:
                user_pre(p, regs, addr)

        def post(p: Probe, condition: Any, regs: Any) -> None:
            if user_post is not None:
                user_post(p, condition, regs)
            self.post_handler(p, condition, regs)

        probe.pre_handler, probe.post_handler, probe.data = pre, post, mapping
        return probe

    # -- handlers -------------------------------------------------------------------------

    def expect(self, tid: int, form: InstructionForm, vectors: Any = None) -> None:
        """The fault path's word on thread ``tid``'s faulting instruction, before the engine
        runs the probe's handlers: its decoded form, and for a masked access the thread's
        vector and mask registers (what :meth:`InstructionForm.accesses` reads).  The log
        reads nothing of the program: what it logs is handed to it."""
        self._expected[tid] = (form, vectors)

    def pre_handler(self, probe: Probe, regs: Any, addr: int) -> None:
        """``pre(probe, regs, addr)``: an access begins; which of its accesses touch traced
        mappings is worked out from the expected instruction."""
        mapping: Mapping = probe.data
        assert isinstance(regs, Registers)
        expected = self._expected.get(regs.tid)
        if expected is None:
            return
        form, vectors = expected
        self._pending[regs.tid] = _Pending(form, None, {}, regs, addr, mapping, vectors)

    def accesses(self, tid: int) -> list[MemAccess]:
        """The traced accesses of thread ``tid``'s instruction in flight, in order (their
        values go to :meth:`values`)."""
        pending = self._pending.get(tid)
        return [acc for acc, _ in self._decoded(pending)] if pending is not None else []

    def values(self, tid: int, values: dict[int, int]) -> None:
        """Values of the accesses in flight, by their index in :meth:`accesses`."""
        pending = self._pending.get(tid)
        if pending is not None:
            pending.values.update(values)

    def emulated(self, tid: int, done: Sequence[tuple[MemAccess, int]]) -> None:
        """The tracer performed the instruction: these are its accesses, with their values."""
        pending = self._pending.get(tid)
        if pending is None:
            return
        proc = pending.mapping.proc
        pending.accesses, pending.values = [], {}
        for acc, value in done:
            owner = self._mapping_at(proc, acc.addr, acc.width)
            if owner is not None:
                pending.values[len(pending.accesses)] = value
                pending.accesses.append((acc, owner))

    def _decoded(self, pending: _Pending) -> list[tuple[MemAccess, Mapping]]:
        """The accesses the decoder sees in the instruction that touch traced mappings
        (first asked before a single step: a masked access's mask is taken from the
        thread's registers as the instruction will see them)."""
        if pending.accesses is None:
            proc, form = pending.mapping.proc, pending.form
            found = form.accesses(pending.regs, pending.vectors) if form.known else []
            pairs = ((acc, self._mapping_at(proc, acc.addr, acc.width)) for acc in found)
            pending.accesses = [(acc, owner) for acc, owner in pairs if owner is not None]
        return pending.accesses

    def post_handler(self, probe: Probe, condition: Any, regs: Any) -> None:
        """Take what writes stored and emit the records, in the program's order."""
        tid = regs.tid if isinstance(regs, Registers) else None
        pending = self._pending.pop(tid, None) if tid is not None else None
        self._expected.pop(tid, None)  # type: ignore[arg-type]
        if pending is None or condition is StepCondition.ABORTED:
            return
        ts = now_us()
        accesses = self._decoded(pending)
        if not accesses:
            m = pending.mapping
            self.counts["UNKNOWN"] += 1
            self._emit(
                Unknown(
                    ts,
                    m.map_id,
                    m.phys_of(pending.addr),
                    pending.form.code[:3] or b"\0",
                    pending.regs.rip,
                    tid or 0,
                )
            )
            return
        pc = pending.regs.rip
        for i, (acc, owner) in enumerate(accesses):
            value = pending.values.get(i, 0)
            kind = Kind.READ if acc.kind is AccessKind.READ else Kind.WRITE
            self.record(kind, acc.width, acc.addr, value, pc, tid or 0, owner, pending.form, ts)

    def record(
        self,
        kind: Kind,
        width: int,
        addr: int,
        value: int,
        pc: int,
        tid: int,
        owner: Mapping,
        form: InstructionForm,
        ts: int | None = None,
    ) -> None:
        """Emit one access: an ``R``/``W`` record, and the ``on_access`` callback.

        The tracer's quick path calls this directly for a load or store it performed
        (no pre- and post-handler round: the page never left its armed state).
        """
        char = "R" if kind is Kind.READ else "W"
        self.counts[char] += 1
        phys = owner.phys + (addr - owner.virt)
        if ts is None:
            ts = now_us()
        if self._lines is not None:
            batch = self._batch
            batch.append((char, width, ts, owner.map_id, phys, value, pc, tid))
            if len(batch) >= self._batch_size:
                self.flush()
        else:
            self.emit(Access(kind, width, ts, owner.map_id, phys, value, pc, tid))
        if self.on_access is not None:
            decoded = self.decode(char, phys, width, value) if self.decode is not None else None
            self.on_access(
                TracedAccess(
                    kind, width, addr, phys, value, pc, tid, owner.map_id, owner.path, form.text, ts, decoded
                )
            )

    def flush(self) -> None:
        """Hand the access lines held back to the log writer (the tracer does at its end)."""
        if self._batch and self._lines is not None:
            batch, self._batch = self._batch, []
            self._lines.write_accesses(batch)

    def _emit(self, rec: Record) -> None:
        """Emit a record other than an access, after the accesses before it."""
        self.flush()
        self.emit(rec)

    def served(self, rows: Any) -> int:
        """Accesses the compiled fast loop performed (:mod:`kmmio.backend.fast`, whose rows
        wait to be taken): into the log, after the lines held back; how many."""
        writes = rows.writes_waiting()
        if self._lines is not None:
            self.flush()
            text, n = rows.take_text()
            self._lines.write_lines(text, n)
        else:
            taken = rows.take_rows()
            n = len(taken)
            for write, width, ts, map_id, phys, value, pc, tid in taken:
                kind = Kind.WRITE if write else Kind.READ
                self.emit(Access(kind, width, ts, map_id, phys, value, pc, tid))
        self.counts["W"] += writes
        self.counts["R"] += n - writes
        return int(n)

    def lines_served(self, text: str, reads: int, writes: int) -> None:
        """Access lines a backend formatted itself (the agent's ring): into the log after
        the lines held back, or parsed into records for an ``emit`` that is no writer."""
        if self._lines is not None:
            self.flush()
            self._lines.write_lines(text, reads + writes)
        else:
            for rec in read_records(io.StringIO(text)):
                self.emit(rec)
        self.counts["R"] += reads
        self.counts["W"] += writes

    def unknown(self, mapping: Mapping, addr: int, code: bytes, pc: int, tid: int) -> None:
        """An access the decoder cannot account for: ``UNKNOWN``, as the kernel logs it."""
        self.counts["UNKNOWN"] += 1
        self._emit(Unknown(now_us(), mapping.map_id, mapping.phys_of(addr), code[:3] or b"\0", pc, tid))

    def _push(self) -> None:
        """Lines that say which mappings are traced reach the log at once (a reader
        following it sees them while the program waits); access lines go in batches."""
        if self._lines is not None:
            self._lines.flush()

    def drop(self, tid: int, lost: bool = True) -> None:
        """Forget thread ``tid``'s instruction in flight: it is gone in the middle (its
        accesses are ``lost``), or the fault was not a traced access after all."""
        self._expected.pop(tid, None)
        if self._pending.pop(tid, None) is not None and lost:
            self.counts["LOST"] += 1

    def finish(self) -> None:
        """The end of the trace: every line held back goes to the log, then
        ``MARK ... Lost N events.``, as the kernel says it, when anything was lost."""
        if self.counts["LOST"]:
            self._emit(Mark(now_us(), f"Lost {self.counts['LOST']} events."))
        self.flush()

    def note(self, text: str) -> None:
        """A ``MARK`` line of kmmio's own (why the trace ended, what was done to the program)."""
        self._emit(Mark(now_us(), text))

    def kernel_access(
        self, syscall: str, direction: str, map_id: int, phys: int, length: int | None, tid: int
    ) -> None:
        """The kernel reached traced memory for a syscall: a ``MARK`` line saying so
        (``syscall NAME DIR map ID PHYS+LEN tid TID``; readers that skip MARK lines still
        read the log)."""
        self.counts["SYSCALL"] = self.counts.get("SYSCALL", 0) + 1
        self._emit(KernelAccess(now_us(), syscall, direction, map_id, phys, length, tid))

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _mapping_at(proc: Process, addr: int, width: int) -> Mapping | None:
        probe = proc.engine.get_probe(addr)
        if probe is None and width > 1:
            hits = proc.engine.probes.overlapping(addr, addr + width)
            probe = hits[0] if hits else None
        if probe is None or not isinstance(probe.data, Mapping):
            return None
        return probe.data
