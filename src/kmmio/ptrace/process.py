"""Traced threads and processes: stopping, stepping and injecting ``mprotect``.

Theory of operation
-------------------
A :class:`Process` is one address space: its own kmmio engine, its mappings, its threads,
its ``/proc/PID/mem``.  The tracer makes a page fault (``mprotect(PROT_NONE)``) or opens it
again by running an ``mprotect`` *inside* the tracee: a stopped thread's registers are
saved, pointed at a ``syscall`` instruction found in the vDSO, single-stepped, and restored
(:meth:`Process.inject_mprotect`).  Its fourth argument carries the marker the seccomp filter
lets through, so the tracer's own calls never stop the tracee.

While a page is open for one thread's single step, no other thread of the address space
may run: :meth:`Process.stop_others` interrupts them (``PTRACE_INTERRUPT``) and waits for each
to stop; any event one reports instead is queued and handled after the step, as if it had
just arrived.  :meth:`Process.resume_others` lets them go again.
"""

from __future__ import annotations

import errno
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kmmio.backend import _ptrace as pt
from kmmio.backend.memory import ProcessMemory
from kmmio.backend.procmaps import read_maps
from kmmio.backend.seccomp import INJECT_MARKER
from kmmio.backend.waitstatus import PtraceEvent, Stopped, WaitEvent, decode_status
from kmmio.engine import Kmmio, Protect
from kmmio.errors import KmmioError, TraceeError, TraceeGone
from kmmio.ptrace.bus import ProcessBus
from kmmio.x86.regs import Registers

if TYPE_CHECKING:
    from kmmio.mmiotrace import Mapping

#: The events a waited-for thread may report, queued per tracer.
EventQueue = deque[WaitEvent]


@dataclass
class Thread:
    """One traced thread (a task: ``tid``), in the address space ``proc``."""

    tid: int
    proc: Process
    tgid: int
    #: Resumed by us and not yet seen stopped.
    running: bool = False
    #: Stopped by :meth:`Process.stop_others`; resume it afterwards.
    held: bool = False
    #: The syscall whose exit we wait for (seccomp stop seen), with its arguments.
    syscall: int | None = None
    syscall_args: tuple[int, ...] = ()
    #: Signals that arrived while we were stepping it, to deliver when it runs again.
    pending_signals: list[int] = field(default_factory=list)
    #: A syscall reaching traced memory, redirected or with pages lent, until its exit
    #: (a :class:`kmmio.ptrace.syscall_path.InFlight`).
    kernel: Any = None
    #: Its redirected run failed with EFAULT: the next entry runs it with pages lent.
    retry_lend: bool = False
    #: Its robust futex list was seen to at its exit syscall.
    robust_handled: bool = False
    #: It just let the threads it held go (the tracer lets them run before it goes on).
    released_others: bool = False
    #: A syscall a :class:`kmmio.serve.Serving` took over, until its exit.
    served: Any = None


