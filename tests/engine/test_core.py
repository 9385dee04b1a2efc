"""The kmmio engine without a process: faults, steps, refcounts, grace periods."""

from __future__ import annotations

from typing import Any

import pytest

from kmmio.engine import (
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    FaultAction,
    Kmmio,
    Probe,
    Protect,
    StepCondition,
)
from kmmio.errors import EngineInvariantError, ProbeError

RW = PROT_READ | PROT_WRITE
PAGE = 4096


def rw(_: int) -> int:
    return RW


def test_register_arms_every_page_of_an_unaligned_probe() -> None:
    k = Kmmio()
    effects = k.register_probe(Probe(0x1FF0, 0x20), rw)  # touches pages 0x1000 and 0x2000
    assert effects == (Protect(0x1000, 2 * PAGE, PROT_NONE),)
    assert k.armed_pages() == [0x1000, 0x2000]


def test_shared_page_is_counted_and_disarmed_to_its_saved_protection() -> None:
    k = Kmmio()
    a, b = Probe(0x1000, 0x10), Probe(0x1800, 0x10)
    assert k.register_probe(a, lambda _: PROT_READ) == (Protect(0x1000, PAGE, PROT_NONE),)
    assert k.register_probe(b, rw) == ()  # already armed: saved protection is kept
    assert k.unregister_probe(a) == ()
    assert k.armed_pages() == [0x1000]
    assert k.unregister_probe(b) == (Protect(0x1000, PAGE, PROT_READ),)
    assert k.armed_pages() == []


def test_overlapping_probe_is_refused_and_changes_nothing() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, 0x100), rw)
    with pytest.raises(ProbeError):
        k.register_probe(Probe(0x10F0, 0x100), rw)
    assert k.stats().probes == 1


def test_traced_fault_runs_handlers_and_rearms() -> None:
    calls: list[Any] = []
    probe = Probe(
        0x1000,
        0x100,
        pre_handler=lambda p, regs, addr: calls.append(("pre", regs, addr)),
        post_handler=lambda p, cond, regs: calls.append(("post", cond, regs)),
    )
    k = Kmmio()
    k.thread_added(7)
    k.register_probe(probe, rw)
    d = k.fault(7, 0x1010, "regs")
    assert d.action is FaultAction.TRACE and d.probe is probe
    assert d.effects == (Protect(0x1000, PAGE, RW),)
    assert k.armed_pages() == []
    assert k.step_done(7, StepCondition.STEPPED, "after") == (Protect(0x1000, PAGE, PROT_NONE),)
    assert calls == [("pre", "regs", 0x1010), ("post", StepCondition.STEPPED, "after")]
    assert not k.has_context(7)


def test_access_outside_every_probe_on_an_armed_page_is_stepped_silently() -> None:
    calls: list[str] = []
    k = Kmmio()
    k.register_probe(Probe(0x1000, 4, pre_handler=lambda *a: calls.append("pre")), rw)
    d = k.fault(1, 0x1800)
    assert d.action is FaultAction.TRACE and d.probe is None
    k.step_done(1)
    assert calls == []


def test_not_mine() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, 4), rw)
    assert k.fault(1, 0x5000).action is FaultAction.NOT_MINE


def test_secondary_hit_is_genuine_and_rearms() -> None:
    post: list[Any] = []
    k = Kmmio()
    k.register_probe(Probe(0x1000, 0x10, post_handler=lambda p, c, r: post.append(c)), lambda _: PROT_READ)
    k.fault(1, 0x1000)
    d = k.fault(1, 0x1000)  # the write is refused by the page's own PROT_READ
    assert d.action is FaultAction.GENUINE
    assert d.effects == (Protect(0x1000, PAGE, PROT_NONE),)
    assert post == [StepCondition.ABORTED]
    assert not k.has_context(1)


def test_recursive_hit_opens_the_second_page_and_traces_in_full() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, 2 * PAGE), rw)
    assert k.fault(1, 0x1FFC).action is FaultAction.TRACE
    d = k.fault(1, 0x2000)
    assert d.action is FaultAction.RECURSIVE
    assert d.effects == (Protect(0x2000, PAGE, RW),)
    assert k.step_done(1) == (Protect(0x1000, 2 * PAGE, PROT_NONE),)


def test_fault_elsewhere_during_a_step_aborts_the_context() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, PAGE), rw)
    k.fault(1, 0x1000)
    d = k.fault(1, 0x9000)
    assert d.action is FaultAction.NOT_MINE
    assert d.effects == (Protect(0x1000, PAGE, PROT_NONE),)


