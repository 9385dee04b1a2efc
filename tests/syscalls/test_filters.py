"""The seccomp filters, run by a BPF interpreter on ``seccomp_data`` built here.

The kernel runs the same bytes (the end-to-end tests load them); here every verdict can be
checked: which syscalls stop, for which arguments.
"""

from __future__ import annotations

import signal
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmmio.syscalls import bpf
from kmmio.syscalls import numbers as nr
from kmmio.syscalls.filters import (
    EXITING,
    HOT,
    INJECT_MARKER,
    MAX_RANGES,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_TRACE,
    UNSIZED_REACH,
    WATCHED,
    base_filter,
    range_filter,
)
from kmmio.syscalls.spec import ArgLen, Buf, Class
from kmmio.syscalls.table import BY_NAME, SYSCALLS

X86_64, I386 = 0xC000003E, 0x40000003


def verdict(prog: bytes, number: int, args: tuple[int, ...] = (0,) * 6, arch: int = X86_64) -> int:
    args = tuple(args) + (0,) * (6 - len(args))
    return bpf.run(prog, struct.pack("<IIQ6Q", number, arch, 0, *args))


def test_the_base_filter_stops_only_the_mmap_family_and_sigsegv_actions() -> None:
    prog = base_filter()
    for n in WATCHED:
        assert verdict(prog, n) == SECCOMP_RET_TRACE
    for n in (0, 1, 3, 60, 202, 231, 12, 39, 110):
        assert verdict(prog, n) == SECCOMP_RET_ALLOW
    assert verdict(prog, nr.MPROTECT, (0, 0, 0, INJECT_MARKER)) == SECCOMP_RET_ALLOW
    assert verdict(prog, nr.MPROTECT, (0, 0, 0, INJECT_MARKER & 0xFFFFFFFF)) == SECCOMP_RET_TRACE
    assert verdict(prog, nr.MMAP, arch=I386) == SECCOMP_RET_TRACE
    assert verdict(prog, nr.RT_SIGACTION, (signal.SIGSEGV,)) == SECCOMP_RET_TRACE
    assert verdict(prog, nr.RT_SIGACTION, (signal.SIGALRM,)) == SECCOMP_RET_ALLOW


LO, HI = 0x7F00_1234_0000, 0x7F00_1234_3000
RANGES = [(LO, HI), (0x5555_0000_0000, 0x5555_0000_1000)]


def test_a_range_filter_stops_a_pointer_into_a_range_and_lets_the_rest_run() -> None:
    prog = range_filter(RANGES)
    write, read = BY_NAME["write"].nr, BY_NAME["read"].nr
    assert verdict(prog, write, (1, LO + 8, 16)) == SECCOMP_RET_TRACE
    assert verdict(prog, write, (1, HI - 1, 1)) == SECCOMP_RET_TRACE
    assert verdict(prog, write, (1, HI, 16)) == SECCOMP_RET_ALLOW
    assert verdict(prog, read, (0, 0x5555_0000_0800, 4)) == SECCOMP_RET_TRACE
    # A buffer that starts far below and runs into the range: its length counts.
    assert verdict(prog, read, (0, LO - 0x100000, 0x100001)) == SECCOMP_RET_TRACE
    assert verdict(prog, read, (0, LO - 0x100000, 0x100000)) == SECCOMP_RET_ALLOW
    # A length of 4 GiB or more reaches everything above.
    assert verdict(prog, read, (0, 0x1000, 1 << 32)) == SECCOMP_RET_TRACE
    # No pointer at all: never stopped, whatever the arguments.
    assert verdict(prog, BY_NAME["getppid"].nr, (LO,) * 6) == SECCOMP_RET_ALLOW
    assert verdict(prog, BY_NAME["close"].nr, (LO,)) == SECCOMP_RET_ALLOW
    # Pointers inside structures: always stopped; unknown numbers and x32 too.
    assert verdict(prog, BY_NAME["readv"].nr, (0, 0x1000, 1)) == SECCOMP_RET_TRACE
    assert verdict(prog, BY_NAME["ioctl"].nr) == SECCOMP_RET_TRACE
    assert verdict(prog, 999) == SECCOMP_RET_TRACE
    assert verdict(prog, 0x40000000 | 1) == SECCOMP_RET_TRACE
    assert verdict(prog, 1, arch=I386) == SECCOMP_RET_TRACE
    for n in EXITING:
        assert verdict(prog, n) == SECCOMP_RET_TRACE


