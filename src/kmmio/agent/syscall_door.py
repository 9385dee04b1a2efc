"""Syscalls the agent's seccomp filters trap (agent backend): the filters themselves, and
what each trapped syscall needs (:func:`kmmio.syscalls.plan.plan_syscall`, the same plans as
the ptrace backend's: pointers moved to the aliases, pages lent), then its ``MARK`` lines.
The agent runs the syscall itself, from its own ``syscall`` instruction."""

from __future__ import annotations

import signal
from collections.abc import Callable

from kmmio.agent.session import Session, words
from kmmio.mmiotrace import MmioTrace
from kmmio.robust import robust_marks, robust_reach
from kmmio.syscalls import numbers as nr
from kmmio.syscalls.filters import MAX_RANGE_FILTERS, SECCOMP_RET_TRAP, base_filter, range_filter, uncovered
from kmmio.syscalls.plan import Lend, NeedAliases, Redirect, Spans, plan_syscall, touched
from kmmio.syscalls.table import SYSCALLS, syscall_name

#: Where the agent's own ``syscall`` instruction returns to (``_agent.c``'s GADGET_AT +
#: 0x19): syscalls made from there are the agent's, never trapped.
GADGET_RETS = (0x6B6D00000019, 0x6B6D0000005E)  # after its syscall, after its int 0x80
#: The agent's filters trap with SIGSYS, ``si_errno`` this (``_agent.c``'s KM_DATA).
KM_DATA = 0x6B6D
#: Syscalls the agent's filters never trap: they cannot run from a signal handler (a new
#: thread would start on the handler's frame) or change what the handler returns to, or
#: are made with every signal blocked (a dying thread's ``exit``: glibc blocks them all
#: first, and a trapped syscall with SIGSYS blocked kills the process).
NEVER = (
    nr.CLONE, nr.CLONE3, nr.EXECVE, nr.EXECVEAT, nr.EXIT, nr.RT_SIGPROCMASK,
    219, 101, 15,  # restart_syscall, ptrace, rt_sigreturn
    273, 334, 131,  # set_robust_list, rseq, sigaltstack: a thread's own set-up, signals blocked
)  # fmt: skip


def agent_base_filter(code_ranges: list[tuple[int, int]]) -> bytes:
    """The filter an agent installs as its image starts: raw mapping calls (and i386
    ones) from the program's own code and libc's, ``rt_sigaction`` of SIGSEGV and SIGSYS,
    and ``rt_sigprocmask`` (libc blocks every signal around ``clone`` in ``posix_spawn``
    and ``pthread_create``: SIGSYS must stay open for the traps), trapped (see
    :func:`kmmio.syscalls.filters.base_filter`)."""
    return base_filter(
        (nr.RT_SIGPROCMASK,),
        SECCOMP_RET_TRAP | KM_DATA,
        GADGET_RETS,
        (signal.SIGSEGV, signal.SIGSYS),
        code_ranges,
    )


class SyscallDoor:
    """The tracer's side of trapped syscalls; ``drain`` puts the ring's records in the log
    first, so that ``MARK`` lines come after the accesses made before them."""

    def __init__(self, log: MmioTrace, drain: Callable[[], int]) -> None:
        self.log = log
        self.drain = drain

    def cover(self, s: Session) -> list[int]:
        """A seccomp filter for the agent to add, trapping syscalls that reach traced
        ranges no filter of the process looks at yet (as :meth:`SyscallPath.cover` does for
        ptrace): its length in bytes and its words, or ``[0]``."""
        if s.covers_all:
            return [0]
        missing = uncovered([(m.lo, m.hi) for m in s.mappings], s.covered)
        if not missing:
            return [0]
        everything = s.filters + 1 >= MAX_RANGE_FILTERS
        code = range_filter(missing, everything, SECCOMP_RET_TRAP | KM_DATA, NEVER, GADGET_RETS)
        s.filters += 1
        s.covered.extend(missing)
        s.covers_all = everything
        return [len(code), *words(code)]

    # -- syscalls ---------------------------------------------------------------------------

    def syscall(self, s: Session, req: list[int]) -> list[int]:
        """A syscall a filter trapped: how the agent runs it (number, six arguments, whether
        to report its result, pages to lend: count and ranges)."""
        _, tid, number, *args6, sp, _pc = req
        args = tuple(args6)
        name = syscall_name(number)
        spans = s.syscall_spans()
        if number in (nr.EXIT, nr.EXIT_GROUP):
            return self.exiting(s, tid, number, args, spans)
        plan = plan_syscall(SYSCALLS.get(number), number, args, spans, s.read, sp)
        if isinstance(plan, NeedAliases):  # an alias the agent could not make
            plan = Lend(tuple((sp_.start, sp_.end) for sp_ in plan.spans), ())
        if plan is None:
            return [number, *args, 0, 0]
        self.drain()
        s.syscalls[tid] = (name, plan)
        if isinstance(plan, Redirect):
            for at, data in plan.writes:
                s.write(at, data)
            return [plan.nr, *plan.args, 1, 0]
        lent = [w for r in plan.ranges for w in r]
        return [number, *args, 1, len(plan.ranges), *lent]

    def done(self, s: Session, tid: int, ret: int) -> None:
        flight = s.syscalls.pop(tid, None)
        if flight is None:
            return
        name, plan = flight
        assert plan is not None and not isinstance(plan, NeedAliases)
        if isinstance(plan, Redirect):
            for src, dst, n, above in plan.copy_back:
                if ret > above:
                    s.write(dst, s.read(src, n))

        def read_u32(addr: int) -> int:
            return int.from_bytes(s.read(addr, 4), "little")

        for span, addr, size, d in touched(plan.touches, ret, read_u32):
            self.log.kernel_access(name, d.value, span.map_id, span.phys_of(addr), size, tid)

    def exiting(self, s: Session, tid: int, number: int, args: tuple[int, ...], spans: Spans) -> list[int]:
        """``exit``/``exit_group``: the kernel walks the dying thread's robust futex list;
        where it reaches traced memory the pages are lent (for ``exit_group`` the agent lets
        go of every page: the process is going)."""
        reached = robust_reach(tid, s.read, spans)
        if not reached:
            return [number, *args, 0, 0]
        self.drain()
        for span, a, d in robust_marks(tid, s.read, spans, reached):
            self.log.kernel_access("robust_list", d.value, span.map_id, span.phys_of(a), 4, tid)
        ranges = (
            [(sp_.start, sp_.end) for sp_ in spans.spans]
            if number == nr.EXIT_GROUP
            else [(a, a + n) for a, n in reached]
        )
        return [number, *args, 0, len(ranges), *(w for r in ranges for w in r)]

    # -- instructions -----------------------------------------------------------------------
