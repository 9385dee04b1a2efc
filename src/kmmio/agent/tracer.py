"""The agent backend's tracer: starts the program with the agent, answers its questions,
drains its record ring into the log.

One :class:`Session` per address space the agent runs in (the program, each forked child,
each image after ``exec``), each on its own socket (handed over, with ``SCM_RIGHTS``, on the
socket every agent inherits).  The agent asks:

* ``MAPS lo hi``: the mappings there changed (``mmap``, ``munmap``, ``mremap``, ``shmat``,
  start): which to arm and disarm (``-m`` patterns against ``/proc/PID/maps``, as
  :mod:`kmmio.ptrace.regions` does for ptrace; ``MAP``/``UNMAP`` records);
* ``DECODE pc``: a new faulting instruction: the quick op's words, or "relocate";
* ``PRE``/``POST``: one relocated run (:mod:`kmmio.agent.plan`), its records logged here.

Plain accesses never come here: the agent performs them and writes records into the ring,
which :meth:`AgentTracer._drain` turns into log lines (compiled, ``_ring_impl.c``).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import iced_x86 as iced

from kmmio.agent import library_path
from kmmio.agent.plan import (
    TRAMP_CODE,
    Relocation,
    Traced,
    Unsupported,
    descriptor,
    is_movs,
    relocate,
    string_regs,
    template,
)
from kmmio.backend import _ptrace as pt
from kmmio.backend.procmaps import MapEntry, kernel_page_size, read_maps
from kmmio.backend.ring import RecordRing
from kmmio.backend.xstate import ThreadVectors
from kmmio.devices import Roots, place_or_say
from kmmio.errors import KmmioError, UsageError
from kmmio.launch import resolve_program
from kmmio.mmiotrace import Mapping, MmioTrace, now_us
from kmmio.patterns import Pattern, match, object_offset, phys_and_info
from kmmio.ptrace.faults import Mode, TraceStats
from kmmio.robust import robust_marks, robust_reach
from kmmio.syscalls import numbers as nr
from kmmio.syscalls.filters import MAX_RANGE_FILTERS, SECCOMP_RET_TRAP, base_filter, range_filter, uncovered
from kmmio.syscalls.plan import Lend, NeedAliases, Plan, Redirect, Span, Spans, plan_syscall, touched
from kmmio.syscalls.table import SYSCALLS, syscall_name
from kmmio.trace.records import Kind, Record
from kmmio.x86.cache import Decoded, Decoder
from kmmio.x86.decode import MAX_INSN_LEN, InstructionForm
from kmmio.x86.operands import AccessKind, MemAccess
from kmmio.x86.regs import USER_REGS_FIELDS, Registers

M_HELLO, M_MAPS, M_DECODE, M_PRE, M_POST, M_ARMED, M_SYSCALL, M_SYSDONE = 1, 2, 3, 4, 5, 6, 7, 8
A_ARM, A_DISARM = 1, 2
P_RUN, P_GENUINE = 1, 2
_NWORDS = 27
_WORD = {name: i for i, name in enumerate(USER_REGS_FIELDS)}
#: Records the ring holds (8 MiB); a full ring makes the faulting thread wait.
RING_CAP = 1 << 16
_NUDGE = 0x6B6D6D696F
_RING_NAME = "kmmio-ring"
#: Where the agent's own ``syscall`` instruction returns to (``_agent.c``'s GADGET_AT +
#: 0x19): syscalls made from there are the agent's, never trapped.
GADGET_RETS = (0x6B6D00000019, 0x6B6D0000005E)  # after its syscall, after its int 0x80
#: The agent's filters trap with SIGSYS, ``si_errno`` this (``_agent.c``'s KM_DATA).
_KM_DATA = 0x6B6D
#: Syscalls the agent's filters never trap: they cannot run from a signal handler (a new
#: thread would start on the handler's frame) or change what the handler returns to, or
#: are made with every signal blocked (a dying thread's ``exit``: glibc blocks them all
#: first, and a trapped syscall with SIGSYS blocked kills the process).
_NEVER = (
    nr.CLONE, nr.CLONE3, nr.EXECVE, nr.EXECVEAT, nr.EXIT, nr.RT_SIGPROCMASK,
    219, 101, 15,  # restart_syscall, ptrace, rt_sigreturn
    273, 334, 131,  # set_robust_list, rseq, sigaltstack: a thread's own set-up, signals blocked
)  # fmt: skip


def _words(data: bytes, offset: int = 0, count: int | None = None) -> list[int]:
    n = (len(data) - offset) // 8 if count is None else count
    return list(struct.unpack_from(f"<{n}Q", data, offset))


def _pack(words: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(words)}Q", *(w & 0xFFFFFFFFFFFFFFFF for w in words))


class FrameVectors(ThreadVectors):
    """The vector and opmask registers saved in a signal frame (XSAVE standard layout, as
    ``NT_X86_XSTATE`` gives them): what a masked access's mask is read from."""

    def __init__(self, data: bytes) -> None:
        super().__init__(0)
        self._data = bytearray(data)

    def flush(self) -> None:  # read only
        pass