class Process:
    """One traced address space (a thread group, or a vfork child until it execs)."""

    def __init__(self, pid: int, queue: EventQueue) -> None:
        self.pid = pid
        self.engine = Kmmio()
        self.threads: dict[int, Thread] = {}
        self.mappings: list[Mapping] = []
        self.mem: ProcessMemory | None = None
        self.gadget: int | None = None
        self.queue = queue
        self.world_stopped = False
        #: While the world is stopped, the one thread allowed to run.
        self.runner: int | None = None
        self.bus = ProcessBus(self)
        #: Attached, not spawned: no seccomp filter, so every syscall stops (PTRACE_SYSCALL).
        self.trace_syscalls = False
        #: The thread whose syscall is changing traced pages while the others are held.
        self.syscall_holder: int | None = None
        #: The program's own SIGSEGV action (``struct kernel_sigaction`` bytes) when it is
        #: not the default, see :mod:`kmmio.ptrace.sigsegv`.
        self.segv_action: bytes | None = None
        #: Aliases of traced mappings (map id -> address in the program), the ranges they
        #: take (start -> end), and the mappings that cannot have one (private): see
        #: :mod:`kmmio.ptrace.syscall_path`.
        self.aliases: dict[int, int] = {}
        self.alias_ranges: dict[int, int] = {}
        self.no_alias: set[int] = set()
        #: The ranges the program's seccomp range filters watch, how many it has, and
        #: whether the last stops every pointer-taking syscall.
        self.covered: list[tuple[int, int]] = []
        self.range_filters = 0
        self.covers_all = False
        #: The SQE arrays of the program's io_urings (address -> length).
        self.uring_sqes: dict[int, int] = {}

    # -- image ----------------------------------------------------------------------------

    def attach_image(self) -> None:
        """(Re)open memory and find a ``syscall`` instruction after exec or fork."""
        if self.mem is not None:
            self.mem.close()
        self.mem = ProcessMemory(self.pid)
        self.gadget = self._find_gadget()

    def _find_gadget(self) -> int | None:
        assert self.mem is not None
        executable = [m for m in read_maps(self.pid) if m.perms[2] == "x"]
        for entry in sorted(executable, key=lambda m: m.path != "[vdso]"):  # the vDSO first
            try:
                code = self.mem.read(entry.start, min(entry.length, 1 << 20))
            except TraceeError:
                continue
            at = code.find(b"\x0f\x05")
            if at >= 0:
                return entry.start + at
        return None

    def mapping_at(self, addr: int) -> Mapping | None:
        """The traced mapping holding ``addr`` (a process has few)."""
        for m in self.mappings:
            if m.virt <= addr < m.end:
                return m
        return None

    def read(self, addr: int, size: int) -> bytes:
        if self.mem is None:
            self.attach_image()
        assert self.mem is not None
        return self.mem.read(addr, size)

    def read_code(self, addr: int, size: int) -> bytes:
        if self.mem is None:
            self.attach_image()
        assert self.mem is not None
        return self.mem.read_upto(addr, size)

    # -- threads --------------------------------------------------------------------------

    def add_thread(self, tid: int, tgid: int) -> Thread:
        thread = Thread(tid, self, tgid)
        self.threads[tid] = thread
        self.engine.thread_added(tid)
        return thread

    def any_stopped_thread(self) -> Thread | None:
        for t in self.threads.values():
            if not t.running:
                return t
        return None

    def wait_thread(self, tid: int) -> WaitEvent:
        """Wait for one given thread's next stop or death."""
        got = pt.wait(tid)
        if got is None:
            raise TraceeError("waitpid", errno.ECHILD, tid)
        return decode_status(*got)

    def stop_others(self, me: int, on_death: Callable[[WaitEvent], None]) -> None:
        """Stop every other thread of this address space (none may run while a page is open)."""
        if self.world_stopped:
            return
        self.world_stopped = True
        self.runner = me
        targets = []
        for t in self.threads.values():
            if t.tid == me or not t.running:
                continue
            try:
                pt.interrupt(t.tid)
            except TraceeGone:
                continue
            targets.append(t)
        for t in targets:
            ev = self.wait_thread(t.tid)
            t.running = False
            t.held = True
            if isinstance(ev, Stopped) and ev.event == PtraceEvent.STOP and ev.signal == signal.SIGTRAP:
                continue
            if isinstance(ev, Stopped):
                self.queue.append(ev)
            else:
                t.held = False
                on_death(ev)

    def resume_others(self) -> None:
        if not self.world_stopped:
            return
        self.world_stopped = False
        self.runner = None
        queued = {ev.tid for ev in self.queue}
        for t in list(self.threads.values()):
            if t.held:
                t.held = False
                if t.tid in queued:
                    continue
                resume(t, 0)

    # -- injection ------------------------------------------------------------------------

    def inject_mprotect(
        self, thread: Thread, start: int, length: int, prot: int, regs: Registers | None = None
    ) -> int:
        """Run ``mprotect(start, length, prot)`` inside the tracee, on a stopped thread.

        ``regs`` are the thread's registers when the caller has just read them (the per-access
        path always has); they are what the thread gets back afterwards.  Returns the
        syscall's result (``-errno`` on failure).  The marker lets it through the seccomp
        filter without a stop.
        """
        return self.inject_syscall(thread, pt.SYS_MPROTECT, (start, length, prot, INJECT_MARKER), regs)

    def inject_syscall(
        self, thread: Thread, nr: int, args: tuple[int, ...], regs: Registers | None = None
    ) -> int:
        """Run syscall ``nr(*args)`` inside the tracee on a stopped thread, which then goes
        on exactly where it was; see :meth:`inject_mprotect`."""
        if self.gadget is None:
            self.attach_image()
            if self.gadget is None:
                raise KmmioError(f"no syscall instruction found in process {self.pid}")
        saved = pt.get_regs(thread.tid) if regs is None else regs
        # Registers known means a fault stop; otherwise the thread may be stopped on its way
        # into a syscall, which must be skipped now and made again afterwards.
        entry = regs is None and pt.get_syscall_info(thread.tid)[0] in (
            pt.SYSCALL_INFO_ENTRY,
            pt.SYSCALL_INFO_SECCOMP,
        )
        names = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
        call = saved.replace(rip=self.gadget, rax=nr, **dict(zip(names, args, strict=False)))
        if entry:
            call = call.replace(orig_rax=(1 << 64) - 1)
        pt.set_regs(thread.tid, call)
        while True:
            if self.step(thread).signal != signal.SIGTRAP:
                raise KmmioError(f"thread {thread.tid} faulted in an injected syscall")
            # Leaving a skipped syscall reports a step before the gadget has run.
            if not entry or pt.get_regs(thread.tid).rip == self.gadget + 2:
                break
        ret = pt.get_rax(thread.tid)
        pt.set_regs(thread.tid, saved.replace(rip=saved.rip - 2, rax=saved.orig_rax) if entry else saved)
        return ret - (1 << 64) if ret >= 1 << 63 else ret

    def step(self, thread: Thread) -> Stopped:
        """Single-step a stopped thread until it traps or faults (SIGSEGV/SIGBUS).

        Other signals that arrive meanwhile are held back and delivered when it runs on.
        """
        while True:
            pt.singlestep(thread.tid, 0)
            ev = self.wait_thread(thread.tid)
            if not isinstance(ev, Stopped):
                self.queue.append(ev)  # its end, for the tracer's loop to take
                raise TraceeGone("single-step", errno.ESRCH, thread.tid)
            if ev.event != PtraceEvent.NONE or ev.syscall:
                continue  # an interrupt or group stop while stepping: step again
            if ev.signal in (signal.SIGTRAP, signal.SIGSEGV, signal.SIGBUS):
                return ev
            thread.pending_signals.append(ev.signal)

    def apply(self, thread: Thread, effects: tuple[Protect, ...], regs: Registers | None = None) -> None:
        """Carry out engine effects with injected ``mprotect`` calls on ``thread``.

        ``regs``: the thread's current registers, if known (saves a GETREGS per call).
        """
        for e in effects:
            ret = self.inject_mprotect(thread, e.start, e.length, e.prot, regs)
            if ret < 0 and -ret != errno.ENOMEM:
                raise TraceeError(f"mprotect({e.start:#x}, {e.length:#x}, {e.prot})", -ret, thread.tid)


def resume(thread: Thread, sig: int) -> None:
    """Let a stopped thread go on, delivering ``sig`` (or a signal held back while stepping).

    While its address space has the others stopped (a page open, traced pages changing),
    a thread other than the one running stays stopped, held for :meth:`Process.resume_others`.
    """
    proc = thread.proc
    if proc.world_stopped and thread.tid != proc.runner:
        if sig:
            thread.pending_signals.insert(0, sig)
        thread.held = True
        return
    if sig == 0 and thread.pending_signals:
        sig = thread.pending_signals.pop(0)
    try:
        if (
            thread.syscall is not None
            or thread.kernel is not None
            or thread.served is not None
            or proc.trace_syscalls
        ):
            pt.syscall(thread.tid, sig)
        else:
            pt.cont(thread.tid, sig)
    except TraceeGone:
        pass
    thread.running = True
