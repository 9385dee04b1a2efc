"""The agent backend's tracer: starts the program with the agent, answers its questions,
drains its record ring into the log.

One :class:`Session` per address space the agent runs in (the program, each forked child,
each image after ``exec``), each on its own socket (handed over, with ``SCM_RIGHTS``, on the
socket every agent inherits).  The agent asks:

* ``MAPS lo hi``: the mappings there changed (``mmap``, ``munmap``, ``mremap``, ``shmat``,
  start): which to arm and disarm (``-m`` patterns against ``/proc/PID/maps``, as
  :mod:`kmmio.ptrace.regions` does for ptrace; ``MAP``/``UNMAP`` records);
* ``DECODE pc``: a new faulting instruction: the quick op's words, or "relocate";
  ``PRE``/``POST``: one relocated run, its records logged here
  (:mod:`kmmio.agent.instructions`);
* ``SYSCALL``/``SYSDONE``: a syscall its filters trapped (:mod:`kmmio.agent.syscall_door`).

Plain accesses never come here: the agent performs them and writes records into the ring,
which :meth:`AgentTracer._drain` turns into log lines (:mod:`kmmio.backend.ring`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from kmmio.agent import library_path
from kmmio.agent.instructions import InstructionDoor
from kmmio.agent.session import AgentMapping, Session, pack, words
from kmmio.agent.syscall_door import SyscallDoor, agent_base_filter
from kmmio.backend import _ptrace as pt
from kmmio.backend.procmaps import MapEntry, kernel_page_size, read_maps
from kmmio.backend.ring import RecordRing
from kmmio.devices import Roots, place_or_say
from kmmio.errors import KmmioError, UsageError
from kmmio.launch import resolve_program
from kmmio.mmiotrace import Mapping, MmioTrace
from kmmio.patterns import Pattern, match, object_offset, phys_and_info
from kmmio.ptrace.faults import Mode, TraceStats
from kmmio.trace.records import Record

M_HELLO, M_MAPS, M_DECODE, M_PRE, M_POST, M_ARMED, M_SYSCALL, M_SYSDONE = 1, 2, 3, 4, 5, 6, 7, 8
A_ARM, A_DISARM = 1, 2
#: Records each of the ring's lanes holds (3.75 MiB, 60 MiB for the 16: a memfd's pages
#: are only there once written); a full lane makes the faulting thread wait.
RING_CAP = 1 << 15
_NUDGE = 0x6B6D6D696F
_RING_NAME = "kmmio-ring"


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
        self.sessions: dict[int, Session] = {}  # by socket fd
        #: Agents that said hello (none at all: the program ran without one).
        self.connected = 0
        self.instructions = InstructionDoor(self.log, mode, self.stats, self._drain)
        self.kernel = SyscallDoor(self.log, self._drain)
        self.root_pid = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._sel = selectors.DefaultSelector()
        self._unplaced: set[str] = set()
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
                self._drain(settle=False)
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
        if not self.connected:
            print(
                "kmmio: the agent never started in the program (it cleared its environment or closed "
                "kmmio's descriptors?): nothing was traced; try --backend ptrace",
                file=sys.stderr,
            )
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

    def _drain(self, final: bool = False, settle: bool = True) -> int:
        """The ring's written records into the log, after what the log holds back
        (``final``: every one of them, the agents having stopped writing).  With
        ``settle`` (before a line of kmmio's own: a mapping, a syscall, the end), until
        no record stamped before now is held back behind one on its way (a few µs; at
        most a quarter of a second), so that the line comes after them."""
        total = 0
        deadline: float | None = None
        while True:
            got = self._ring.take(final)
            self.log.counts["LOST"] += got.lost
            if got.text:
                self.log.lines_served(got.text, got.reads, got.writes)
                self.stats.emulated += got.reads + got.writes
                total += got.reads + got.writes
            if got.text or got.lost:
                continue
            if not (settle and got.held):
                return total
            deadline = deadline or time.monotonic() + 0.25
            if time.monotonic() >= deadline:
                return total
            time.sleep(0.00005)

    def _end(self) -> None:
        """The last records; those a dead thread reserved and never wrote are lost."""
        self._drain(final=True)
        kept, kept_records = self._ring.kept()  # kept relocations the agents ran
        self.stats.stepped += kept
        self.stats.emulated -= kept_records
        while self._ring.pending() > 0:
            skipped = self._ring.skip()
            self.log.counts["LOST"] += skipped
            if not self._drain(final=True) and not skipped:
                break  # nothing written, nothing dead: a writer still at work (after a detach)
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
        self.connected += 1
        sock = socket.socket(fileno=fds[0])
        _, pid, why, parent = words(data, 0, 4)
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
            code = agent_base_filter(_own_code(pid))
            session.filters += 1
            sock.send(pack([1, len(code), *words(code)]))

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
        child.sock.send(pack([len(pairs) // 2, *pairs]))

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
        kind = words(data, 0, 1)[0]
        if kind == M_MAPS:
            _, tid, pc, lo, hi = words(data, 0, 5)
            s.sock.send(pack(self._maps(s, tid, pc, lo, hi)))
        elif kind == M_ARMED:
            _, map_id, alias, _private, lo = words(data, 0, 5)
            for m in s.mappings:
                if m.mapping.map_id == map_id and m.lo == lo:
                    m.alias = alias
        elif kind == M_DECODE:
            _, tid, pc, _addr = words(data, 0, 4)
            s.sock.send(pack(self.instructions.decode(s, pc, data[32:48])))
        elif kind == M_PRE:
            s.sock.send(self.instructions.pre(s, data))
        elif kind == M_POST:
            s.sock.send(self.instructions.post(s, data))
        elif kind == M_SYSCALL:
            s.sock.send(pack(self.kernel.syscall(s, words(data, 0, 11))))
        elif kind == M_SYSDONE:
            _, tid, ret = words(data, 0, 3)
            self.kernel.done(s, tid, ret - (1 << 64) if ret >= 1 << 63 else ret)
            s.sock.send(pack([0]))

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
        return [len(actions) // 6, *actions, *self.kernel.cover(s)]


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