@dataclass
class AgentMapping:
    """A traced mapping in one session, with where the agent aliased it."""

    mapping: Mapping
    #: The bytes traced (a pattern's window may start or end inside a page).
    lo: int
    hi: int
    #: Where the agent aliased the armed pages, ``[base, end)``, the window's whole pages.
    alias: int = 0

    @property
    def base(self) -> int:
        return self.lo & ~0xFFF

    @property
    def end(self) -> int:
        return (self.hi + 0xFFF) & ~0xFFF


@dataclass
class _Pending:
    reloc: Relocation
    form: InstructionForm
    insn: iced.Instruction
    regs: Registers
    reads: list[int]
    accesses: list[tuple[MemAccess, AgentMapping]]
    addr: int


@dataclass
class Session:
    """One address space running the agent."""

    pid: int
    sock: socket.socket
    #: The traced pieces (a mapping partly unmapped or replaced keeps its id in its pieces).
    mappings: list[AgentMapping] = field(default_factory=list)
    forms: dict[int, Decoded] = field(default_factory=dict)
    #: Whether the code at an address cannot change (not in a writable mapping).
    cacheable: dict[int, bool] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    #: Syscalls run for a thread, waiting for their result.
    syscalls: dict[int, tuple[str, Plan]] = field(default_factory=dict)
    mem: int = -1
    #: What the agent's seccomp filters in the process look at (they outlive exec).
    covered: list[tuple[int, int]] = field(default_factory=list)
    filters: int = 0
    covers_all: bool = False

    def syscall_spans(self) -> Spans:
        return Spans(
            [
                Span(
                    m.lo,
                    m.hi,
                    m.mapping.map_id,
                    m.mapping.phys,
                    m.alias + (m.lo - m.base) if m.alias else None,
                    aliasable=bool(m.alias),
                )
                for m in self.mappings
            ]
        )

    def spans(self) -> list[Traced]:
        return [Traced(m.base, m.end, m.alias) for m in self.mappings]

    def mapping_at(self, addr: int, width: int = 1) -> AgentMapping | None:
        for m in self.mappings:
            if m.lo < addr + width and addr < m.hi:
                return m
        return None

    def _pieces(self, addr: int, n: int) -> list[tuple[int, int, int]]:
        """``[addr, addr + n)`` as (offset, length, where to reach it): traced bytes through
        the agent's alias (their pages are PROT_NONE; the kernel writes no shared page
        through ``/proc/PID/mem`` without write permission), the rest where they are."""
        out = []
        at = addr
        while at < addr + n:
            m = next((m for m in self.mappings if m.alias and m.base <= at < m.end), None)
            if m is None:
                nxt = min((m.base for m in self.mappings if m.alias and m.base > at), default=addr + n)
                end = min(addr + n, nxt)
                out.append((at - addr, end - at, at))
            else:
                end = min(addr + n, m.end)
                out.append((at - addr, end - at, m.alias + (at - m.base)))
            at = end
        return out

    def read(self, addr: int, n: int) -> bytes:
        data = bytearray(n)
        for off, length, where in self._pieces(addr, n):
            with contextlib.suppress(OSError):
                data[off : off + length] = os.pread(self.mem, length, where).ljust(length, b"\0")
        return bytes(data)

    def write(self, addr: int, data: bytes) -> None:
        for off, length, where in self._pieces(addr, len(data)):
            with contextlib.suppress(OSError):
                os.pwrite(self.mem, data[off : off + length], where)


