"""The tracer: wait for a stop, ask the engine, carry out its effects, log.

Theory of operation
-------------------
The program is spawned under ``PTRACE_SEIZE`` with a seccomp filter that stops it only on
the mmap family.  Every stop lands in :meth:`Tracer._handle`:

* ``SIGSEGV`` → :meth:`_fault`: the engine says whether the fault is a traced access
  (``kmmio_handler``); if so the other threads of the address space are stopped, the page
  opened with an injected ``mprotect``, the instruction single-stepped, the engine told
  (``post_kmmio_handler``) and the page re-armed.  Genuine faults go to the program.
* seccomp stops → the syscall runs to its exit stop, then :mod:`kmmio.regions` reconciles the
  traced mappings with what ``mmap``/``munmap``/``mremap``/``mprotect`` did.
* clone/fork/vfork/exec events keep the thread and address-space tables right.
* any other signal is passed on untouched.

When the tracer must leave early (SIGTERM, an internal error) :meth:`shutdown` stops every
thread, restores every page's protection, and detaches, so the program runs on unharmed.
"""

from __future__ import annotations

import enum
import errno
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass

from kmmio import sigsegv
from kmmio.backend import _ptrace as pt
from kmmio.backend.seccomp import install_filter
from kmmio.backend.waitstatus import (
    Exited,
    Killed,
    PtraceEvent,
    Stopped,
    WaitEvent,
    decode_status,
    exit_code,
)
from kmmio.backend.xstate import ThreadVectors
from kmmio.engine import (
    PROT_READ,
    PROT_WRITE,
    FaultAction,
    FaultDecision,
    Kmmio,
    Probe,
    Protect,
    StepCondition,
)
from kmmio.errors import KmmioError, TraceeError, TraceeGone, UsageError
from kmmio.mmiotrace import Mapping, MmioTrace, TracedAccess, now_us
from kmmio.process import EventQueue, Process, Thread, resume
from kmmio.regions import Regions
from kmmio.trace.records import Kind, Record
from kmmio.x86.emulate import emulate
from kmmio.x86.quick import RIP
from kmmio.x86.regs import Registers

OPTIONS = (
    pt.PTRACE_O_TRACESYSGOOD
    | pt.PTRACE_O_TRACEFORK
    | pt.PTRACE_O_TRACEVFORK
    | pt.PTRACE_O_TRACECLONE
    | pt.PTRACE_O_TRACEEXEC
    | pt.PTRACE_O_TRACESECCOMP
    | pt.PTRACE_O_EXITKILL
)
ATTACH_OPTIONS = (
    pt.PTRACE_O_TRACESYSGOOD
    | pt.PTRACE_O_TRACEFORK
    | pt.PTRACE_O_TRACEVFORK
    | pt.PTRACE_O_TRACECLONE
    | pt.PTRACE_O_TRACEEXEC
)
STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
CLONE_VM = 0x100
CLONE_THREAD = 0x10000


class Mode(enum.Enum):
    """How a traced access runs: performed by the tracer where exact, or single-stepped."""

    AUTO = "auto"
    EMULATE = "emulate"
    STEP = "step"


@dataclass
class TraceStats:
    """Traced faults by how they ran."""

    emulated: int = 0
    stepped: int = 0


class _StopTracing(Exception):
    pass


def _signal_to_keep(ev: Stopped) -> int:
    """The signal a thread stopped with that it must still get when we detach.

    A SIGSEGV from an armed page is the tracer's own and is dropped: with the pages
    restored, the access runs again.  Ptrace and syscall stops carry no signal.
    """
    if ev.event == PtraceEvent.NONE and not ev.syscall and ev.signal != signal.SIGSEGV:
        return ev.signal
    return 0