def test_a_pointer_of_unknown_extent_just_below_a_range_stops() -> None:
    prog = range_filter(RANGES)
    stat = BY_NAME["newfstatat"].nr
    assert verdict(prog, stat, (0, LO - UNSIZED_REACH + 1)) == SECCOMP_RET_TRACE
    assert verdict(prog, stat, (0, LO - UNSIZED_REACH)) == SECCOMP_RET_ALLOW


def test_the_last_filter_stops_every_pointer_taking_syscall() -> None:
    prog = range_filter(RANGES, everything=True)
    assert verdict(prog, BY_NAME["write"].nr, (1, 0x1000, 1)) == SECCOMP_RET_TRACE
    assert verdict(prog, BY_NAME["getppid"].nr) == SECCOMP_RET_ALLOW


def test_range_filters_fit_the_kernel_limit_with_the_most_ranges() -> None:
    ranges = [(LO + i * 0x100000, LO + i * 0x100000 + 0x1000) for i in range(MAX_RANGES)]
    assert len(range_filter(ranges)) // 8 <= bpf.MAX_INSNS
    with pytest.raises(ValueError):
        range_filter([*ranges, (0x1000, 0x2000)])


_page = st.integers(0, (1 << 35) - 1).map(lambda n: n << 12)


@given(
    lo=_page,
    pages=st.integers(1, 64),
    ptr=st.integers(0, (1 << 64) - 1) | _page,
    length=st.integers(0, 1 << 20) | st.integers(0, (1 << 64) - 1),
)
def test_every_direct_syscall_stops_exactly_when_its_extent_meets_the_range(
    lo: int, pages: int, ptr: int, length: int
) -> None:
    hi = lo + pages * 4096
    prog = _FILTERS.setdefault((lo, hi), range_filter([(lo, hi)]))
    for name in ("read", "write", "pwrite64", "getrandom"):
        sc = BY_NAME[name]
        (buf,) = [u for u in sc.uses if isinstance(u, Buf)]
        assert isinstance(buf.extent, ArgLen)
        args = [0] * 6
        args[buf.arg], args[buf.extent.arg] = ptr, length
        end = ptr + length
        reaches = (length >= 1 << 32 and ptr < hi) or (ptr < hi and end > lo)
        # Outside the busiest syscalls, every argument is also looked at as a pointer of
        # unknown extent.
        near = name not in HOT and any(max(lo - UNSIZED_REACH + 1, 0) <= v < hi for v in args)
        expected = SECCOMP_RET_TRACE if reaches or near else SECCOMP_RET_ALLOW
        assert verdict(prog, sc.nr, tuple(args)) == expected, (name, hex(ptr), hex(length))


_FILTERS: dict[tuple[int, int], bytes] = {}


def test_no_syscall_without_a_pointer_ever_runs_the_argument_tests() -> None:
    """Their verdict depends on the number alone, so the kernel's action cache keeps them
    out of the filter entirely: the emulation here must never load an argument."""
    prog = range_filter(RANGES)
    for sc in SYSCALLS.values():
        if sc.cls is Class.NONE and sc.nr not in EXITING:
            assert verdict(prog, sc.nr, (LO,) * 6) == SECCOMP_RET_ALLOW, sc.name