class AgentTracer:
    """Trace one program with the in-process agent (see the module docstring)."""

    backend = "agent"

    def __init__(
        self,
        patterns: Sequence[str],
        emit: Callable[[Record], None],
        mode: Mode = Mode.AUTO,
        roots: Roots | None = None,
    ) -> None:
        self.patterns = [Pattern.parse(p) for p in patterns]
        self.matched: set[str] = set()
        self.log = MmioTrace(emit)
        self.mode = mode
        self.stats = TraceStats()
        self.roots = Roots.from_env() if roots is None else roots
        self.decoder = Decoder()
        self.sessions: dict[int, Session] = {}  # by socket fd
        self.root_pid = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._sel = selectors.DefaultSelector()
        self._unplaced: set[str] = set()
        self._said: set[str] = set()
        self._stop: str | None = None
        self._lost = 0
        # The ring: a memfd shared with every agent, never a path others can open.
        self._ring = RecordRing(_RING_NAME, RING_CAP)
        self._root, self._root_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._sel.register(self._root, selectors.EVENT_READ, "root")
        self._sel.register(self._wake, selectors.EVENT_READ, "wake")
        self._library = str(library_path())

    # -- start ------------------------------------------------------------------------------

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` with the agent loaded (it runs at once: the agent connects first)."""
        if not argv:
            raise UsageError("no program to run")
        path = resolve_program(argv[0])
        child_env = dict(os.environ if env is None else env)
        fds = (self._root_child.fileno(), self._ring.fd, self._wake)
        preload = child_env.get("LD_PRELOAD", "")
        child_env["LD_PRELOAD"] = f"{self._library} {preload}".strip()
        child_env["KMMIO_AGENT"] = ":".join(map(str, fds))
        for fd in fds:
            os.set_inheritable(fd, True)
        try:
            self._child = subprocess.Popen(list(argv), executable=path, env=child_env, pass_fds=fds)
        except OSError as exc:
            raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        finally:
            for fd in fds:
                os.set_inheritable(fd, False)
        self.root_pid = self._child.pid
        return self.root_pid

    # -- the loop ---------------------------------------------------------------------------

    def accesses_so_far(self) -> int:
        c = self.log.counts
        return c["R"] + c["W"]

    def request_stop(self, why: str) -> None:
        """End the trace (a signal to kmmio, ``--duration``): the agents let go of their
        pages and the program runs on untraced."""
        self._stop = why

    def run(self, duration: float | None = None) -> int:
        """Serve the agents until the program (and every process it started that runs
        the agent) has exited, or the trace is stopped; the program's exit status."""
        assert self._child is not None
        deadline = None if duration is None else time.monotonic() + duration
        status: int | None = None
        stops = (signal.SIGTERM, signal.SIGHUP)
        old = {sig: signal.signal(sig, self._on_signal) for sig in stops}
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the program's
        try:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop = self._stop or "--duration"
                if self._stop is not None:
                    self._detach(self._stop)
                    return 0
                for key, _ in self._sel.select(timeout=0.02):
                    self._event(key.data)
                self._drain()
                if status is None:
                    code = self._child.poll()
                    if code is not None:
                        status = 128 - code if code < 0 else code
                if status is not None and not self.sessions:
                    break
        except BaseException:
            # Failing inside: the programs get their pages back and run on; the log keeps
            # what it has.
            with contextlib.suppress(Exception):
                self._detach("kmmio failed")
            raise
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            signal.signal(signal.SIGINT, old_int)
            self._end()
        return status

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop = signal.Signals(signum).name

    def _event(self, what: object) -> None:
        if what == "root":
            self._hello()
        elif what == "wake":
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._wake)
        elif isinstance(what, Session):
            self._request(what)

    def _drain(self) -> int:
        """The ring's committed records into the log, after what the log holds back."""
        total = 0
        while True:
            text, reads, writes = self._ring.take()
            if not text:
                return total
            self.log.lines_served(text, reads, writes)
            self.stats.emulated += reads + writes
            total += reads + writes

    def _end(self) -> None:
        """The last records; those a dead thread reserved and never wrote are lost."""
        self._drain()
        kept, kept_records = self._ring.kept()  # kept relocations the agents ran
        self.stats.stepped += kept
        self.stats.emulated -= kept_records
        while self._ring.pending() > 0:
            self._ring.skip()
            self.log.counts["LOST"] += 1
            self._drain()
        for s in list(self.sessions.values()):
            self._close(s)
        self.log.finish()

    def _detach(self, why: str) -> None:
        """Every agent lets go: pages back as the program asked, nothing more recorded."""
        self._ring.detach()
        for s in list(self.sessions.values()):
            with contextlib.suppress(KmmioError):
                pt.sigqueue(s.pid, signal.SIGSEGV, _NUDGE)
        end = time.monotonic() + 2.0
        for s in list(self.sessions.values()):
            while time.monotonic() < end and self._aliases_left(s):
                for key, _ in self._sel.select(timeout=0.01):
                    if isinstance(key.data, Session):
                        self._request(key.data)
        self._drain()
        self.log.note(f"detached ({why}): the program runs on untraced")

    @staticmethod
    def _aliases_left(s: Session) -> bool:
        try:
            starts = {e.start for e in read_maps(s.pid)}
        except OSError:
            return False
        return any(m.alias in starts for m in s.mappings if m.alias)

    # -- sessions ---------------------------------------------------------------------------

    def _hello(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self._root, 64, 1)
        except OSError:
            return
        if not fds:
            return
        sock = socket.socket(fileno=fds[0])
        _, pid, why, parent = _words(data, 0, 4)
        session = Session(pid, sock)
        for old in [s for s in self.sessions.values() if s.pid == pid]:
            # An exec: the old image is gone, its seccomp filters stay.
            session.covered, session.filters, session.covers_all = old.covered, old.filters, old.covers_all
            self._close(old)
        try:
            session.mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            session.mem = -1
        self.sessions[sock.fileno()] = session
        self._sel.register(sock, selectors.EVENT_READ, session)
        if why == 1:
            self._inherit(session, parent)
        else:  # a new image (start, exec): a base filter for its own code
            code = base_filter(
                (), SECCOMP_RET_TRAP | _KM_DATA, GADGET_RETS, (signal.SIGSEGV, signal.SIGSYS), _own_code(pid)
            )
            session.filters += 1
            sock.send(_pack([1, len(code), *_words(code)]))

    def _inherit(self, child: Session, parent_pid: int) -> None:
        """A forked child: the parent's traced mappings, its own ids (``MAP`` records)."""
        parent = next((s for s in self.sessions.values() if s.pid == parent_pid), None)
        pairs: list[int] = []
        if parent is not None:
            child.covered, child.filters, child.covers_all = (
                list(parent.covered),
                parent.filters,
                parent.covers_all,
            )
            self._drain()
            try:  # what the child got (not MADV_DONTFORK's pages)
                present = [(e.start, e.end) for e in read_maps(child.pid)]
            except OSError:
                present = [(m.lo, m.hi) for m in parent.mappings]
            ids: dict[int, Mapping] = {}
            for m in parent.mappings:
                old = m.mapping
                if not any(a < m.hi and m.lo < b for a, b in present):
                    pairs += [old.map_id, 0]  # the agent lets go of it
                    continue
                if old.map_id in ids:
                    child.mappings.append(AgentMapping(ids[old.map_id], m.lo, m.hi, m.alias))
                    continue
                new = self.log.new_mapping(
                    None,  # type: ignore[arg-type]
                    old.path,
                    old.virt,
                    old.phys,
                    old.length,
                    old.prot,
                    0,
                    child.pid,
                    old.page_size,
                    old.info,
                )
                new.inode, new.offset = old.inode, old.offset
                ids[old.map_id] = new
                child.mappings.append(AgentMapping(new, m.lo, m.hi, m.alias))
                pairs += [old.map_id, new.map_id]
        child.sock.send(_pack([len(pairs) // 2, *pairs]))

    def _close(self, s: Session) -> None:
        """An address space is gone (exit, exec): its mappings end; a relocated access in
        flight is lost."""
        self._drain()
        for mapping in {m.mapping.map_id: m.mapping for m in s.mappings}.values():
            self.log.end_mapping(mapping, 0, s.pid)
        self.log.counts["LOST"] += len(s.pending)
        s.mappings.clear()
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(s.sock)
        self.sessions.pop(s.sock.fileno(), None)
        s.sock.close()
        if s.mem >= 0:
            os.close(s.mem)

    def _request(self, s: Session) -> None:
        try:
            data = s.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(s)
            return
        kind = _words(data, 0, 1)[0]
        if kind == M_MAPS:
            _, tid, pc, lo, hi = _words(data, 0, 5)
            s.sock.send(_pack(self._maps(s, tid, pc, lo, hi)))
        elif kind == M_ARMED:
            _, map_id, alias, _private, lo = _words(data, 0, 5)
            for m in s.mappings:
                if m.mapping.map_id == map_id and m.lo == lo:
                    m.alias = alias
        elif kind == M_DECODE:
            _, tid, pc, _addr = _words(data, 0, 4)
            s.sock.send(_pack(self._decode(s, pc, data[32:48])))
        elif kind == M_PRE:
            s.sock.send(self._pre(s, data))
        elif kind == M_POST:
            s.sock.send(self._post(s, data))
        elif kind == M_SYSCALL:
            s.sock.send(_pack(self._syscall(s, _words(data, 0, 11))))
        elif kind == M_SYSDONE:
            _, tid, ret = _words(data, 0, 3)
            self._syscall_done(s, tid, ret - (1 << 64) if ret >= 1 << 63 else ret)
            s.sock.send(_pack([0]))

    # -- mappings ---------------------------------------------------------------------------

    def _matches(self, e: MapEntry) -> Pattern | None:
        """The pattern a mapping matches, if it is none of the agent's own (its library, its
        ring)."""
        if e.path == self._library or e.path.startswith(f"/memfd:{_RING_NAME}"):
            return None
        return match(self.patterns, e, self.matched)

    def _maps(self, s: Session, tid: int, pc: int, lo: int, hi: int) -> list[int]:
        """Reconcile the traced mappings in [lo, hi) with ``/proc/PID/maps``: the actions
        for the agent (count, then (action, map id, lo, hi, phys, prot) each)."""
        self._drain()
        actions: list[int] = []
        # The agent's aliases are no mappings of the program's (those of mappings ended
        # here go only once the agent reads this answer).
        aliases = {m.alias for m in s.mappings}
        whole = hi - lo == 1  # shmat/shmdt: the segment at lo, whatever its length
        try:
            entries = read_maps(s.pid)
        except OSError:
            entries = []
        if whole:
            lo, hi = next(((e.start, e.end) for e in entries if e.start <= lo < e.end), (lo, hi))
        for m in [m for m in s.mappings if m.lo < hi and lo < m.hi]:
            actions += [A_DISARM, m.mapping.map_id, m.lo, m.hi, 0, 0]
            s.mappings.remove(m)
            # What is left of it outside [lo, hi) and still the same bytes of the same
            # object keeps its id (as the ptrace backend's probes do).
            for a, b in ((m.lo, min(m.hi, lo)), (max(m.lo, hi), m.hi)):
                if a < b and not whole and _same_object(entries, m.mapping, a, b):
                    s.mappings.append(AgentMapping(m.mapping, a, b))
                    phys = m.mapping.phys + (a - m.mapping.virt)
                    actions += [A_ARM, m.mapping.map_id, a, b, phys, m.mapping.prot]
            if not any(p.mapping is m.mapping for p in s.mappings):
                self.log.end_mapping(m.mapping, pc, tid)
        for e in entries:
            a, b = (e.start, e.end) if whole and e.start <= lo < e.end else (max(e.start, lo), min(e.end, hi))
            if a >= b or e.start in aliases:
                continue
            pat = self._matches(e)
            if pat is None:
                continue
            place = (
                None
                if e.anonymous
                else place_or_say(e.path, e.offset, s.pid, None, self.roots, self._unplaced)
            )
            offset = object_offset(e, place)
            window = pat.window(e, a, b, offset)
            if window is None:
                continue
            a, b = window
            if s.mapping_at(a, b - a) is not None:
                continue
            obj_offset = offset + (a - e.start)
            phys, info = phys_and_info(e, a, place, offset)
            try:
                page = max(kernel_page_size(s.pid, e.start), 4096) if e.path.startswith("/") else 4096
            except (OSError, ValueError):
                page = 4096
            mapping = self.log.new_mapping(
                None,  # type: ignore[arg-type]
                e.path,
                a,
                phys,
                b - a,
                e.prot,
                pc,
                tid,
                page,
                info,
            )
            mapping.inode, mapping.offset = e.inode, obj_offset
            s.mappings.append(AgentMapping(mapping, a, b))
            actions += [A_ARM, mapping.map_id, a, b, phys, e.prot]
        # Code there may be new: decoded instructions in the range are forgotten.
        for pc_at in [p for p in s.forms if lo <= p < hi]:
            del s.forms[pc_at]
            s.cacheable.pop(pc_at, None)
        return [len(actions) // 6, *actions, *self._cover(s)]

    def _cover(self, s: Session) -> list[int]:
        """A seccomp filter for the agent to add, trapping syscalls that reach traced
        ranges no filter of the process looks at yet (as :meth:`SyscallPath.cover` does for
        ptrace): its length in bytes and its words, or ``[0]``."""
        if s.covers_all:
            return [0]
        missing = uncovered([(m.lo, m.hi) for m in s.mappings], s.covered)
        if not missing:
            return [0]
        everything = s.filters + 1 >= MAX_RANGE_FILTERS
        code = range_filter(missing, everything, SECCOMP_RET_TRAP | _KM_DATA, _NEVER, GADGET_RETS)
        s.filters += 1
        s.covered.extend(missing)
        s.covers_all = everything
        return [len(code), *_words(code)]

    # -- syscalls ---------------------------------------------------------------------------

    def _syscall(self, s: Session, req: list[int]) -> list[int]:
        """A syscall a filter trapped: how the agent runs it (number, six arguments, whether
        to report its result, pages to lend: count and ranges)."""
        _, tid, number, *args6, sp, _pc = req
        args = tuple(args6)
        name = syscall_name(number)
        spans = s.syscall_spans()
        if number in (nr.EXIT, nr.EXIT_GROUP):
            return self._exiting(s, tid, number, args, spans)
        plan = plan_syscall(SYSCALLS.get(number), number, args, spans, s.read, sp)
        if isinstance(plan, NeedAliases):  # an alias the agent could not make
            plan = Lend(tuple((sp_.start, sp_.end) for sp_ in plan.spans), ())
        if plan is None:
            return [number, *args, 0, 0]
        self._drain()
        s.syscalls[tid] = (name, plan)
        if isinstance(plan, Redirect):
            for at, data in plan.writes:
                s.write(at, data)
            return [plan.nr, *plan.args, 1, 0]
        lent = [w for r in plan.ranges for w in r]
        return [number, *args, 1, len(plan.ranges), *lent]

    def _syscall_done(self, s: Session, tid: int, ret: int) -> None:
        flight = s.syscalls.pop(tid, None)
        if flight is None:
            return
        name, plan = flight
        assert plan is not None and not isinstance(plan, NeedAliases)
        if isinstance(plan, Redirect):
            for src, dst, n, above in plan.copy_back:
                if ret > above:
                    s.write(dst, s.read(src, n))

        def read_u32(addr: int) -> int:
            return int.from_bytes(s.read(addr, 4), "little")

        for span, addr, size, d in touched(plan.touches, ret, read_u32):
            self.log.kernel_access(name, d.value, span.map_id, span.phys_of(addr), size, tid)

    def _string_records(self, s: Session, p: _Pending, done: int, tid: int, ts: int) -> None:
        """The records of ``done`` elements of a relocated string instruction, in program
        order: element ``k``'s accesses are the first element's moved on by ``k`` steps.
        Values are read after the run (a ``movs`` read is what it wrote)."""
        first = p.form.accesses(p.regs)
        step = string_regs(p.regs, p.form, 1).rsi - p.regs.rsi if done > 1 else 0
        dst = string_regs(p.regs, p.form, 0).rdi
        movs = is_movs(p.insn)
        pages = _Pages(s)
        pc = p.regs.rip
        for k in range(done):
            shift = k * step
            for a in first:
                addr = (a.addr + shift) & 0xFFFFFFFFFFFFFFFF
                m = s.mapping_at(addr, a.width)
                if m is None:
                    continue
                if a.kind is AccessKind.READ and movs:
                    value = pages.read((dst + shift) & 0xFFFFFFFFFFFFFFFF, a.width)
                else:
                    value = pages.read(addr, a.width)
                kind = Kind.READ if a.kind is AccessKind.READ else Kind.WRITE
                self.log.record(kind, a.width, addr, value, pc, tid, m.mapping, p.form, ts)

    def _exiting(self, s: Session, tid: int, number: int, args: tuple[int, ...], spans: Spans) -> list[int]:
        """``exit``/``exit_group``: the kernel walks the dying thread's robust futex list;
        where it reaches traced memory the pages are lent (for ``exit_group`` the agent lets
        go of every page: the process is going)."""
        reached = robust_reach(tid, s.read, spans)
        if not reached:
            return [number, *args, 0, 0]
        self._drain()
        for span, a, d in robust_marks(tid, s.read, spans, reached):
            self.log.kernel_access("robust_list", d.value, span.map_id, span.phys_of(a), 4, tid)
        ranges = (
            [(sp_.start, sp_.end) for sp_ in spans.spans]
            if number == nr.EXIT_GROUP
            else [(a, a + n) for a, n in reached]
        )
        return [number, *args, 0, len(ranges), *(w for r in ranges for w in r)]

    # -- instructions -----------------------------------------------------------------------

    def _decode(self, s: Session, pc: int, code: bytes) -> list[int]:
        decoded = self.decoder.decode(pc, code[:MAX_INSN_LEN])
        s.forms[pc] = decoded
        try:
            entry = next((e for e in read_maps(s.pid) if e.start <= pc < e.end), None)
        except OSError:
            entry = None
        cacheable = entry is not None and "w" not in entry.perms
        s.cacheable[pc] = cacheable
        return descriptor(decoded, self.mode is not Mode.STEP, cacheable)

    def _form(self, s: Session, pc: int) -> Decoded:
        found = s.forms.get(pc)
        if found is None:
            found = s.forms[pc] = self.decoder.decode(pc, s.read(pc, MAX_INSN_LEN))
        return found

    def _say(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self.log.note(f"kmmio: {text}")
            print(f"kmmio: {text}", file=sys.stderr)

    def _pre(self, s: Session, data: bytes) -> bytes:
        _, tid, tramp, addr, xsize = _words(data, 0, 5)
        words = _words(data, 40, _NWORDS)
        xsave = data[40 + 8 * _NWORDS : 40 + 8 * _NWORDS + xsize]
        regs = Registers.from_words(words, tid)
        form = self._form(s, regs.rip).form
        vectors = FrameVectors(xsave) if form.masked and xsave else None
        found = form.accesses(regs, vectors) if form.known else []
        insn = iced.Decoder(64, form.code, ip=form.ip).decode()
        try:
            reloc = relocate(insn, form, regs, s.spans(), tramp, [(a.addr, a.width) for a in found], addr)
        except Unsupported as exc:
            self._say(f"cannot perform in the program: {exc} (the program gets the fault)")
            return _pack([P_GENUINE, 0])
        for src, dst, n in reloc.copy_in:
            s.write(dst, s.read(src, n))
        traced = [(a, m) for a in found if (m := s.mapping_at(a.addr, a.width)) is not None]
        reads = [
            int.from_bytes(s.read(a.addr, a.width), "little") if a.kind is AccessKind.READ else 0
            for a, _ in traced
        ]
        s.pending[tid] = _Pending(reloc, form, insn, regs, reads, traced, addr)
        code = reloc.code + bytes(-len(reloc.code) % 8)
        assert len(reloc.code) < TRAMP_CODE
        sets = [w for pair in reloc.sets for w in pair]
        keep = [0]
        if (
            s.cacheable.get(regs.rip)
            and self.mode is not Mode.STEP
            and form.known
            and all(op.bit_offset is None for op in form.operands)
        ):
            if not form.masked:
                listed = [(a.kind is AccessKind.WRITE, a.addr, a.width) for a, _ in traced]
                keep = template(insn, reloc, regs, listed)
            elif len(form.operands) == 1:
                op = form.operands[0]  # the masked operand, whole: the agent finds its bytes
                keep = template(insn, reloc, regs, [(op.writes, op.address(regs), op.width)], op.mask)
        return _pack([P_RUN, len(reloc.sets), *sets, len(reloc.code)]) + code + _pack(keep)

    def _post(self, s: Session, data: bytes) -> bytes:
        _, tid = _words(data, 0, 2)
        after = Registers.from_words(_words(data, 16, _NWORDS), tid)
        p = s.pending.pop(tid)
        for src, dst, n in p.reloc.copy_out:
            s.write(dst, s.read(src, n))
        out, done = p.reloc.after(p.regs, after, p.form.ip + p.form.length)
        self._drain()
        self.stats.stepped += 1
        ts = now_us()
        pc = p.regs.rip
        if p.reloc.string:
            self._string_records(s, p, done, tid, ts)
        elif not p.accesses:
            m = s.mapping_at(p.addr)
            if m is not None:
                self.log.unknown(m.mapping, p.addr, p.form.code, pc, tid)
        else:
            for (a, m), before in zip(p.accesses, p.reads, strict=True):
                if a.kind is AccessKind.READ:
                    value = before
                else:
                    value = int.from_bytes(s.read(a.addr, a.width), "little")
                kind = Kind.READ if a.kind is AccessKind.READ else Kind.WRITE
                self.log.record(kind, a.width, a.addr, value, pc, tid, m.mapping, p.form, ts)
        sets = [w for name, value in out.items() for w in (_WORD[name], value)]
        return _pack([len(out), *sets])


class _Pages:
    """The program's memory read a page at a time and kept for one relocated run (a
    ``rep`` string instruction's elements are read from one ``pread`` a page)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.pages: dict[int, bytes] = {}

    def read(self, addr: int, n: int) -> int:
        out = bytearray()
        while n:
            base = addr & ~0xFFF
            page = self.pages.get(base)
            if page is None:
                page = self.pages[base] = self.s.read(base, 0x1000)
            take = min(n, base + 0x1000 - addr)
            out += page[addr - base : addr - base + take]
            addr, n = addr + take, n - take
        return int.from_bytes(out, "little")


def _same_object(entries: list[MapEntry], mapping: Mapping, a: int, b: int) -> bool:
    """Whether ``[a, b)`` of ``mapping`` still maps the same object at the same offsets."""
    for e in entries:
        if e.start <= a < e.end:
            if b > e.end or e.inode != mapping.inode:
                return False
            return e.anonymous or e.offset + (a - e.start) == mapping.offset + (a - mapping.virt)
    return False


_ADDR_NO_RANDOMIZE = 0x0040000


def _own_code(pid: int) -> list[tuple[int, int]]:
    """The executable ranges of the program itself and of libc (whose own ``mmap`` calls,
    ``sem_open``'s say, go past the interposed one), split at 4 GiB blocks: where the
    agent's base filter looks for raw mapping calls.  libc's only with address-space
    randomisation: without it the next image's libc lies at the same place after an
    ``exec`` (the filter stays), and maps things before the agent there can take a trap."""
    try:
        entries = read_maps(pid)
        exe = os.readlink(f"/proc/{pid}/exe")
        with open(f"/proc/{pid}/personality") as f:
            fixed = int(f.read(), 16) & _ADDR_NO_RANDOMIZE
        with open("/proc/sys/kernel/randomize_va_space") as f:
            fixed = fixed or f.read().strip() == "0"
    except (OSError, ValueError):
        return []
    out = []
    for e in entries:
        name = os.path.basename(e.path)
        libc = not fixed and (name.startswith("libc.so") or name.startswith("libc-"))
        if "x" in e.perms and (e.path == exe or libc):
            lo = e.start
            while lo < e.end:
                hi = min(e.end, (lo | 0xFFFFFFFF) + 1)
                out.append((lo, hi))
                lo = hi
    return out
