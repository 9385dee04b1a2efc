"""The tracer: wait for a stop, ask the engine, carry out its effects, log.

Theory of operation
-------------------
The program is spawned under ``PTRACE_SEIZE`` with a seccomp filter that stops it only on
the mmap family.  Every stop lands in :meth:`Tracer._handle`:

* ``SIGSEGV`` → :class:`kmmio.ptrace.faults.FaultPath`: a traced access is performed by the
  tracer or single-stepped the kmmio way; genuine faults go to the program.
* seccomp stops → the syscall runs to its exit stop, then :mod:`kmmio.ptrace.regions` reconciles the
  traced mappings with what ``mmap``/``munmap``/``mremap``/``mprotect`` did.
* clone/fork/vfork/exec events keep the thread and address-space tables right.
* any other signal is passed on untouched.

When the tracer must leave early (SIGTERM to kmmio tracing an attached program, an internal
error) :meth:`shutdown` stops every thread, restores every page's protection, and detaches,
so an attached program runs on unharmed.  A spawned program keeps its seccomp filter, so
it cannot run on untraced: SIGTERM and SIGHUP are passed on to it (see :meth:`run`), and
after an internal error it is killed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kmmio.backend import _ptrace as pt
from kmmio.backend.seccomp import install_filter
from kmmio.backend.waitstatus import (
    SEGV_STOP,
    PtraceEvent,
    Stopped,
    WaitEvent,
    decode_status,
)
from kmmio.devices import Place, Roots, place_or_say
from kmmio.engine import Probe
from kmmio.errors import KmmioError, LogWriteError, TraceeError, TraceeGone, UsageError
from kmmio.launch import check_attachable, resolve_program, why_not_permitted
from kmmio.mmiotrace import Mapping, MmioTrace, TracedAccess
from kmmio.ptrace import sigsegv
from kmmio.ptrace.fastloop import FastLoop
from kmmio.ptrace.faults import FaultPath, Mode, TraceStats
from kmmio.ptrace.process import EventQueue, Process, Thread, resume
from kmmio.ptrace.regions import Regions
from kmmio.ptrace.syscall_path import HOLD_LIMIT, Outcome, SyscallPath
from kmmio.ptrace.tasks import TaskBook
from kmmio.serve import Serving
from kmmio.sim.hooks import HookServing, OnRead, OnWrite
from kmmio.syscalls.filters import base_filter
from kmmio.syscalls.i386 import AUDIT_ARCH_I386, as_x86_64
from kmmio.trace.records import Record

if TYPE_CHECKING:
    from kmmio.maps.model import RegisterMap

__all__ = ["Mode", "TraceStats", "Tracer", "check_attachable", "resolve_program", "trace_program"]

OPTIONS = (
    pt.PTRACE_O_TRACESYSGOOD
    | pt.PTRACE_O_TRACEFORK
    | pt.PTRACE_O_TRACEVFORK
    | pt.PTRACE_O_TRACECLONE
    | pt.PTRACE_O_TRACEEXEC
    | pt.PTRACE_O_TRACESECCOMP
    | pt.PTRACE_O_TRACEEXIT
    | pt.PTRACE_O_EXITKILL
)
ATTACH_OPTIONS = (
    pt.PTRACE_O_TRACESYSGOOD
    | pt.PTRACE_O_TRACEFORK
    | pt.PTRACE_O_TRACEVFORK
    | pt.PTRACE_O_TRACECLONE
    | pt.PTRACE_O_TRACEEXEC
    | pt.PTRACE_O_TRACEEXIT
)
STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}


class _StopTracing(Exception):
    pass


#: How long the threads a syscall held run before that syscall's thread goes on.
TURN = 0.0005


#: The deadline of a :class:`Serving`'s ticks.
_TICK = ("tick", 0)


class _Wakeup(Exception):
    """A deadline passed while the loop waited (see :meth:`Tracer.watch`)."""


class Tracer(TaskBook):
    """Trace one program and everything it starts; see the module docstring."""

    def __init__(
        self,
        patterns: Sequence[str],
        emit: Callable[[Record], None],
        on_access: Callable[[TracedAccess], None] | None = None,
        on_map: Callable[[Mapping], None] | None = None,
        probes_for: Callable[[Mapping], list[Probe]] | None = None,
        mode: Mode = Mode.AUTO,
        regmap: RegisterMap | None = None,
        roots: Roots | None = None,
        serving: Serving | None = None,
        on_read: OnRead | None = None,
        on_write: OnWrite | None = None,
    ) -> None:
        self.queue: EventQueue = deque()
        if on_read is not None or on_write is not None:
            if serving is not None:
                raise UsageError("hooks (on_read, on_write) serve real devices: not with a serving")
            serving = HookServing(on_read, on_write)
        #: What serves traced accesses in place of memory (a device model...), if anything.
        self.serving = serving
        self.procs: dict[int, Process] = {}
        self.threads: dict[int, Thread] = {}
        self.orphans: dict[int, WaitEvent] = {}
        decode = None
        if regmap is not None:
            from kmmio.maps.format import Decoder

            decode = Decoder(regmap).decode_at
        self.log = MmioTrace(emit, on_access, decode)
        self.syscalls = SyscallPath(self.log)
        self.regions = Regions(list(patterns), self.log, on_map, probes_for, self.syscalls)
        #: Where sysfs and device nodes are read ($KMMIO_SYSFS, $KMMIO_DEV).
        self.roots = Roots.from_env() if roots is None else roots
        self.regions.place = self._place
        self._unplaced: set[str] = set()
        self.root_pid = 0
        self.root_status: int | None = None
        self._stop_requested = False
        self._stop_reason = ""
        self._in_wait = False
        self._ending = False
        #: Log notes made in a signal handler, written by the loop.
        self._notes: list[str] = []
        #: Deadlines on the one interval timer: "duration", or a holding thread's tid.
        self._deadlines: dict[str | int | tuple[str, int], float] = {}
        self._due: list[int | tuple[str, int]] = []
        self.syscalls.watch = self.watch
        self.faults = FaultPath(self.log, mode, self.queue.append)
        self.attached = False
        #: The compiled loop serving plain loads and stores (not in step mode, and not
        #: with a per-access callback, which wants Python's records).
        self.fast = (
            None
            if mode is Mode.STEP or on_access is not None or serving is not None
            else FastLoop(self.log, self.procs, self.threads, self._served)
        )
        if serving is not None:
            self.syscalls.guard = serving.kernel_reach
        if self.fast is not None:
            self.faults.learn = self.fast.learn

    def _process(self, pid: int) -> Process:
        """A new traced address space, its accesses served as :attr:`serving` says."""
        proc = Process(pid, self.queue)
        if self.serving is not None:
            proc.bus.serve = self.serving.view
        proc.bus.alias_of = lambda mapping: self._alias_of(proc, mapping)
        return proc

    def _alias_of(self, proc: Process, mapping: Mapping) -> int | None:
        """The alias of a shared traced mapping in the program (the one syscalls use),
        made in the thread at the fault if there is none yet: the tracer's view of the
        mapping where it may not open ``/proc/PID/map_files``."""
        if mapping.map_id not in proc.aliases and mapping.map_id not in proc.no_alias:
            thread = proc.bus.thread
            if thread is None or thread.proc is not proc:
                return None
            self.syscalls.make_alias(thread, mapping)
        return proc.aliases.get(mapping.map_id)

    @property
    def stats(self) -> TraceStats:
        return self.faults.stats

    def accesses_so_far(self) -> int:
        """Accesses traced so far, those the compiled loop served and has not yet handed
        to the log included (it may be read from another thread, for a status line)."""
        c = self.log.counts
        return c["R"] + c["W"] + (self.fast.pending() if self.fast is not None else 0)

    @property
    def mode(self) -> Mode:
        return self.faults.mode

    # -- start ----------------------------------------------------------------------------

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` under the tracer; it runs once :meth:`run` is called."""
        if not argv:
            raise UsageError("no program to run")
        path = resolve_program(argv[0])
        pt.check_ptrace_permitted()
        code = base_filter(self.serving.syscalls if self.serving is not None else ())
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child, until execve
            try:
                os.close(go_w)
                os.close(err_r)
                os.read(go_r, 1)
                os.close(go_r)
                if self.serving is not None:
                    self.serving.prepare_child()
                install_filter(code)
                if env is None:
                    os.execv(path, list(argv))
                os.execve(path, list(argv), env)
            except BaseException as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                os.write(err_w, why.encode())
            os._exit(127)
        os.close(go_r)
        os.close(err_w)
        try:
            pt.seize(pid, OPTIONS)
        except TraceeError as exc:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if exc.errno == errno.EPERM:
                raise UsageError("ptrace is not permitted here (EPERM)") from None
            raise
        finally:
            os.write(go_w, b"g")
            os.close(go_w)
        failed, early = self._exec_result(pid, err_r)
        if failed:
            self._reap(pid)
            raise UsageError(f"cannot run {argv[0]}: {failed.decode(errors='replace')}")
        self.queue.extend(early)
        proc = self._process(pid)
        self.procs[pid] = proc
        thread = proc.add_thread(pid, pid)
        thread.running = True
        self.threads[pid] = thread
        self.root_pid = pid
        return pid

    @staticmethod
    def _exec_result(pid: int, err_r: int) -> tuple[bytes, list[WaitEvent]]:
        """Whether the child's ``execve`` failed (why) or succeeded (nothing): the pipe's
        write end closes at a successful ``execve`` (close-on-exec); a failure writes why.

        Meanwhile the child may stop at a filtered syscall (its Python allocating memory
        before it can say why): it is let go on.  The exec event, or the child's end, is
        kept for the tracer's loop.
        """
        failed = b""
        kept: list[WaitEvent] = []
        with os.fdopen(err_r, "rb", buffering=0) as err:
            while True:
                if select.select([err], [], [], 0.02)[0]:
                    chunk = err.read(4096)
                    if not chunk:
                        return failed, kept
                    failed += chunk
                    continue
                got = pt.wait(pid, nohang=True)
                if got is None:
                    continue
                ev = decode_status(*got)
                if not isinstance(ev, Stopped) or ev.event is PtraceEvent.EXEC:
                    kept.append(ev)
                else:
                    plain_signal = ev.event is PtraceEvent.NONE and not ev.syscall
                    pt.cont(pid, ev.signal if plain_signal else 0)

    def attach(self, pid: int) -> None:
        """Join the running program ``pid`` and all its threads, and arm its matching mappings.

        Attached programs have no seccomp filter: every syscall stops, so that mappings
        made later are traced too.  :meth:`shutdown` gives everything back and detaches,
        also when attaching fails half-way.
        """
        try:
            self._attach(pid)
        except BaseException:
            self.shutdown()
            raise

    def _attach(self, pid: int) -> None:
        tgid = check_attachable(pid)
        proc = self._process(tgid)
        proc.trace_syscalls = True
        self.procs[tgid] = proc
        seized: set[int] = set()
        while True:  # threads may be born while we seize the others
            try:
                tids = pt.thread_ids(tgid) - seized
            except FileNotFoundError:
                raise UsageError(f"process {pid} has exited") from None
            if not tids:
                break
            for tid in sorted(tids):
                seized.add(tid)
                try:
                    pt.seize(tid, ATTACH_OPTIONS)
                except TraceeGone:
                    continue
                except TraceeError as exc:
                    raise UsageError(why_not_permitted(pid, exc)) from None
                thread = proc.add_thread(tid, tgid)
                thread.running = True
                self.threads[tid] = thread
        for thread in list(proc.threads.values()):
            try:
                pt.interrupt(thread.tid)
            except TraceeGone:
                continue
        group_stopped: set[int] = set()
        for thread in list(proc.threads.values()):
            ev = proc.wait_thread(thread.tid)
            thread.running = False
            if not isinstance(ev, Stopped):
                self._forget(thread)
            elif ev.event == PtraceEvent.STOP and ev.signal in STOP_SIGNALS:
                group_stopped.add(thread.tid)  # stopped by job control: it stays stopped
            elif ev.event == PtraceEvent.NONE and not ev.syscall:
                thread.pending_signals.append(ev.signal)  # it was about to get this one
        worker = proc.any_stopped_thread()
        if worker is None:
            raise UsageError(f"process {pid} has exited")
        proc.attach_image()
        sigsegv.read_action(proc, worker)
        self.regions.scan(proc, worker)
        for thread in list(proc.threads.values()):
            if thread.tid not in group_stopped:
                resume(thread, 0)
            elif thread is worker:
                resume(thread, signal.SIGSTOP)  # it ran our mprotect calls: stop it again
            else:
                pt.listen(thread.tid)
                thread.running = True
        self.attached = True
        if not self.root_pid:
            self.root_pid = tgid

    # -- the loop -------------------------------------------------------------------------

    def run(self, duration: float | None = None) -> int:
        """Trace until every traced process is gone, or kmmio is told to stop.

        Returns the root program's exit status.  How kmmio is told to stop depends on how
        the program came: an attached program is let go (SIGTERM, SIGHUP, Ctrl-C or the end
        of ``duration``: pages restored, detached, it runs on; returns 0).  A spawned
        program cannot be let go (its seccomp filter stays in it, and would fail its
        ``mmap`` calls without a tracer), so it is ended the way ``timeout`` and a service
        manager end a program: SIGTERM and SIGHUP are passed on to it, the end of
        ``duration`` sends it SIGTERM, and it is traced until it exits (a second signal
        kills it); its own status is returned.
        """
        stops = [signal.SIGTERM, signal.SIGHUP, signal.SIGALRM]
        if self.attached:
            stops.append(signal.SIGINT)  # Ctrl-C detaches; a spawned program gets it itself
        old = {s: signal.signal(s, self._on_signal) for s in stops}
        old_int = signal.getsignal(signal.SIGINT)
        if not self.attached:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if duration is not None:
            self._deadlines["duration"] = time.monotonic() + duration
        if self.serving is not None and self.serving.tick_interval is not None:
            self._deadlines[_TICK] = time.monotonic() + self.serving.tick_interval
        if self._deadlines:
            self._arm_timer()
        threads, fault = self.threads, self.faults.handle
        no_status = pt.NO_STATUS
        try:
            while threads:
                if self._due:
                    self._overdue()
                ev = self._queued_event() if self.queue or self._stop_requested or self._notes else None
                if ev is None:
                    # A stop request may interrupt the blocking part only; a status it
                    # read is kept.
                    try:
                        got = self.fast.wait(self._waiting) if self.fast is not None else self._wait()
                    except _StopTracing:
                        self._keep_unclaimed()
                        raise
                    except _Wakeup:
                        self._keep_unclaimed()
                        continue
                    if got is None:
                        break
                    if got is no_status:
                        continue  # the fast loop handed over its rows
                    tid, status = got
                    thread = threads.get(tid) if status == SEGV_STOP else None
                    if thread is not None:
                        # The hot path, _handle and _dispatch in short: a traced access.
                        thread.running = False
                        try:
                            fault(thread)
                        except TraceeGone:
                            continue  # it died meanwhile; its exit will be reported
                        thread.proc.engine.quiescent(tid)
                        continue
                    ev = decode_status(tid, status)
                self._handle(ev)
        except _StopTracing:
            if self.fast is not None:
                self.fast.drain()
            self.shutdown()
            self.log.note(f"detached ({self._stop_reason}): the program runs on untraced")
            self.log.finish()
            return 0
        except BaseException:
            if self.fast is not None:
                with contextlib.suppress(KmmioError):
                    self.fast.drain()
            if self.attached:
                self.shutdown()
            else:
                # A spawned program keeps the seccomp filter, whose stops fail without a
                # tracer (ENOSYS): it could not run on as it would untraced.  It is killed
                # while still traced, its pages armed, so that it takes no step untraced.
                self._kill_spawned()
            with contextlib.suppress(LogWriteError):
                self.log.flush()  # what was traced before the error stays in the log
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for s, h in old.items():
                signal.signal(s, h)
            signal.signal(signal.SIGINT, old_int)
        self.log.finish()
        return self.root_status if self.root_status is not None else 0

    def read_memory(self, tid: int, addr: int, size: int) -> bytes:
        """Bytes of a traced thread's memory (armed pages too), for probe handlers."""
        thread = self.threads.get(tid)
        if thread is None:
            raise UsageError(f"thread {tid} is not traced")
        return thread.proc.read(addr, size)

    def _waiting(self, on: bool) -> None:
        """A blocking wait starts (``on``) or ends: only in it may a signal handler raise."""
        self._in_wait = on

    def _wait(self) -> tuple[int, int] | None:
        self._in_wait = True
        try:
            return pt.wait_next()
        finally:
            self._in_wait = False

    def _place(self, path: str, offset: int, pid: int, fd: int | None) -> Place | None:
        """Where a newly traced mapping's bytes are (:func:`kmmio.devices.place`).  A device
        whose sysfs files cannot be read or make no sense is logged with file offsets, as
        any other file, and said once on standard error: the trace goes on."""
        if self.serving is not None:
            served = self.serving.place(path, offset)
            if served is not None:
                return served
        return place_or_say(path, offset, pid, fd, self.roots, self._unplaced)

    def _served(self, tid: int, count: int) -> None:
        """The fast loop performed ``count`` accesses, some of thread ``tid``: stopped, it
        passed a quiescent point."""
        self.faults.stats.emulated += count
        thread = self.threads.get(tid)
        if thread is not None:
            thread.proc.engine.quiescent(tid)

    # -- deadlines ------------------------------------------------------------------------

    def watch(self, tid: int, on: bool = True) -> None:
        """Thread ``tid`` holds its program's other threads (pages lent to its syscall):
        after :data:`HOLD_LIMIT` they are let go (:meth:`SyscallPath.overdue`); ``on``
        false: it let them go itself."""
        if on:
            self._deadlines[tid] = time.monotonic() + HOLD_LIMIT
        elif self._deadlines.pop(tid, None) is None:
            return
        self._arm_timer()

    def _arm_timer(self) -> None:
        if not self._deadlines:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        wait = min(self._deadlines.values()) - time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, max(wait, 0.001))

    def _overdue(self) -> None:
        due, self._due = self._due, []
        for key in due:
            if key == _TICK:
                assert self.serving is not None and self.serving.tick_interval is not None
                self.serving.tick()
                self._deadlines[_TICK] = time.monotonic() + self.serving.tick_interval
                self._arm_timer()
                continue
            thread = self.threads.get(key if isinstance(key, int) else key[1])
            if thread is None:
                continue
            if isinstance(key, int):
                self.syscalls.overdue(thread)
            elif not thread.running:
                resume(thread, 0)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGALRM:
            now = time.monotonic()
            passed = [k for k, t in self._deadlines.items() if t <= now + 0.0005]
            for k in passed:
                del self._deadlines[k]
            self._arm_timer()
            self._due.extend(k for k in passed if not isinstance(k, str))
            if "duration" not in passed:
                if self._due and self._in_wait:
                    self._in_wait = False
                    raise _Wakeup()
                return
        what = "--duration elapsed" if signum == signal.SIGALRM else signal.Signals(signum).name
        if not self.attached:
            self._end_program(signum, what)
            return
        self._stop_reason = what
        self._stop_requested = True
        if self._in_wait:
            self._in_wait = False  # raised once, however many signals come
            raise _StopTracing()

    def _end_program(self, signum: int, what: str) -> None:
        """Pass a stop request on to the spawned program (see :meth:`run`)."""
        sig = signal.SIGTERM if signum == signal.SIGALRM else signum
        if self._ending:
            sig = signal.SIGKILL
        self._ending = True
        if self.root_status is None and self.root_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.root_pid, sig)
            self._notes.append(f"{what}: {signal.Signals(sig).name} sent to the program")

    def _queued_event(self) -> WaitEvent | None:
        """An event met earlier (while stopping threads), unless held; a stop request."""
        while self._notes:
            self.log.note(self._notes.pop(0))
        for i, ev in enumerate(self.queue):
            thread = self.threads.get(ev.tid)
            holder = thread.proc.syscall_holder if thread is not None else None
            if holder is None or holder == ev.tid:  # held threads wait for the holder's exit
                del self.queue[i]
                return ev
        if self._stop_requested:
            raise _StopTracing()
        return None

    def _keep_unclaimed(self) -> None:
        """A stop request cut the wait short: keep the status it may have read already."""
        left = pt.unclaimed_status()
        if left is not None:
            self.queue.append(decode_status(*left))

    def _handle(self, ev: WaitEvent) -> None:
        thread = self.threads.get(ev.tid)
        if thread is None:
            if isinstance(ev, Stopped):
                self.orphans[ev.tid] = ev
            return
        thread.running = False
        if not isinstance(ev, Stopped):
            self._thread_gone(thread, ev)
            return
        try:
            self._dispatch(thread, ev)
        except TraceeGone:
            return  # it died meanwhile; its exit will be reported
        if ev.event is not PtraceEvent.STOP:
            thread.proc.engine.quiescent(thread.tid)

    def _dispatch(self, thread: Thread, ev: Stopped) -> None:
        if ev.signal == signal.SIGSEGV and ev.event is PtraceEvent.NONE:
            self.faults.handle(thread)  # the hot path: a traced access
        elif ev.syscall or ev.event == PtraceEvent.SECCOMP:
            self._syscall_stop(thread)
            if thread.released_others:
                # It held the others for its syscall: they run a while before it goes
                # on, or a program re-protecting its traced pages in a tight loop would
                # stop them again before they ran at all.
                thread.released_others = False
                self._deadlines[("resume", thread.tid)] = time.monotonic() + TURN
                self._arm_timer()
            else:
                resume(thread, 0)
        elif ev.event == PtraceEvent.EXIT:
            self.syscalls.thread_exiting(thread)
            resume(thread, 0)
        elif ev.event in (PtraceEvent.FORK, PtraceEvent.VFORK, PtraceEvent.CLONE):
            self._new_task(thread, ev.event)
            resume(thread, 0)
        elif ev.event == PtraceEvent.EXEC:
            self._exec(thread)
            resume(thread, 0)
        elif ev.event == PtraceEvent.STOP:
            if ev.signal in STOP_SIGNALS:
                pt.listen(thread.tid)  # group stop: stay stopped until SIGCONT
                thread.running = True
            else:
                resume(thread, 0)
        elif ev.event != PtraceEvent.NONE:
            resume(thread, 0)
        elif ev.signal == signal.SIGSEGV:
            self.faults.handle(thread)
        else:
            resume(thread, ev.signal)

    def _syscall_stop(self, thread: Thread) -> None:
        """A syscall's entry (a seccomp stop, or any syscall of an attached program) or exit."""
        op, arch, first, args = pt.get_syscall_stop(thread.tid)
        serving = self.serving
        if op == pt.SYSCALL_INFO_EXIT:
            if serving is not None and serving.syscall_exit(thread):
                return
            if thread.kernel is not None:
                self.syscalls.exit(thread)
            if thread.syscall is not None:
                self.regions.syscall_exit(thread)
            return
        if op not in (pt.SYSCALL_INFO_ENTRY, pt.SYSCALL_INFO_SECCOMP):
            return
        if serving is not None and arch != AUDIT_ARCH_I386 and serving.syscall_entry(thread, first, args):
            return
        if self.syscalls.entry(thread, first, args, arch) is Outcome.REWOUND:
            return  # the syscall is made again from the start: its next stop decides
        if arch == AUDIT_ARCH_I386:
            known = as_x86_64(first, args, thread.proc.read)
            if known is None:
                thread.syscall = None
                return
            first, args = known
        self.regions.entry(thread, first, args)

    # -- tasks ------------------------------------------------------------------------------


def trace_program(
    argv: Sequence[str],
    patterns: Sequence[str],
    emit: Callable[[Record], None],
    on_access: Callable[[TracedAccess], None] | None = None,
    mode: Mode = Mode.AUTO,
    regmap: RegisterMap | None = None,
) -> int:
    """Spawn ``argv``, trace the mappings matching ``patterns``, return its exit status.

    ``emit`` gets every log record; ``on_access`` every traced access, decoded, with the
    registers it touched when ``regmap`` is given (:func:`kmmio.maps.load_maps`).
    """
    tracer = Tracer(patterns, emit, on_access, mode=mode, regmap=regmap)
    tracer.spawn(argv)
    return tracer.run()
