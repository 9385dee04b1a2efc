"""The ptrace tracer's book of tasks: threads and processes as they appear (clone, fork,
vfork), exec, and go (exit, kill); and letting a process go (its pages back, detached) or
a spawned program be killed while traced.  :class:`kmmio.ptrace.tracer.Tracer` is one."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from kmmio.backend import _ptrace as pt
from kmmio.backend.waitstatus import Exited, Killed, PtraceEvent, Stopped, WaitEvent, decode_status, exit_code
from kmmio.engine import Kmmio
from kmmio.errors import KmmioError, TraceeError
from kmmio.mmiotrace import MmioTrace
from kmmio.ptrace import sigsegv
from kmmio.ptrace.process import EventQueue, Process, Thread
from kmmio.ptrace.regions import Regions
from kmmio.ptrace.syscall_path import SyscallPath
from kmmio.serve import Serving

CLONE_VM = 0x100
CLONE_THREAD = 0x10000


def _signal_to_keep(ev: Stopped) -> int:
    """The signal a thread stopped with that it must still get when we detach.

    A SIGSEGV from an armed page is the tracer's own and is dropped: with the pages
    restored, the access runs again.  Ptrace and syscall stops carry no signal.
    """
    if ev.event == PtraceEvent.NONE and not ev.syscall and ev.signal != signal.SIGSEGV:
        return ev.signal
    return 0


class TaskBook:
    """What the tracer knows of its tasks, and what happens to them (a mixin of Tracer's:
    the attributes below are the tracer's)."""

    log: MmioTrace
    orphans: dict[int, WaitEvent]
    procs: dict[int, Process]
    queue: EventQueue
    regions: Regions
    root_pid: int
    root_status: int | None
    serving: Serving | None
    syscalls: SyscallPath
    threads: dict[int, Thread]

    def _process(self, pid: int) -> Process:
        raise NotImplementedError

    @staticmethod
    def _reap(pid: int) -> None:
        """A task on its way out (a child that never ran the program, one killed): let its
        last stops go, and collect its end."""
        while True:
            got = pt.wait(pid)
            if got is None or not isinstance(decode_status(*got), Stopped):
                return
            try:
                pt.cont(pid, 0)
            except TraceeError:
                return

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
        child = self._process(new_tid)
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
            proc = self._process(thread.tid)
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
        if self.serving is not None:
            self.serving.forget(proc.pid)
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
        self.log.drop(thread.tid)
        proc.threads.pop(thread.tid, None)
        self.threads.pop(thread.tid, None)
        self.syscalls.thread_gone(proc, thread.tid)
        if thread.tid == self.root_pid:
            self.root_status = exit_code(ev)
        if not proc.threads:
            self.regions.drop_all(proc, thread.tid)
            if proc.mem is not None:
                proc.mem.close()
            self.procs.pop(proc.pid, None)
            if self.serving is not None:
                self.serving.forget(proc.pid)

    # -- leaving ------------------------------------------------------------------------------

    def _kill_spawned(self) -> None:
        """Kill every traced process with SIGKILL and collect them (the tracer failed, or
        what serves its accesses did): none runs another instruction."""
        pids = list(self.procs)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            # Its other threads first: a thread group's leader is reported last.
            tids = sorted({t.tid for t in self.procs[pid].threads.values()} | {pid}, key=lambda t: t == pid)
            for tid in tids:
                self._reap(tid)
        for proc in self.procs.values():
            if proc.mem is not None:
                proc.mem.close()
        self.threads.clear()
        self.procs.clear()

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
