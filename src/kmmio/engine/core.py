"""The kmmio engine: probes, fault pages and per-thread fault contexts, free of I/O.

Theory of operation (kmmio.c in brackets)
-----------------------------------------
A probe covers an address range [``struct kmmio_probe``].  Registering it arms every page
it touches [``register_kmmio_probe`` → ``add_kmmio_fault_page`` → ``arm_kmmio_fault_page``]:
the engine answers with :class:`Protect` effects and the driver makes those pages fault.
Pages shared by probes are counted; the protection a page had before arming is saved and
disarming restores exactly it.

A fault at an address [``kmmio_handler``] is looked up in the page table.  No record: not
ours.  A record whose thread already has an active context with that page open: a genuine
fault (secondary hit) that goes to the program.  Another armed page while the context is
active (the kernel's "recursive probe hit", where it gives up on the page): the page is
opened too and the same instruction stepped again, so nothing is lost.  Otherwise a
context starts for the thread [``struct kmmio_context``, per CPU in the kernel, per thread
here], the probe's ``pre_handler`` runs, and the driver either opens the pages and
single-steps or performs the access itself.  :meth:`Kmmio.step_done` [``post_kmmio_handler``]
runs the ``post_handler`` and re-arms every page whose count is still above zero.

Unregistering [``unregister_kmmio_probe`` → ``release_kmmio_fault_page``] drops the counts
and disarms pages that reach zero, but keeps their records until every traced thread has
been seen stopped since [the RCU grace period of ``remove_kmmio_fault_pages``]: a fault
raised while such a page was still armed is recognised and the instruction simply restarts.
:meth:`Kmmio.quiescent` is the driver's report that a thread passed such a point.

:meth:`Kmmio.cleanup` reports pages left registered [``kmmio_cleanup``'s leak check] and
:meth:`Kmmio.disarm_all` gives the effects that restore every page, for a driver leaving in a
hurry.  The engine never knows that ptrace exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kmmio.engine.effects import FaultAction, FaultDecision, Protect, StepCondition
from kmmio.engine.pages import PROT_NONE, FaultPage, PageTable, ReleaseBatch
from kmmio.engine.probe import Probe, ProbeRegistry
from kmmio.errors import EngineInvariantError, ProbeError

#: Tells the engine the protection a page has now, before it is armed.
ProtLookup = Callable[[int], int]


@dataclass
class FaultContext:
    """``struct kmmio_context``: one thread's fault in flight."""

    tid: int
    addr: int
    probe: Probe | None
    pages: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stats:
    probes: int
    pages: int
    armed: int
    contexts: int
    pending_release: int


def coalesce(effects: Iterable[Protect]) -> tuple[Protect, ...]:
    """Merge adjacent effects with the same protection into one (fewer ``mprotect`` calls)."""
    out: list[Protect] = []
    for e in sorted(effects, key=lambda e: e.start):
        if out and out[-1].end == e.start and out[-1].prot == e.prot:
            out[-1] = Protect(out[-1].start, out[-1].length + e.length, e.prot)
        else:
            out.append(e)
    return tuple(out)


