"""Property tests: random register/unregister/fault/step/quiescent sequences.

Invariants after every step: the armed pages are exactly the pages with a count above
zero that no fault context has open, and no page record a context uses is ever freed.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kmmio.engine import PROT_NONE, FaultAction, Kmmio, Probe, Protect, StepCondition
from kmmio.errors import ProbeError

PAGE = 4096
HUGE = 2 << 20
HUGE_BASE = 64 << 20  # huge-page probes live here, 4 KiB ones below 1 MiB
THREADS = (1, 2, 3)
ADDRS = st.one_of(st.integers(0, 25 * PAGE), st.integers(HUGE_BASE, HUGE_BASE + 5 * HUGE))


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.k = Kmmio()
        for t in THREADS:
            self.k.thread_added(t)
        self.probes: list[Probe] = []
        self.prot: dict[int, int] = {}  # what the "process" has, page → protection

    def _apply(self, effects: tuple[Protect, ...]) -> None:
        for e in effects:
            for page in range(e.start, e.end, PAGE):
                self.prot[page] = e.prot

    @rule(start=st.integers(0, 40), length=st.integers(1, 3 * PAGE))
    def register(self, start: int, length: int) -> None:
        probe = Probe(start * 512, length)
        try:
            self._apply(self.k.register_probe(probe, lambda page: self.prot.get(page, 3)))
        except ProbeError:
            return
        self.probes.append(probe)

    @rule(start=st.integers(0, 8), length=st.integers(1, 2 * HUGE))
    def register_huge(self, start: int, length: int) -> None:
        probe = Probe(HUGE_BASE + start * HUGE // 4, length, page_size=HUGE)
        try:
            self._apply(self.k.register_probe(probe, lambda page: self.prot.get(page, 3)))
        except ProbeError:
            return
        self.probes.append(probe)

    @precondition(lambda self: self.probes)
    @rule(data=st.data())
    def unregister(self, data: st.DataObject) -> None:
        probe = data.draw(st.sampled_from(self.probes))
        self.probes.remove(probe)
        self._apply(self.k.unregister_probe(probe))

    @rule(tid=st.sampled_from(THREADS), addr=ADDRS)
    def fault(self, tid: int, addr: int) -> None:
        if self.prot.get(addr & ~(PAGE - 1), 3) != PROT_NONE and not self.k.has_context(tid):
            return  # the page is not armed: no fault would happen
        d = self.k.fault(tid, addr)
        self._apply(d.effects)
        if d.action is FaultAction.TRACE:
            assert self.prot[addr & ~(PAGE - 1)] != PROT_NONE

    @rule(tid=st.sampled_from(THREADS), addr=ADDRS, width=st.sampled_from([1, 4, 8]))
    def quick(self, tid: int, addr: int, width: int) -> None:
        """``armed_probe`` says yes only where a full emulated fault would change nothing."""
        probe = self.k.armed_probe(tid, addr, width, 3)
        if probe is None:
            return
        assert probe.addr <= addr and addr + width <= probe.end
        assert {self.prot.get(a & ~(PAGE - 1)) for a in (addr, addr + width - 1)} == {PROT_NONE}
        assert self.k.pages.get(addr) is self.k.pages.get(addr + width - 1)
        before = [(p.page, p.armed, p.count, set(p.users)) for p in self.k.pages]
        d = self.k.fault(tid, addr, open_pages=False)
        assert d.action is FaultAction.TRACE and d.probe is probe and d.effects == ()
        assert self.k.step_done(tid, StepCondition.EMULATED) == ()
        assert [(p.page, p.armed, p.count, set(p.users)) for p in self.k.pages] == before

    @rule(tid=st.sampled_from(THREADS))
    def step(self, tid: int) -> None:
        if self.k.has_context(tid):
            self._apply(self.k.step_done(tid))

    @rule(tid=st.sampled_from(THREADS))
    def quiescent(self, tid: int) -> None:
        self.k.quiescent(tid)

    @invariant()
    def armed_pages_are_counted_and_closed(self) -> None:
        for page in self.k.pages:
            open_now = bool(page.users)
            assert page.armed == (page.count > 0 and not open_now)
            assert (self.prot.get(page.page) == PROT_NONE) == page.armed
            assert all(self.prot.get(a) == self.prot.get(page.page) for a in range(page.page, page.end, PAGE))
            assert page.count == sum(1 for p in self.probes if page.page in self.k.pages_of(p))

    @invariant()
    def pages_in_use_exist(self) -> None:
        for ctx in self.k.contexts.values():
            for addr in ctx.pages:
                assert self.k.pages.get(addr) is not None


TestEngine = EngineMachine.TestCase
TestEngine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
