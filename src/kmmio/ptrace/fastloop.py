"""The tracer's side of the compiled fast loop (:mod:`kmmio.backend.fast`).

The fault path decides, once per instruction, that a plain load or store can be performed
by the tracer (:class:`kmmio.x86.quick.QuickOp`); from then on the compiled loop performs
it, without Python, for as long as what it was told holds.  This module tells it:

* the descriptors (one per instruction address and address space), learned by the fault
  path, forgotten when the address space's code may have changed (its bus was emptied);
* the ranges a plain access may be served on: the bytes the log's probes cover, with the
  protection the program asked for, where the tracer has a view, recomputed when the
  engine's probes or protections changed (:attr:`Kmmio.layout`) or a view was made;
* which threads may be served: none with a SIGSEGV action to mend, held, with signals
  held back or a syscall in flight, and none of an address space with a page open (a
  single step, a syscall's lent pages: then every page served must be armed).

:meth:`FastLoop.wait` is the tracer's wait: it brings the tables up to date, lets the
compiled loop run until an event needs Python, and hands the rows it served to the log.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from kmmio.backend import _ptrace as pt
from kmmio.backend import fast
from kmmio.backend.shadow import ShadowView
from kmmio.engine import PROT_READ, PROT_WRITE
from kmmio.mmiotrace import MmioTrace
from kmmio.ptrace.process import Process, Thread
from kmmio.x86.quick import QuickOp


class FastLoop:
    """Keeps the compiled loop's tables in step with the tracer; see the module docstring."""

    def __init__(
        self,
        log: MmioTrace,
        procs: dict[int, Process],
        threads: dict[int, Thread],
        served: Callable[[int, int], None],
    ) -> None:
        self.log = log
        self.procs = procs
        self.threads = threads
        self._served = served
        self._ids = itertools.count(1)
        self._space: dict[int, int] = {}  # id(proc) -> space
        self._procs_of: dict[int, Process] = {}  # space -> proc
        self._epoch: dict[int, int] = {}  # space -> code epoch its descriptors belong to
        self._layout: dict[int, object] = {}  # space -> what its ranges were made from
        self._ranges: dict[int, list[tuple[int, ...]]] = {}
        #: Descriptors could not be handed over (the table is full).
        self.full = False
        self._threads: list[tuple[int, int, int, int]] = []

    def space(self, proc: Process) -> int:
        key = id(proc)
        space = self._space.get(key)
        if space is None or self._procs_of.get(space) is not proc:
            space = self._space[key] = next(self._ids)
            self._procs_of[space] = proc
            self._epoch[space] = proc.bus.code_cache.epoch
        return space

    # -- descriptors ------------------------------------------------------------------------

    def learn(self, proc: Process, rip: int, op: QuickOp) -> None:
        """The instruction at ``rip`` is a plain load or store the tracer performs."""
        space = self.space(proc)
        if self._epoch[space] != proc.bus.code_cache.epoch:
            fast.forget(space)
            self._epoch[space] = proc.bus.code_cache.epoch
        seg = op.segment
        words = (
            space, rip, int(op.write), op.width,
            *op.base, *op.index, op.scale, op.displacement,
            seg, *op.reg, int(op.imm is not None), op.imm or 0, op.sign_bit, op.next_ip,
        )  # fmt: skip
        if not fast.learn(words):
            self.full = True

    # -- tables -----------------------------------------------------------------------------

    def _sync(self) -> None:
        live = {self.space(p): p for p in self.procs.values()}
        for space in [s for s in self._procs_of if s not in live]:
            fast.forget(space)
            self._forget_space(space)
        changed = False
        for space, proc in live.items():
            if self._epoch[space] != proc.bus.code_cache.epoch:
                fast.forget(space)
                self._epoch[space] = proc.bus.code_cache.epoch
            key = (proc.engine.layout, tuple((m.map_id, id(m.view)) for m in proc.mappings))
            if self._layout.get(space) != key:
                self._layout[space] = key
                self._ranges[space] = self._ranges_of(space, proc)
                changed = True
        if changed:
            fast.set_ranges([r for rs in self._ranges.values() for r in rs])
        resume = {False: pt.PTRACE_CONT, True: pt.PTRACE_SYSCALL}
        table = [
            (t.tid, self.space(t.proc), int(self._servable(t)), resume[self._syscalls(t)])
            for t in self.threads.values()
        ]
        if table != self._threads:  # most waits follow an event that changed nothing here
            fast.set_threads(table)
            self._threads = table

    def _forget_space(self, space: int) -> None:
        proc = self._procs_of.pop(space, None)
        if proc is not None:
            self._space.pop(id(proc), None)
        self._epoch.pop(space, None)
        self._layout.pop(space, None)
        self._ranges.pop(space, None)

    @staticmethod
    def _syscalls(t: Thread) -> bool:
        return t.syscall is not None or t.kernel is not None or t.proc.trace_syscalls

    @staticmethod
    def _servable(t: Thread) -> bool:
        proc = t.proc
        return (
            proc.segv_action is None
            and not proc.world_stopped
            and not t.pending_signals
            and not t.held
            and t.kernel is None
            and not proc.engine.contexts
            and not proc.engine.lent
        )

    def _ranges_of(self, space: int, proc: Process) -> list[tuple[int, ...]]:
        """(space, lo, hi, view address, phys, map id, can read, can write, page mask) of
        the bytes the log's probes cover where the tracer has a view, in runs of equal
        protection."""
        out: list[tuple[int, ...]] = []
        engine = proc.engine
        for m in proc.mappings:
            view = m.view
            if not isinstance(view, ShadowView) or not view.base:
                continue
            for probe in m.probes:
                if probe.pre_handler != self.log.pre_handler:
                    continue  # a probe of the API's user: its handlers run in Python
                for page in engine.pages_of(probe):
                    rec = engine.pages.get(page)
                    if rec is None or rec.count == 0:
                        continue
                    lo, hi = max(rec.page, probe.addr), min(rec.end, probe.end)
                    can_read = int(bool(rec.saved_prot & PROT_READ))
                    can_write = int(bool(rec.saved_prot & PROT_WRITE) and view.writable)
                    run = (space, lo, hi, view.base + (lo - view.start), m.phys_of(lo), m.map_id,
                           can_read, can_write, rec.size - 1)  # fmt: skip
                    last = out[-1] if out else None
                    if (
                        last is not None
                        and last[2] == lo
                        and last[3] + (lo - last[1]) == run[3]
                        and last[4] + (lo - last[1]) == run[4]
                        and last[5:] == run[5:]
                    ):
                        out[-1] = (*last[:2], hi, *last[3:])
                    else:
                        out.append(run)
        return out

    # -- the wait ---------------------------------------------------------------------------

    def wait(self, waiting: Callable[[bool], None]) -> tuple[int, int] | None:
        """The tracer's wait (see :func:`kmmio.backend._ptrace.wait_next`), serving on the
        way what the compiled loop can; ``pt.NO_STATUS`` when it stopped only to hand over
        rows or for a signal.  ``waiting`` is told when the blocking call starts and ends:
        only there may a signal handler cut it short (a status it read stays in the wait
        buffer, unclaimed, and the rows it served wait too)."""
        self.drain()  # rows a signal left behind last time
        self._sync()
        try:
            waiting(True)
            got = fast.serve()
        finally:
            waiting(False)
        self.drain()
        if got == fast.READY:
            return pt.claim_status()
        if got == fast.GONE:
            return None
        return pt.NO_STATUS

    def pending(self) -> int:
        """Rows served and not yet handed to the log."""
        return fast.served()

    def drain(self) -> None:
        """Hand the rows served to the log (the tracer does this on every way out too)."""
        n = fast.served()
        if not n:
            return
        tids = fast.tids_of_rows()
        for tid in tids:  # counted before they are logged, as the fault path counts
            self._served(tid, n)
            n = 0
        self.log.served(fast)