def _status_fields(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return {}


def check_attachable(pid: int) -> int:
    """The thread group of ``pid``, or a :class:`UsageError` saying why it cannot be joined."""
    status = _status_fields(pid)
    if not status:
        raise UsageError(f"no process {pid}")
    if status.get("State", "").startswith(("Z", "X")):
        raise UsageError(f"process {pid} has exited")
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        raise UsageError(f"process {pid} is already traced by process {tracer}")
    if int(status["Tgid"]) == os.getpid():
        raise UsageError("kmmio cannot trace itself")
    pt.check_ptrace_permitted()
    return int(status["Tgid"])


def _why_not_permitted(pid: int, exc: TraceeError) -> str:
    if exc.errno != errno.EPERM:
        return f"cannot attach to process {pid}: {exc}"
    scope = pt.yama_scope()
    if os.geteuid() != 0 and scope >= 1:
        return f"cannot attach to process {pid}: Yama ptrace_scope is {scope} (try as root)"
    if os.geteuid() != 0:
        return f"cannot attach to process {pid}: not privileged (it is not yours, or it gained privileges)"
    return f"cannot attach to process {pid}: the kernel refused (EPERM)"


def resolve_program(program: str) -> str:
    """The executable ``execvp`` would run, or a :class:`UsageError` that says why not."""
    if "/" in program:
        if not os.path.exists(program):
            raise UsageError(f"{program}: no such file")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise UsageError(f"{program}: not an executable file")
        return program
    found = shutil.which(program)
    if found is None:
        raise UsageError(f"{program}: command not found")
    return found


class Tracer:
    """Trace one program and everything it starts; see the module docstring."""

    def __init__(
        self,
        patterns: Sequence[str],
        emit: Callable[[Record], None],
        on_access: Callable[[TracedAccess], None] | None = None,
        on_map: Callable[[Mapping], None] | None = None,
        probes_for: Callable[[Mapping], list[Probe]] | None = None,
        mode: Mode = Mode.AUTO,
    ) -> None:
        self.queue: EventQueue = deque()
        self.procs: dict[int, Process] = {}
        self.threads: dict[int, Thread] = {}
        self.orphans: dict[int, WaitEvent] = {}
        self.log = MmioTrace(emit, on_access)
        self.regions = Regions(list(patterns), self.log, on_map, probes_for)
        self.root_pid = 0
        self.root_status: int | None = None
        self._stop_requested = False
        self._in_wait = False
        self.mode = mode
        self.attached = False
        self.stats = TraceStats()

    # -- start ----------------------------------------------------------------------------

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` under the tracer; it runs once :meth:`run` is called."""
        if not argv:
            raise UsageError("no program to run")
        path = resolve_program(argv[0])
        pt.check_ptrace_permitted()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child, until execve
            try:
                os.close(go_w)
                os.read(go_r, 1)
                os.close(go_r)
                install_filter()
                if env is None:
                    os.execv(path, list(argv))
                os.execve(path, list(argv), env)
            except BaseException as exc:
                os.write(2, f"kmmio: cannot run {argv[0]}: {exc}\n".encode())
            os._exit(127)
        os.close(go_r)
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
        proc = Process(pid, self.queue)
        self.procs[pid] = proc
        thread = proc.add_thread(pid, pid)
        thread.running = True
        self.threads[pid] = thread
        self.root_pid = pid
        return pid

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
        proc = Process(tgid, self.queue)
        proc.trace_syscalls = True
        self.procs[tgid] = proc
        seized: set[int] = set()
        while True:  # threads may be born while we seize the others
            try:
                tids = {int(t) for t in os.listdir(f"/proc/{tgid}/task")} - seized
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
                    raise UsageError(_why_not_permitted(pid, exc)) from None
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

        Returns the root program's exit status; after a stop, 0 when attached (the
        programs run on) and 128 + SIGTERM when spawned.
        """
        stops = [signal.SIGTERM, signal.SIGHUP, signal.SIGALRM]
        if self.attached:
            stops.append(signal.SIGINT)  # Ctrl-C detaches; a spawned program gets it itself
        old = {s: signal.signal(s, self._on_signal) for s in stops}
        old_int = signal.getsignal(signal.SIGINT)
        if not self.attached:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if duration is not None:
            signal.setitimer(signal.ITIMER_REAL, max(duration, 0.001))
        try:
            while self.threads:
                ev = self._next_event()
                if ev is None:
                    break
                self._handle(ev)
        except _StopTracing:
            self.shutdown()
            self.log.report_losses()
            return 0 if self.attached else 128 + signal.SIGTERM
        except BaseException:
            self.shutdown()
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for s, h in old.items():
                signal.signal(s, h)
            signal.signal(signal.SIGINT, old_int)
        self.log.report_losses()
        return self.root_status if self.root_status is not None else 0

    def read_memory(self, tid: int, addr: int, size: int) -> bytes:
        """Bytes of a traced thread's memory (armed pages too), for probe handlers."""
        thread = self.threads.get(tid)
        if thread is None:
            raise UsageError(f"thread {tid} is not traced")
        return thread.proc.read(addr, size)

    def request_stop(self) -> None:
        self._stop_requested = True

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_requested = True
        if self._in_wait:
            self._in_wait = False  # raised once, however many signals come
            raise _StopTracing()

    def _next_event(self) -> WaitEvent | None:
        for i, ev in enumerate(self.queue):
            thread = self.threads.get(ev.tid)
            holder = thread.proc.syscall_holder if thread is not None else None
            if holder is None or holder == ev.tid:  # held threads wait for the holder's exit
                del self.queue[i]
                return ev
        if self._stop_requested:
            raise _StopTracing()
        # A stop request may interrupt the blocking part only; a status it read is kept.
        self._in_wait = True
        try:
            got = pt.wait_next()
        except _StopTracing:
            left = pt.unclaimed_status()
            if left is not None:
                self.queue.append(decode_status(*left))
            raise
        finally:
            self._in_wait = False
        return None if got is None else decode_status(*got)

    def _handle(self, ev: WaitEvent) -> None:
        thread = self.threads.get(ev.tid)
        if thread is None:
            if isinstance(ev, Stopped):
                self.orphans[ev.tid] = ev
            return
        thread.running = False
        proc = thread.proc
        if isinstance(ev, Exited | Killed):
            self._thread_gone(thread, ev)
            return
        try:
            self._dispatch(thread, ev)
        except TraceeGone:
            return  # it died meanwhile; its exit will be reported
        if ev.event != PtraceEvent.STOP:
            proc.engine.quiescent(thread.tid)

    def _dispatch(self, thread: Thread, ev: Stopped) -> None:
        if ev.signal == signal.SIGSEGV and ev.event is PtraceEvent.NONE:
            self._fault(thread)  # the hot path: a traced access
        elif ev.syscall:
            if thread.proc.trace_syscalls:
                self.regions.syscall_stop(thread)
            else:
                self.regions.syscall_exit(thread)
            resume(thread, 0)
        elif ev.event == PtraceEvent.SECCOMP:
            self.regions.syscall_entry(thread)
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
            self._fault(thread)
        else:
            resume(thread, ev.signal)

    # -- faults ---------------------------------------------------------------------------

    def _fault(self, thread: Thread) -> None:
        """A SIGSEGV: ``kmmio_handler``, the single step, ``post_kmmio_handler``."""
        proc = thread.proc
        engine = proc.engine
        info = pt.get_siginfo_raw(thread.tid)
        code, addr = pt.siginfo_code_addr(info)
        if code <= 0 or code == pt.SI_KERNEL:  # sent by kill(), not by a fault
            sigsegv.delivered(proc)
            resume(thread, signal.SIGSEGV)
            return
        words = pt.get_regs_words(thread.tid)
        emulating = self.mode is not Mode.STEP
        if emulating and self._quick(thread, words):
            return
        regs = Registers.from_words(words, thread.tid)
        decision = engine.fault(thread.tid, addr, regs, open_pages=not emulating)
        if decision.action is FaultAction.NOT_MINE:
            sigsegv.delivered(proc)
            resume(thread, signal.SIGSEGV)
            return
        if decision.action is FaultAction.RESTART:
            resume(thread, 0)
            return
        if decision.action is FaultAction.GENUINE:
            self._deliver(thread, decision.effects, signal.SIGSEGV, info)
            return
        if emulating:
            if self._emulate(thread, regs):
                return
            decision = FaultDecision(FaultAction.TRACE, engine.open_context(thread.tid))
        self.stats.stepped += 1
        self.log.capture_reads(thread.tid)
        if len(proc.threads) > 1:
            proc.stop_others(thread.tid, self.queue.append)
        try:
            self._step_traced(thread, decision, regs)
        except TraceeGone:
            # Killed in the middle: the access is lost; the pages close again at once.
            self.log.drop(thread.tid)
            if not engine.has_context(thread.tid):
                raise
            effects = engine.step_done(thread.tid, StepCondition.LOST, None)
            helper = next((t for t in proc.threads.values() if t.held), None)
            if effects and helper is not None:
                proc.apply(helper, effects)
            raise
        finally:
            proc.resume_others()

    def _step_traced(self, thread: Thread, decision: FaultDecision, regs: Registers) -> None:
        """Open the pages, single-step, re-arm; deliver the fault if it turns out genuine."""
        proc, engine = thread.proc, thread.proc.engine
        current = regs
        while True:
            proc.apply(thread, decision.effects, current)
            ev = proc.step(thread)
            if ev.signal == signal.SIGTRAP:
                after = pt.get_regs(thread.tid)
                proc.apply(thread, engine.step_done(thread.tid, StepCondition.STEPPED, after), after)
                sigsegv.repair(thread)
                resume(thread, 0)
                return
            current = pt.get_regs(thread.tid)  # the instruction faulted again, did not complete
            info = pt.get_siginfo_raw(thread.tid)
            code, addr = pt.siginfo_code_addr(info)
            if ev.signal != signal.SIGSEGV or code <= 0:
                effects = engine.step_done(thread.tid, StepCondition.ABORTED, regs)
                self._deliver(thread, effects, ev.signal, info)
                return
            decision = engine.fault(thread.tid, addr, regs)
            if decision.action is not FaultAction.RECURSIVE:
                self._deliver(thread, decision.effects, signal.SIGSEGV, info)
                return

    def _quick(self, thread: Thread, words: MutableSequence[int]) -> bool:
        """The hot path: a plain load or store to a page the logger traces, done in place.

        No register snapshot, no fault context: the engine confirms the page stays armed
        through it (:meth:`Kmmio.armed_probe`), the access goes through the mapping's view,
        and the thread's registers are patched.  False, having changed nothing, if the
        instruction or the page needs the general path.
        """
        proc, tid = thread.proc, thread.tid
        rip = words[RIP]
        entry = proc.bus.code_cache.get(rip)
        if entry is None:
            entry = self.log.decoded_at(proc, rip)
            if proc.bus.stable_code(rip):
                proc.bus.code_cache[rip] = entry
        form, op = entry
        if op is None:
            return False
        addr = op.address(words)
        probe = proc.engine.armed_probe(tid, addr, op.width, PROT_WRITE if op.write else PROT_READ)
        if probe is None or probe.pre_handler != self.log.pre_handler:
            return False
        mapping: Mapping = probe.data
        view = proc.bus.view(mapping)
        if view is None or (op.write and not view.writable):
            return False
        if op.write:
            value = op.value(words)
            view.write(addr, op.width, value)
            op.complete(words)
        else:
            value = view.read(addr, op.width)
            op.complete(words, value)
        pt.set_regs_words(tid)
        ts = now_us()
        if proc.segv_action is not None:
            sigsegv.repair(thread)
        resume(thread, 0)
        # Logged while the thread runs on: the record costs the program no time.
        self.stats.emulated += 1
        kind = Kind.WRITE if op.write else Kind.READ
        self.log.record(kind, op.width, addr, value, rip, tid, mapping, form, ts)
        return True

    def _emulate(self, thread: Thread, regs: Registers) -> bool:
        """Perform the instruction in the tracer, the page staying armed; False if it cannot."""
        proc = thread.proc
        form = self.log.pending_form(thread.tid) or self.log.form_at(proc, regs.rip)
        if form.plan is None or not form.operands:
            return False
        vectors = ThreadVectors(thread.tid) if form.plan.vreg >= 0 else None
        done = emulate(form.plan, form.operands[0].address(regs), regs, proc.bus, vectors)
        if done is None:
            return False
        if vectors is not None:
            vectors.flush()
        self.stats.emulated += 1
        self.log.emulated(thread.tid, done.accesses)
        proc.engine.step_done(thread.tid, StepCondition.EMULATED, done.regs)
        pt.set_regs(thread.tid, done.regs)
        sigsegv.repair(thread)
        resume(thread, 0)
        return True

    @staticmethod
    def _deliver(thread: Thread, effects: tuple[Protect, ...], sig: int, info: bytes) -> None:
        """Re-arm, then give the program its own fault with its own ``siginfo``."""
        if sig == signal.SIGSEGV:
            sigsegv.delivered(thread.proc)
        if effects:
            thread.proc.apply(thread, effects)
            pt.set_siginfo_raw(thread.tid, info)
        resume(thread, sig)

    # -- tasks ------------------------------------------------------------------------------

    def _add_thread(self, proc: Process, tid: int, tgid: int) -> Thread:
        thread = proc.add_thread(tid, tgid)
        self.threads[tid] = thread
        orphan = self.orphans.pop(tid, None)
        if orphan is not None:
            self.queue.append(orphan)
        return thread

    def _new_task(self, parent: Thread, event: PtraceEvent) -> None:
        new_tid = pt.get_event_msg(parent.tid)
        proc = parent.proc
        shares_vm = event == PtraceEvent.VFORK
        tgid = new_tid
        if event == PtraceEvent.CLONE:
            flags = self._clone_flags(parent)
            shares_vm = bool(flags & CLONE_VM)
            if flags & CLONE_THREAD:
                tgid = parent.tgid
        if shares_vm:
            self._add_thread(proc, new_tid, tgid)
            return
        child = Process(new_tid, self.queue)
        child.trace_syscalls = proc.trace_syscalls
        child.segv_action = proc.segv_action
        child.engine, twins = proc.engine.clone()
        self.procs[new_tid] = child
        self._add_thread(child, new_tid, new_tid)
        self.regions.inherit(proc, child, twins, parent)

    @staticmethod
    def _clone_flags(thread: Thread) -> int:
        regs = pt.get_regs(thread.tid)
        if regs.orig_rax == pt.SYS_CLONE3:
            try:
                return int.from_bytes(thread.proc.read(regs.rdi, 8), "little")
            except TraceeError:
                return 0
        return regs.rdi

    def _exec(self, thread: Thread) -> None:
        former = pt.get_event_msg(thread.tid)
        proc = thread.proc
        if former != thread.tid and former in self.threads:
            self._forget(self.threads[former])
        others = [t for t in proc.threads.values() if t.tid != thread.tid]
        if not any(t.tgid != thread.tgid for t in others):
            self.regions.drop_all(proc, thread.tid)  # the old image's mappings end
        if any(t.tgid != thread.tgid for t in others):
            # A vfork child leaves its parent's address space for its own.
            proc.threads.pop(thread.tid)
            proc.engine.thread_removed(thread.tid)
            proc = Process(thread.tid, self.queue)
            proc.trace_syscalls = thread.proc.trace_syscalls
            self.procs[thread.tid] = proc
            proc.threads[thread.tid] = thread
            thread.proc = proc
        else:
            for t in others:
                self._forget(t)
        proc.engine = Kmmio()
        proc.engine.thread_added(thread.tid)
        proc.mappings = []
        proc.bus.invalidate()
        sigsegv.exec_done(proc)
        proc.attach_image()
        self.regions.scan(proc, thread)

    def _forget(self, thread: Thread) -> None:
        self.log.drop(thread.tid)
        thread.proc.threads.pop(thread.tid, None)
        thread.proc.engine.thread_removed(thread.tid)
        self.threads.pop(thread.tid, None)

    def _thread_gone(self, thread: Thread, ev: Exited | Killed) -> None:
        proc = thread.proc
        self.regions.release_hold(thread)
        self._forget(thread)
        if thread.tid == self.root_pid:
            self.root_status = exit_code(ev)
        if not proc.threads:
            self.regions.drop_all(proc, thread.tid)
            if proc.mem is not None:
                proc.mem.close()
            self.procs.pop(proc.pid, None)

    # -- leaving ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every thread, restore every page, detach: the program runs on untraced."""
        for proc in list(self.procs.values()):
            try:
                self._release_process(proc)
            except KmmioError as exc:
                print(f"kmmio: could not restore process {proc.pid}: {exc}", file=sys.stderr)
        self.threads.clear()
        self.procs.clear()

    def _release_process(self, proc: Process) -> None:
        signals: dict[int, int] = {}
        for ev in list(self.queue):
            if isinstance(ev, Stopped) and ev.tid in proc.threads:
                self.queue.remove(ev)
                proc.threads[ev.tid].running = False
                signals[ev.tid] = _signal_to_keep(ev)
        for t in list(proc.threads.values()):
            if t.running:
                try:
                    pt.interrupt(t.tid)
                    ev = proc.wait_thread(t.tid)
                except TraceeError:
                    self._forget(t)
                    continue
                t.running = False
                if (
                    isinstance(ev, Stopped)
                    and ev.event == PtraceEvent.STOP
                    and pt.signal_mask(t.tid, "SigPnd") & (1 << (signal.SIGSEGV - 1))
                ):
                    # Stopped between its fault and the signal: let the SIGSEGV stop come,
                    # so that detaching discards it and the access simply runs again.
                    try:
                        pt.cont(t.tid, 0)
                        ev = proc.wait_thread(t.tid)
                    except TraceeError:
                        self._forget(t)
                        continue
                if not isinstance(ev, Stopped):
                    self._forget(t)
                    continue
                signals[t.tid] = _signal_to_keep(ev)
        effects = proc.engine.disarm_all()
        for worker in [t for t in proc.threads.values() if not t.running] if effects else []:
            try:
                proc.apply(worker, effects)
                break
            except KmmioError as exc:  # try the next thread
                print(f"kmmio: thread {worker.tid} could not restore pages: {exc}", file=sys.stderr)
        leaks = proc.engine.cleanup()
        for page in leaks:
            if page.armed:
                print(f"kmmio: page {page.page:#x} of process {proc.pid} left armed", file=sys.stderr)
        for t in list(proc.threads.values()):
            try:
                pt.detach(t.tid, signals.get(t.tid, 0))
            except TraceeError:
                pass


def trace_program(
    argv: Sequence[str],
    patterns: Sequence[str],
    emit: Callable[[Record], None],
    on_access: Callable[[TracedAccess], None] | None = None,
    mode: Mode = Mode.AUTO,
) -> int:
    """Spawn ``argv``, trace the mappings matching ``patterns``, return its exit status.

    ``emit`` gets every log record; ``on_access`` every traced access, decoded.
    """
    tracer = Tracer(patterns, emit, on_access, mode=mode)
    tracer.spawn(argv)
    return tracer.run()
