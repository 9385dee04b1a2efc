"""The fault path: a SIGSEGV of a traced thread, from ``kmmio_handler`` to ``post_kmmio_handler``.

:meth:`FaultPath.handle` gets every SIGSEGV stop.  The engine says whether the fault is a
traced access.  If so, by the :class:`Mode`:

* a plain load or store takes the quick path (:meth:`FaultPath._quick`): the access is
  done through the mapping's view, the thread's registers patched, the page never opened;
* another instruction that can be done exactly is emulated (:mod:`kmmio.x86.emulate`);
* anything else, and everything in ``step`` mode, goes the kmmio way: the other threads
  of the address space are stopped, the page opened with an injected ``mprotect``, the
  instruction single-stepped, the engine told, the page re-armed.

Genuine faults (the program's own protection refused the access, a page that is not
traced, a SIGSEGV sent with ``kill``) go to the program with their own ``siginfo``.
"""

from __future__ import annotations

import contextlib
import enum
import signal
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass

from kmmio.backend import _ptrace as pt
from kmmio.backend.shadow import ViewFault
from kmmio.backend.waitstatus import WaitEvent
from kmmio.backend.xstate import ThreadVectors
from kmmio.engine import PROT_READ, PROT_WRITE, FaultAction, FaultDecision, Protect, StepCondition
from kmmio.errors import ServedAccessError, TraceeError, TraceeGone
from kmmio.mmiotrace import Mapping, MmioTrace, now_us
from kmmio.ptrace import sigsegv
from kmmio.ptrace.process import Process, Thread, resume
from kmmio.trace.records import Kind
from kmmio.x86.cache import Decoded, Decoder
from kmmio.x86.decode import MAX_INSN_LEN, InstructionForm
from kmmio.x86.emulate import emulate
from kmmio.x86.operands import AccessKind
from kmmio.x86.quick import RIP, QuickOp
from kmmio.x86.regs import Registers


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