def test_release_waits_for_every_thread_and_in_flight_faults_restart() -> None:
    k = Kmmio()
    for tid in (1, 2, 3):
        k.thread_added(tid)
    probe = Probe(0x1000, PAGE)
    k.register_probe(probe, rw)
    assert k.unregister_probe(probe) == (Protect(0x1000, PAGE, RW),)
    k.quiescent(1)
    # thread 2 faulted while the page was armed; its stop arrives now
    assert k.fault(2, 0x1004).action is FaultAction.RESTART
    k.quiescent(2)
    # thread 1 was seen since the release: its fault is genuine
    assert k.fault(1, 0x1004).action is FaultAction.NOT_MINE
    assert k.stats().pages == 1
    k.quiescent(3)
    assert k.stats().pages == 0
    assert k.fault(3, 0x1004).action is FaultAction.NOT_MINE


def test_thread_exit_ends_its_grace_period_and_context() -> None:
    ends: list[StepCondition] = []
    k = Kmmio()
    k.thread_added(1)
    k.thread_added(2)
    probe = Probe(0x1000, PAGE, post_handler=lambda p, c, r: ends.append(c))
    k.register_probe(probe, rw)
    k.fault(2, 0x1000)
    assert k.thread_removed(2) == (Protect(0x1000, PAGE, PROT_NONE),)
    assert ends == [StepCondition.LOST]  # the access may or may not have happened
    k.unregister_probe(probe)
    k.thread_removed(1)
    assert k.stats().pages == 0


def test_reregistered_during_grace_keeps_the_record_and_refreshes_protection() -> None:
    k = Kmmio()
    k.thread_added(1)
    probe = Probe(0x1000, PAGE)
    k.register_probe(probe, rw)
    k.unregister_probe(probe, unmapped=True)
    again = Probe(0x1000, PAGE)
    assert k.register_probe(again, lambda _: PROT_READ) == (Protect(0x1000, PAGE, PROT_NONE),)
    k.quiescent(1)
    assert k.stats().pages == 1
    assert k.unregister_probe(again) == (Protect(0x1000, PAGE, PROT_READ),)


def test_program_mprotect_changes_what_disarm_restores() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, 2 * PAGE), rw)
    assert k.set_saved_prot(0x2000, 0x3000, PROT_READ) == (Protect(0x2000, PAGE, PROT_NONE),)
    assert k.disarm_all() == (Protect(0x1000, PAGE, RW), Protect(0x2000, PAGE, PROT_READ))


def test_emulation_path_and_fallback_to_step() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, PAGE), rw)
    d = k.fault(1, 0x1000, open_pages=False)
    assert d.action is FaultAction.TRACE and d.effects == ()
    assert k.open_context(1) == (Protect(0x1000, PAGE, RW),)
    assert k.step_done(1) == (Protect(0x1000, PAGE, PROT_NONE),)
    k.fault(1, 0x1000, open_pages=False)
    assert k.step_done(1, StepCondition.EMULATED) == ()


def test_armed_probe_is_the_quick_case_only() -> None:
    k = Kmmio()
    probe = Probe(0x1000, PAGE + 0x10)
    k.register_probe(probe, lambda page: PROT_READ if page == 0x2000 else RW)
    assert k.armed_probe(1, 0x1004, 4, PROT_WRITE) is probe
    assert k.armed_probe(1, 0x1FFE, 4, PROT_READ) is None  # straddles two pages
    assert k.armed_probe(1, 0x2000, 4, PROT_WRITE) is None  # the program made it read-only
    assert k.armed_probe(1, 0x2000, 4, PROT_READ) is probe
    assert k.armed_probe(1, 0x200E, 4, PROT_READ) is None  # runs past the probe
    assert k.armed_probe(1, 0x2100, 4, PROT_READ) is None  # armed page, no probe
    k.fault(2, 0x1000)
    assert k.armed_probe(1, 0x1004, 4, PROT_READ) is None  # open for thread 2's step
    k.step_done(2)
    k.fault(1, 0x2000, open_pages=False)
    assert k.armed_probe(1, 0x1004, 4, PROT_READ) is None  # thread 1 has a fault in flight