class Kmmio:
    """One address space's probes, fault pages and fault contexts."""

    def __init__(self, page_size: int = 4096) -> None:
        self.probes = ProbeRegistry()
        self.pages = PageTable(page_size)
        self.contexts: dict[int, FaultContext] = {}
        self.threads: set[int] = set()
        self._releases: list[ReleaseBatch] = []
        #: Pages open for a thread's syscall (:meth:`lend`), by thread.
        self.lent: dict[int, list[int]] = {}
        #: Counts changes of the probes or of the protections pages are restored to (not
        #: of arming): a driver keeping a copy of "what is traced, how" knows it is stale.
        self.layout = 0

    # -- introspection -------------------------------------------------------------------

    @property
    def page_size(self) -> int:
        return self.pages.page_size

    def get_probe(self, addr: int) -> Probe | None:
        """``get_kmmio_probe``: the probe covering ``addr``, in O(log n)."""
        return self.probes.get_probe(addr)

    def pages_of(self, probe: Probe) -> range:
        """The start of every fault page the probe touches."""
        return self.pages.pages_spanning(probe.addr, probe.length, probe.page_size)

    def armed_pages(self) -> list[int]:
        return [p.page for p in self.pages if p.armed]

    def stats(self) -> Stats:
        return Stats(
            probes=len(self.probes),
            pages=len(self.pages),
            armed=sum(1 for p in self.pages if p.armed),
            contexts=len(self.contexts),
            pending_release=sum(len(b.pages) for b in self._releases),
        )

    # -- threads and grace periods -------------------------------------------------------

    def thread_added(self, tid: int) -> None:
        self.threads.add(tid)

    def thread_removed(self, tid: int) -> tuple[Protect, ...]:
        """A thread is gone: its context (if any) ends and it no longer holds grace periods."""
        effects: tuple[Protect, ...] = ()
        if tid in self.contexts:
            effects = self._end_context(tid, StepCondition.LOST, None)
        if tid in self.lent:
            effects = coalesce((*effects, *self.take_back(tid)))
        self.threads.discard(tid)
        self.quiescent(tid)
        return effects

    def quiescent(self, tid: int) -> None:
        """Thread ``tid`` was seen stopped with no fault of the past in flight.

        Release batches no longer waiting for any thread drop their page records
        (``remove_kmmio_fault_pages``), except pages registered again meanwhile.
        """
        if not self._releases or tid in self.contexts:
            return
        keep = []
        for batch in self._releases:
            batch.waiting.discard(tid)
            if batch.waiting:
                keep.append(batch)
                continue
            for addr in batch.pages:
                page = self.pages.get(addr)
                if page is None:
                    continue
                if page.count == 0 and not page.users:
                    self.pages.remove(addr)
                else:
                    page.scheduled_for_release = False
        self._releases = keep

    # -- probes ----------------------------------------------------------------------------

    def register_probe(self, probe: Probe, prot_of: ProtLookup) -> tuple[Protect, ...]:
        """``register_kmmio_probe``: add the probe and arm every page it touches.

        Unlike kmmio, which only checks the start address, a probe that shares any byte
        with a registered one is refused with :class:`ProbeError`.  ``prot_of(page)`` gives
        a page's current protection, saved for disarming.
        """
        self.layout += 1
        size = probe.page_size or self.page_size
        for addr in self.pages_of(probe):
            page = self.pages.get(addr)
            if page is not None and (page.page, page.size) != (addr, size) and (page.count or page.users):
                raise ProbeError(f"probe at {probe.addr:#x}: its {size}-byte page meets one of {page.size}")
        self.probes.add(probe)
        effects = []
        for addr in self.pages_of(probe):
            page = self.pages.get(addr)
            if page is not None and (page.page, page.size) != (addr, size):
                self.pages.remove(page.page)  # a released page of another size: replaced
                page = None
            if page is None:
                page = FaultPage(addr, saved_prot=prot_of(addr), size=size)
                self.pages.add(page)
            elif page.count == 0 and not page.users:
                # Waiting for release: the page's protection may have changed since.
                page.saved_prot = prot_of(addr)
            page.count += 1
            if page.count == 1 and not page.armed and not page.users:
                effects.append(self._arm(page))
        return coalesce(effects)

    def unregister_probe(self, probe: Probe, *, unmapped: bool = False) -> tuple[Protect, ...]:
        """``unregister_kmmio_probe``: drop the probe, disarm pages no probe covers any more.

        With ``unmapped`` the pages no longer exist (the program unmapped them): nothing is
        restored, but records still wait out the grace period for faults in flight.
        """
        self.probes.remove(probe)
        self.layout += 1
        effects = []
        released = []
        for addr in self.pages_of(probe):
            page = self.pages.get(addr)
            if page is None:
                raise EngineInvariantError(f"probe page {addr:#x} has no record")
            page.count -= 1
            if page.count < 0:
                raise EngineInvariantError(f"page {addr:#x} count below zero")
            if page.count == 0:
                if page.armed:
                    page.armed = False
                    if not unmapped:
                        effects.append(Protect(addr, page.size, page.saved_prot))
                if not page.scheduled_for_release:
                    page.scheduled_for_release = True
                    released.append(addr)
        if released:
            self._releases.append(ReleaseBatch(tuple(released), set(self.threads)))
        return coalesce(effects)

    def set_saved_prot(self, start: int, end: int, prot: int) -> tuple[Protect, ...]:
        """The program changed the protection of ``[start, end)`` itself (its own mprotect).

        Pages there keep being traced: the new protection is what disarming restores from
        now on, and pages the change un-armed are armed again.
        """
        effects = []
        for page in self._pages_in(start, end):
            if page.count == 0:
                continue
            if page.saved_prot != prot:
                page.saved_prot = prot
                self.layout += 1
            if not page.users:
                effects.append(self._arm(page, force=True))
        return coalesce(effects)

    # -- faults ------------------------------------------------------------------------------

    def fault(self, tid: int, addr: int, regs: Any = None, *, open_pages: bool = True) -> FaultDecision:
        """``kmmio_handler``: decide what a fault of thread ``tid`` at ``addr`` is.

        For a traced fault the context starts, the probe's ``pre_handler(probe, regs,
        addr)`` runs and, with ``open_pages``, the effects open the page for a single step.
        Without it the driver emulates the access and reports :meth:`step_done`.
        """
        page = self.pages.get(addr)
        ctx = self.contexts.get(tid)
        if page is None:
            if ctx is not None:
                return FaultDecision(
                    FaultAction.NOT_MINE, self._end_context(tid, StepCondition.ABORTED, regs)
                )
            return FaultDecision(FaultAction.NOT_MINE)
        if ctx is not None:
            if page.page in ctx.pages or not page.armed:
                # Secondary hit: the page is open for this very instruction, so the
                # protection the program asked for is what refused the access.
                effects = self._end_context(tid, StepCondition.ABORTED, regs)
                return FaultDecision(FaultAction.GENUINE, effects, ctx.probe)
            # Recursive hit: the instruction reaches a second armed page.
            ctx.pages.append(page.page)
            page.users.add(tid)
            if ctx.probe is None:
                ctx.probe = self.probes.get_probe(addr)
                if ctx.probe is not None and ctx.probe.pre_handler is not None:
                    ctx.probe.pre_handler(ctx.probe, regs, addr)
            return FaultDecision(FaultAction.RECURSIVE, (self._disarm(page),), ctx.probe)
        if page.count == 0:
            # Released, waiting for its grace period.
            if self._in_flight(tid, page.page):
                return FaultDecision(FaultAction.RESTART)
            return FaultDecision(FaultAction.NOT_MINE)
        if not page.armed:
            # Open for another thread's step, or protected by the program itself: either
            # way the protection the program asked for refused the access.
            return FaultDecision(FaultAction.GENUINE)
        probe = self.probes.get_probe(addr)
        ctx = FaultContext(tid, addr, probe, [page.page])
        self.contexts[tid] = ctx
        page.users.add(tid)
        if probe is not None and probe.pre_handler is not None:
            probe.pre_handler(probe, regs, addr)
        effects = (self._disarm(page),) if open_pages else ()
        return FaultDecision(FaultAction.TRACE, effects, probe)

    def armed_probe(self, tid: int, addr: int, width: int, prot: int) -> Probe | None:
        """The probe of an access the driver may perform itself, the page staying armed.

        That is a fault for which :meth:`fault` followed by :meth:`step_done` with
        ``EMULATED`` would change no page: thread ``tid`` has nothing in flight, the
        ``width`` bytes at ``addr`` lie in one armed page whose saved protection allows
        ``prot``, and one probe covers them all.  ``None`` otherwise: take the full path.
        """
        page = self.pages.get(addr)
        if (
            page is None
            or not page.armed
            or page.count == 0
            or page.saved_prot & prot != prot
            or tid in self.contexts
            or (addr ^ (addr + width - 1)) & ~(page.size - 1)
        ):
            return None
        probe = self.probes.get_probe(addr)
        if probe is None or addr + width > probe.addr + probe.length:
            return None
        return probe

    def open_context(self, tid: int) -> tuple[Protect, ...]:
        """Open the pages of a context started without them (emulation fell back to a step)."""
        ctx = self._context(tid)
        return coalesce(self._disarm(self._page(a)) for a in ctx.pages)

    def step_done(
        self, tid: int, condition: Any = StepCondition.STEPPED, regs: Any = None
    ) -> tuple[Protect, ...]:
        """``post_kmmio_handler``: the instruction ran; re-arm its pages, end the context."""
        return self._end_context(tid, condition, regs)

    def has_context(self, tid: int) -> bool:
        return tid in self.contexts

    # -- syscalls ---------------------------------------------------------------------------

    def lend(self, tid: int, start: int, end: int) -> tuple[Protect, ...]:
        """Open the traced pages of ``[start, end)`` for a syscall of thread ``tid``.

        The kernel, working for that thread, must reach them and cannot through an armed
        page; the driver holds every other thread of the address space until
        :meth:`take_back` (kmmio.c has no such case: the kernel never faults on its pages).
        """
        lent = self.lent.setdefault(tid, [])
        effects = []
        for page in self._pages_in(start, end):
            if page.count == 0 or page.page in lent:
                continue
            lent.append(page.page)
            page.users.add(tid)
            if page.armed:
                effects.append(self._disarm(page))
        return coalesce(effects)

    def take_back(self, tid: int) -> tuple[Protect, ...]:
        """The syscall of :meth:`lend` is over: arm its pages again."""
        effects = []
        for addr in self.lent.pop(tid, []):
            page = self.pages.get(addr)
            if page is None:
                continue
            page.users.discard(tid)
            if page.count > 0 and not page.armed and not page.users:
                effects.append(self._arm(page))
        return coalesce(effects)

    # -- the end -----------------------------------------------------------------------------

    def disarm_all(self) -> tuple[Protect, ...]:
        """Effects that give every armed page its saved protection back (detach, failure)."""
        effects = []
        for page in self.pages:
            if page.armed:
                page.armed = False
                effects.append(Protect(page.page, page.size, page.saved_prot))
        return coalesce(effects)

    def cleanup(self) -> list[FaultPage]:
        """``kmmio_cleanup``: the pages still registered or armed, which is a leak at the end."""
        return [p for p in self.pages if p.count > 0 or p.armed]

    def clone(self) -> tuple[Kmmio, dict[Probe, Probe]]:
        """The engine of a forked child: same probes (copied), same page states, no contexts.

        Returns the new engine and a map from each old probe to its copy.
        """
        child = Kmmio(self.page_size)
        mapping: dict[Probe, Probe] = {}
        for probe in self.probes:
            twin = Probe(
                probe.addr, probe.length, probe.pre_handler, probe.post_handler, probe.data, probe.page_size
            )
            child.probes.add(twin)
            mapping[probe] = twin
        for page in self.pages:
            if page.count == 0:
                continue
            # A page open for a step in the parent at fork time is open in the child too.
            child.pages.add(
                FaultPage(page.page, page.saved_prot, page.count, armed=page.armed, size=page.size)
            )
        return child, mapping

    # -- internals ---------------------------------------------------------------------------

    def _arm(self, page: FaultPage, force: bool = False) -> Protect:
        if page.armed and not force:
            raise EngineInvariantError(f"page {page.page:#x} armed twice")
        page.armed = True
        return Protect(page.page, page.size, PROT_NONE)

    def _disarm(self, page: FaultPage) -> Protect:
        page.armed = False
        return Protect(page.page, page.size, page.saved_prot)

    def _pages_in(self, start: int, end: int) -> Iterator[FaultPage]:
        """The page records holding a byte of ``[start, end)``, of whatever size."""
        addr = self.pages.page_of(start)
        while addr < end:
            page = self.pages.get(addr)
            if page is None:
                addr += self.page_size
                continue
            addr = page.end
            yield page

    def _context(self, tid: int) -> FaultContext:
        ctx = self.contexts.get(tid)
        if ctx is None:
            raise EngineInvariantError(f"thread {tid} has no active fault context")
        return ctx

    def _page(self, addr: int) -> FaultPage:
        page = self.pages.get(addr)
        if page is None:
            raise EngineInvariantError(f"page {addr:#x} freed while in use")
        return page

    def _end_context(self, tid: int, condition: Any, regs: Any) -> tuple[Protect, ...]:
        ctx = self._context(tid)
        if ctx.probe is not None and ctx.probe.post_handler is not None:
            ctx.probe.post_handler(ctx.probe, condition, regs)
        del self.contexts[tid]
        effects = []
        for addr in ctx.pages:
            page = self._page(addr)
            page.users.discard(tid)
            if page.count > 0 and not page.armed and not page.users:
                effects.append(self._arm(page))
        return coalesce(effects) if effects else ()

    def _in_flight(self, tid: int, page: int) -> bool:
        return any(tid in b.waiting and page in b.pages for b in self._releases)