class FaultPath:
    """Handles traced threads' SIGSEGV stops; ``on_other_stop`` gets the stops of other
    threads met while stopping them for a single step."""

    def __init__(self, log: MmioTrace, mode: Mode, on_other_stop: Callable[[WaitEvent], None]) -> None:
        self.log = log
        self.mode = mode
        self.on_other_stop = on_other_stop
        self.stats = TraceStats()
        self._logger = log.pre_handler  # the handler of the probes the logger makes
        #: Told of every plain load or store found at a stable address (the compiled fast
        #: loop performs them from then on, see :mod:`kmmio.ptrace.fastloop`).
        self.learn: Callable[[Process, int, QuickOp], None] | None = None
        #: Instructions decoded once, whatever the process (they depend on bytes and pc).
        self.decoder = Decoder()

    def decoded(self, proc: Process, rip: int) -> Decoded:
        """The instruction at ``rip``: kept per address while its code cannot change
        (then the fast loop is told of it), else read and decoded (by its bytes) again."""
        found = proc.bus.code_cache.get(rip)
        if found is None:
            found = self.decoder.decode(rip, proc.read_code(rip, MAX_INSN_LEN))
            if proc.bus.stable_code(rip):
                proc.bus.code_cache.keep(rip, found)
                if found.quick is not None and self.learn is not None:
                    self.learn(proc, rip, found.quick)
        return found

    def handle(self, thread: Thread) -> None:
        """A SIGSEGV: ``kmmio_handler``, the single step, ``post_kmmio_handler``."""
        try:
            self._handle(thread)
        except ServedAccessError as exc:
            if exc.pc is None:
                with contextlib.suppress(TraceeError):  # a thread gone: the failure stands
                    exc.pc = pt.get_regs(thread.tid).rip
            raise

    def _handle(self, thread: Thread) -> None:
        proc = thread.proc
        engine = proc.engine
        code, addr, words = pt.get_fault(thread.tid)
        if code <= 0 or code == pt.SI_KERNEL:  # sent by kill(), not by a fault
            self._deliver(thread, (), signal.SIGSEGV)
            return
        emulating = self.mode is not Mode.STEP
        proc.bus.thread = thread  # a view made now may need an alias made in it
        if proc.bus.serve is not None:
            proc.bus.current = (thread.tid, words[RIP])
        insn = self.decoded(proc, words[RIP])
        if emulating and self._quick(thread, words, insn):
            return
        info = pt.last_siginfo()
        regs = Registers.from_words(words, thread.tid)
        # The log's probes take the instruction (and, for a masked access, the registers
        # its mask is in) from here: the log reads nothing of the program itself.
        vectors = ThreadVectors(thread.tid) if insn.form.masked else None
        self.log.expect(thread.tid, insn.form, vectors)
        decision = engine.fault(thread.tid, addr, regs, open_pages=not emulating)
        if decision.action is not FaultAction.TRACE:
            self.log.drop(thread.tid, lost=False)
        if decision.action is FaultAction.NOT_MINE:
            self._deliver(thread, (), signal.SIGSEGV)
            return
        if decision.action is FaultAction.RESTART:
            resume(thread, 0)
            return
        if decision.action is FaultAction.GENUINE:
            self._deliver(thread, decision.effects, signal.SIGSEGV, info)
            return
        if emulating:
            if self._emulate(thread, regs, insn.form):
                return
            decision = FaultDecision(FaultAction.TRACE, engine.open_context(thread.tid))
        self._before_step(thread, insn.form, addr)
        self.stats.stepped += 1
        self._values(thread, AccessKind.READ)  # what the reads are about to load
        if len(proc.threads) > 1:
            proc.stop_others(thread.tid, self.on_other_stop)
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

    def _before_step(self, thread: Thread, form: InstructionForm, addr: int) -> None:
        """Tell the views of the pages a single step would open (a device model's refuses:
        a step would reach the file standing for the device, not the model)."""
        proc = thread.proc
        if proc.bus.serve is None:
            return
        addrs = [addr, *(a.addr for a in self.log.accesses(thread.tid))]
        for at in addrs:
            mapping = proc.mapping_at(at)
            view = proc.bus.view(mapping) if mapping is not None else None
            stepping = getattr(view, "stepping", None)
            if stepping is not None:
                stepping(form.text, form.ip)

    def _step_traced(self, thread: Thread, decision: FaultDecision, regs: Registers) -> None:
        """Open the pages, single-step, re-arm; deliver the fault if it turns out genuine."""
        proc, engine = thread.proc, thread.proc.engine
        current = regs
        while True:
            proc.apply(thread, decision.effects, current)
            ev = proc.step(thread)
            if ev.signal == signal.SIGTRAP:
                after = pt.get_regs(thread.tid)
                self._values(thread, AccessKind.WRITE)  # what the writes stored
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

    def _values(self, thread: Thread, kind: AccessKind) -> None:
        """The values of the single-stepped instruction's accesses of ``kind``, read in the
        program around the step (reads before it, writes after), for the log."""
        proc = thread.proc
        values = {}
        for i, acc in enumerate(self.log.accesses(thread.tid)):
            if acc.kind is kind:
                try:
                    values[i] = int.from_bytes(proc.read(acc.addr, acc.width), "little")
                except TraceeError:
                    values[i] = 0
        self.log.values(thread.tid, values)

    def _quick(self, thread: Thread, words: MutableSequence[int], insn: Decoded) -> bool:
        """The hot path: a plain load or store to a page the logger traces, done in place.

        No register snapshot, no fault context: the engine confirms the page stays armed
        through it (:meth:`Kmmio.armed_probe`), the access goes through the mapping's view,
        and the thread's registers are patched.  False, having changed nothing, if the
        instruction or the page needs the general path.
        """
        proc, tid = thread.proc, thread.tid
        rip = words[RIP]
        form, op = insn.form, insn.quick
        if op is None:
            return False
        addr = op.address(words)
        probe = proc.engine.armed_probe(tid, addr, op.width, PROT_WRITE if op.write else PROT_READ)
        if probe is None or probe.pre_handler != self._logger:
            return False
        mapping: Mapping = probe.data
        view = mapping.view or proc.bus.view(mapping)
        if view is None or (op.write and not view.writable):
            return False
        try:
            if op.write:
                value = op.value(words)
                view.write(addr, op.width, value)
            else:
                value = view.read(addr, op.width)
        except ViewFault:
            return False  # nothing behind the page: the CPU will say SIGBUS to the program
        if op.write:
            moved = op.next_ip  # only rip moves
        else:
            op.complete(words, value)
            moved = 0
        ts = now_us()
        if proc.segv_action is None and not proc.world_stopped and not thread.pending_signals:
            try:  # nothing stands between: registers and PTRACE_CONT in one call
                pt.finish(tid, moved, thread.syscall is not None or proc.trace_syscalls)
            except TraceeGone:
                pass  # the access happened; the thread's exit will be reported
            thread.running = True
        else:
            self._finish(thread, moved)
        # Logged while the thread runs on: the record costs the program no time.
        self.stats.emulated += 1
        kind = Kind.WRITE if op.write else Kind.READ
        self.log.record(kind, op.width, addr, value, rip, tid, mapping, form, ts)
        return True

    @staticmethod
    def _finish(thread: Thread, rip: int) -> None:
        """Give a thread the registers of an access done for it (``rip`` alone if not 0,
        else the words :func:`pt.get_fault` gave, as changed), mend the program's SIGSEGV
        action, and :func:`resume` it: :meth:`_quick`'s way on when something stands
        between (a SIGSEGV action to keep, threads held, signals held back).  A thread that
        died meanwhile is no error: the access happened, its exit will be reported.
        """
        try:
            pt.set_rip_or_regs(thread.tid, rip)
            sigsegv.repair(thread)
        except TraceeGone:
            thread.running = True
            return
        resume(thread, 0)

    def _emulate(self, thread: Thread, regs: Registers, form: InstructionForm) -> bool:
        """Perform the instruction in the tracer, the page staying armed; False if it cannot."""
        proc = thread.proc
        if form.plan is None or not form.operands:
            return False
        vectors = ThreadVectors(thread.tid) if form.plan.vreg >= 0 else None
        try:
            done = emulate(form.plan, form.operands[0].address(regs), regs, proc.bus, vectors)
        except ViewFault:
            return False  # the single step will give the program its SIGBUS
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
    def _deliver(thread: Thread, effects: tuple[Protect, ...], sig: int, info: bytes = b"") -> None:
        """Re-arm, then give the program its own fault with its own ``siginfo`` (which the
        injected steps of re-arming replaced; with nothing to re-arm it is intact)."""
        if sig == signal.SIGSEGV:
            sigsegv.delivered(thread.proc)
        if effects:
            thread.proc.apply(thread, effects)
            pt.set_siginfo_raw(thread.tid, info)
        resume(thread, sig)