def test_far_jumps_are_relaxed() -> None:
    p = bpf.Program()
    p.load(bpf.NR)
    p.jeq(7, "far", None)
    for _ in range(300):
        p.add(1)
    p.ret(1)
    p.place("far")
    p.ret(2)
    code = p.assemble()
    assert verdict(code, 7) == 2
    assert verdict(code, 8) == 1


# -- the agent backend's filters (SECCOMP_RET_TRAP, its own syscalls let through) ---------

TRAP = 0x00030000 | 0x6B6D
GADGETS = (0x6B6D00000019, 0x6B6D0000005E)
EXE = (0x555555554000, 0x555555556000)


def verdict_at(
    prog: bytes, number: int, ip: int, args: tuple[int, ...] = (0,) * 6, arch: int = X86_64
) -> int:
    args = tuple(args) + (0,) * (6 - len(args))
    return bpf.run(prog, struct.pack("<IIQ6Q", number, arch, ip, *args))


def test_the_agents_base_filter_traps_mapping_calls_of_the_programs_own_code_only() -> None:
    prog = base_filter((), TRAP, GADGETS, (signal.SIGSEGV, signal.SIGSYS), [EXE])
    inside, loader = EXE[0] + 0x100, 0x7FFFF7FC3000
    for number in WATCHED:
        assert verdict_at(prog, number, inside) == TRAP
        assert verdict_at(prog, number, loader) == SECCOMP_RET_ALLOW  # ld.so after an exec
        assert verdict_at(prog, number, GADGETS[0]) == SECCOMP_RET_ALLOW  # the agent's own
    assert verdict_at(prog, nr.RT_SIGACTION, inside, (signal.SIGSYS,)) == TRAP
    assert verdict_at(prog, nr.RT_SIGACTION, inside, (signal.SIGSEGV,)) == TRAP
    assert verdict_at(prog, nr.RT_SIGACTION, inside, (signal.SIGINT,)) == SECCOMP_RET_ALLOW
    assert verdict_at(prog, 192, inside, arch=I386) == TRAP  # int 0x80 mmap2
    assert verdict_at(prog, 192, GADGETS[1], arch=I386) == SECCOMP_RET_ALLOW
    assert verdict_at(prog, 0, inside) == SECCOMP_RET_ALLOW  # read: not its business
    # the edges of the range, and a range ending on a 4 GiB boundary
    assert verdict_at(prog, nr.MMAP, EXE[0]) == TRAP
    assert verdict_at(prog, nr.MMAP, EXE[1]) == SECCOMP_RET_ALLOW
    high = base_filter((), TRAP, GADGETS, (signal.SIGSEGV,), [(0x7FFF00000000 - 0x1000, 0x7FFF00000000)])
    assert verdict_at(high, nr.MMAP, 0x7FFF00000000 - 2) == TRAP
    assert verdict_at(high, nr.MMAP, 0x7FFF00000000) == SECCOMP_RET_ALLOW


def test_the_agents_range_filter_traps_and_never_the_calls_it_must_not() -> None:
    lo, hi = 0x7F0000000000, 0x7F0000010000
    never = (nr.CLONE3, nr.EXIT, nr.RT_SIGPROCMASK, 273)
    prog = range_filter([(lo, hi)], verdict=TRAP, never=never, allow_ips=GADGETS)
    write = BY_NAME["write"].nr
    assert verdict_at(prog, write, 0x1000, (1, lo + 8, 16)) == TRAP
    assert verdict_at(prog, write, GADGETS[0], (1, lo + 8, 16)) == SECCOMP_RET_ALLOW
    assert verdict_at(prog, write, 0x1000, (1, hi + 0x10000, 16)) == SECCOMP_RET_ALLOW
    for number in never:
        assert verdict_at(prog, number, 0x1000, (lo,) * 6) == SECCOMP_RET_ALLOW
    assert verdict_at(prog, BY_NAME["readv"].nr, 0x1000) == TRAP  # nested: always looked at
    assert verdict_at(prog, nr.EXIT_GROUP, 0x1000) == TRAP  # the robust list