def test_a_huge_page_is_one_fault_page() -> None:
    """hugetlbfs memory is armed and opened 2 MiB at a time (mprotect refuses less)."""
    huge = 2 << 20
    k = Kmmio()
    a = Probe(0x40000000 + 0x1000, 0x100, page_size=huge)
    b = Probe(0x40000000 + 0x1FE000, 0x3000, page_size=huge)  # reaches into the next huge page
    assert k.register_probe(a, rw) == (Protect(0x40000000, huge, PROT_NONE),)
    assert k.register_probe(b, rw) == (Protect(0x40200000, huge, PROT_NONE),)
    assert k.register_probe(Probe(0x1000, 0x10), rw) == (Protect(0x1000, PAGE, PROT_NONE),)
    assert k.pages.get(0x401FFFFF) is k.pages.get(0x40000000)
    assert k.armed_probe(1, 0x40000FFE, 4, PROT_READ) is None  # no probe there
    assert k.armed_probe(1, 0x40001FFE, 4, PROT_READ) is None  # runs past probe a
    assert k.armed_probe(1, 0x400FFFFE, 4, PROT_READ) is None
    assert k.armed_probe(1, 0x401FEFFE, 4, PROT_READ) is b  # 4 KiB lines mean nothing here
    assert k.armed_probe(1, 0x401FFFFE, 4, PROT_READ) is None  # but huge page lines do
    d = k.fault(1, 0x40000050)
    assert d.action is FaultAction.TRACE and d.effects == (Protect(0x40000000, huge, RW),)
    assert k.step_done(1) == (Protect(0x40000000, huge, PROT_NONE),)
    assert k.set_saved_prot(0x40000000, 0x40400000, PROT_READ) == (Protect(0x40000000, 2 * huge, PROT_NONE),)
    assert k.unregister_probe(a) == ()  # b still covers the first huge page
    assert k.unregister_probe(b) == (Protect(0x40000000, 2 * huge, PROT_READ),)
    with pytest.raises(ProbeError):  # 4 KiB pages cannot be cut out of an armed huge page
        k.register_probe(Probe(0x1000, 0x10, page_size=huge), rw)


def test_cleanup_reports_leaks_and_disarm_all_clears_them() -> None:
    k = Kmmio()
    k.register_probe(Probe(0x1000, 0x10), rw)
    assert [p.page for p in k.cleanup()] == [0x1000]
    assert k.disarm_all() == (Protect(0x1000, PAGE, RW),)
    assert k.armed_pages() == []


def test_clone_copies_state_with_new_probes() -> None:
    k = Kmmio()
    p = Probe(0x1000, 0x10, data="mapping")
    k.register_probe(p, rw)
    child, twins = k.clone()
    assert twins[p] is not p and twins[p].data == "mapping"
    assert child.armed_pages() == [0x1000]
    assert child.fault(5, 0x1000).probe is twins[p]


def test_step_done_without_context_is_an_invariant_error() -> None:
    with pytest.raises(EngineInvariantError):
        Kmmio().step_done(1)


def test_pages_lent_to_a_syscall_open_and_close_again() -> None:
    k = Kmmio()
    k.thread_added(1)
    k.thread_added(2)
    k.register_probe(Probe(0x1000, 3 * PAGE), rw)
    assert k.lend(1, 0x1800, 0x2800) == (Protect(0x1000, 2 * PAGE, RW),)
    assert k.armed_pages() == [0x3000]
    assert k.lend(1, 0x1000, 0x2000) == ()  # lent already
    # Another thread meeting a lent page (it would be held meanwhile): the program's own.
    assert k.fault(2, 0x1004).action is FaultAction.GENUINE
    assert k.take_back(1) == (Protect(0x1000, 2 * PAGE, PROT_NONE),)
    assert k.armed_pages() == [0x1000, 0x2000, 0x3000]
    assert k.take_back(1) == ()


def test_a_thread_gone_with_lent_pages_gives_them_back() -> None:
    k = Kmmio()
    k.thread_added(1)
    k.register_probe(Probe(0x1000, PAGE), rw)
    k.lend(1, 0x1000, 0x2000)
    assert k.thread_removed(1) == (Protect(0x1000, PAGE, PROT_NONE),)
    assert k.lent == {}


def test_lending_untraced_or_released_pages_does_nothing() -> None:
    k = Kmmio()
    k.thread_added(1)
    probe = Probe(0x1000, PAGE)
    k.register_probe(probe, rw)
    k.unregister_probe(probe)
    assert k.lend(1, 0x0, 0x10000) == ()
    assert k.take_back(1) == ()
