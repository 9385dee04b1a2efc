"""The seccomp filters kmmio puts in a spawned program (pure: they are only bytes here).

Two kinds, stacked as the kernel stacks filters (the strictest verdict wins, so a later
filter can add stops but never remove one):

* :func:`base_filter`, installed before ``execve``: stop on the mmap family and on
  ``rt_sigaction(SIGSEGV)``; let everything else run.  Its verdict depends on nothing but
  the syscall number, so the kernel's seccomp action cache lets every other syscall
  through without running it at all.
* :func:`range_filter`, added inside the running program (an injected ``seccomp``) when
  traced mappings appear where no filter looks yet: stop a syscall when one of its
  pointer arguments reaches into those ranges (its extent worked out from its length
  argument where the table gives one), and always stop syscalls whose pointers hide in
  structures (``readv``, ``recvmsg``, ``ioctl``...) or that the table does not know.
  Syscalls that reach no user memory are let through on their number alone, so they stay
  in the kernel's cache.

Addresses are 64-bit and classic BPF is 32-bit: a pointer's extent ``[ptr, ptr + len)`` is
computed in two halves in the scratch memory, saturating where the sum would wrap.
"""

from __future__ import annotations

from collections.abc import Sequence

from kmmio.syscalls import numbers as nr
from kmmio.syscalls.bpf import ARCH, IP, NR, Program, arg_hi, arg_lo
from kmmio.syscalls.spec import ArgLen, Buf, Class, Syscall
from kmmio.syscalls.table import BY_NAME, SYSCALLS

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_TRAP = 0x00030000
AUDIT_ARCH_X86_64 = 0xC000003E

_SIGSEGV = 11

#: Fourth argument of the tracer's own ``mprotect`` calls (unused by the kernel).
INJECT_MARKER = 0x6B6D6D696F21B0B0

#: Syscalls that create, move, remove or re-protect mappings.
WATCHED = (
    nr.MMAP,
    nr.MPROTECT,
    nr.MUNMAP,
    nr.MREMAP,
    nr.SHMAT,
    nr.SHMDT,
    nr.REMAP_FILE_PAGES,
    nr.PKEY_MPROTECT,
)

#: The most ranges one range filter compares (the tracer merges neighbours to fit).
MAX_RANGES = 6

#: Syscalls a range filter tests first, and only for their own pointers: the ones a busy
#: program makes most (the others go through a search on their number).
HOT = ("write", "read", "futex", "pwrite64", "pread64", "sendto", "recvfrom")

#: Syscalls a range filter always stops: a dying thread's robust list may be traced.
EXITING = (nr.EXIT, nr.EXIT_GROUP)

#: How far a pointer of unknown extent (a path, a struct the kernel sizes) is assumed to
#: reach: one starting this close below a traced range stops too.
UNSIZED_REACH = 4096


def base_filter(
    extra: Sequence[int] = (),
    verdict: int = SECCOMP_RET_TRACE,
    allow_ips: Sequence[int] = (),
    signals: Sequence[int] = (_SIGSEGV,),
    only_from: Sequence[tuple[int, int]] = (),
) -> bytes:
    """The filter installed before ``execve``: see the module docstring; ``extra``: more
    syscall numbers to stop (a simulated device's ``read``/``poll``...).

    The agent backend's (installed by the agent as the program starts) stops with
    ``verdict`` (``SECCOMP_RET_TRAP``), lets through what its own ``syscall`` and ``int
    0x80`` instructions make (``allow_ips``: the addresses after them), watches
    ``rt_sigaction`` of SIGSYS too (``signals``), and only stops syscalls made from code
    in ``only_from`` (``[lo, hi)`` ranges, each inside one 4 GiB block): the program's own,
    not the dynamic loader's or libc's, which after an ``exec`` (the filter stays) map the
    new image before the agent is there to take the trap."""
    p = Program()
    trace, allow = "trace", "allow"
    p.load(ARCH)
    p.jeq(AUDIT_ARCH_X86_64, None, trace)  # i386 / x32 entry: the tracer reads it
    p.load(NR)
    # mprotect with the marker in args[3]: the tracer's own, allowed.
    not_marked = p.label("nm")
    p.jeq(nr.MPROTECT, None, not_marked)
    p.load(arg_lo(3))
    p.jeq(INJECT_MARKER & 0xFFFFFFFF, None, not_marked)
    p.load(arg_hi(3))
    p.jeq(INJECT_MARKER >> 32, allow, not_marked)
    p.place(not_marked)
    p.load(NR)
    for n in (*WATCHED, *extra):
        p.jeq(n, trace)
    # rt_sigaction(SIGSEGV, ...): the tracer keeps a copy of the program's action
    p.jeq(nr.RT_SIGACTION, None, allow)
    p.load(arg_lo(0))
    for sig in signals:
        p.jeq(sig, trace)
    p.goto(allow)
    p.place(trace)
    _allow_from(p, allow_ips, allow)
    if only_from:
        mine = p.label("mine")
        for lo, hi in only_from:
            other = p.label("other")
            p.load(IP + 4)
            p.jeq(lo >> 32, None, other)
            p.load(IP)
            p.jge(lo, None, other)
            p.jge(hi - 1 if hi & 0xFFFFFFFF == 0 else hi, other, mine)
            p.place(other)
        p.goto(allow)
        p.place(mine)
    p.ret(verdict)
    p.place(allow)
    p.ret(SECCOMP_RET_ALLOW)
    return p.assemble()


def _allow_from(p: Program, ips: Sequence[int], allow: str) -> None:
    """Let syscalls made from any of ``ips`` (instruction pointer after the instruction)
    through.  Looked at only on the way to a stop: a verdict that depends on the number
    alone stays in the kernel's seccomp action cache."""
    for ip in ips:
        high, other = p.label("ip"), p.label("other")
        p.load(IP)
        p.jeq(ip, high, other)
        p.place(high)
        p.load(IP + 4)
        p.jeq(ip >> 32, allow, other)
        p.place(other)


# Scratch memory of the range test: the extent [ptr, end) in halves.
_PTR_LO, _PTR_HI, _END_LO, _END_HI = 0, 1, 2, 3


def _near(p: Program, arg: int, ranges: Sequence[tuple[int, int]], hit: str) -> None:
    """Jump to ``hit`` when ``args[arg]`` lies in ``[lo - reach + 1, hi)`` of a range."""
    for lo, hi in ranges:
        first = max(lo - UNSIZED_REACH + 1, 0)
        nxt, below_hi, low_half, at_least = p.label("n"), p.label("bh"), p.label("lh"), p.label("al")
        p.load(arg_hi(arg))
        p.jgt(hi >> 32, nxt)
        p.jeq(hi >> 32, low_half, below_hi)
        p.place(low_half)
        p.load(arg_lo(arg))
        p.jge(hi & 0xFFFFFFFF, nxt, below_hi)
        p.place(below_hi)  # ptr < hi; now ptr >= first
        p.load(arg_hi(arg))
        p.jgt(first >> 32, hit)
        p.jeq(first >> 32, at_least, nxt)
        p.place(at_least)
        p.load(arg_lo(arg))
        p.jge(first & 0xFFFFFFFF, hit, nxt)
        p.place(nxt)


def _extent(p: Program, arg: int, length: tuple[int, int]) -> None:
    """``M[]`` = ``[ptr, ptr + args[n] * scale)`` of one pointer argument, the end saturated."""
    n, scale = length
    p.load(arg_lo(arg))
    p.store(_PTR_LO)
    p.load(arg_hi(arg))
    p.store(_PTR_HI)
    saturate, carry, no_carry, done = p.label("sat"), p.label("c"), p.label("nc"), p.label("e")
    p.load(arg_hi(n))
    p.jeq(0, None, saturate)  # a length of 4 GiB or more: reaches everything above
    p.load(arg_lo(n))
    if scale != 1:
        p.jgt(0xFFFFFFFF // scale, saturate)
        p.mul(scale)
    p.tax()
    p.load_mem(_PTR_LO)
    p.add_x()
    p.store(_END_LO)
    p.jge_x(no_carry, carry)  # end.lo < len.lo: the low half wrapped
    p.place(carry)
    p.load_mem(_PTR_HI)
    p.jeq(0xFFFFFFFF, saturate)
    p.add(1)
    p.store(_END_HI)
    p.goto(done)
    p.place(no_carry)
    p.load_mem(_PTR_HI)
    p.store(_END_HI)
    p.goto(done)
    p.place(saturate)
    p.load_imm(0xFFFFFFFF)
    p.store(_END_LO)
    p.store(_END_HI)
    p.place(done)


def _overlaps(p: Program, ranges: Sequence[tuple[int, int]], hit: str) -> None:
    """Jump to ``hit`` when ``[M.ptr, M.end)`` meets one of ``ranges``; fall through if not."""
    for lo, hi in ranges:
        nxt, ptr_lo, end_test, end_lo = p.label("n"), p.label("pl"), p.label("et"), p.label("el")
        # ptr < hi
        p.load_mem(_PTR_HI)
        p.jgt(hi >> 32, nxt)
        p.jeq(hi >> 32, ptr_lo, end_test)
        p.place(ptr_lo)
        p.load_mem(_PTR_LO)
        p.jge(hi & 0xFFFFFFFF, nxt, end_test)
        # end > lo
        p.place(end_test)
        p.load_mem(_END_HI)
        p.jgt(lo >> 32, hit)
        p.jeq(lo >> 32, end_lo, nxt)
        p.place(end_lo)
        p.load_mem(_END_LO)
        p.jgt(lo & 0xFFFFFFFF, hit, nxt)
        p.place(nxt)


def _lengths(sc: Syscall) -> tuple[tuple[int, int, int], ...]:
    """The pointer arguments of a DIRECT syscall with a length argument: ``(pointer
    argument, length argument, element size)``, in a canonical order."""
    found = set()
    for u in sc.uses:
        if isinstance(u, Buf) and isinstance(u.extent, ArgLen):
            found.add((u.arg, u.extent.arg, u.extent.scale))
    return tuple(sorted(found))


def _dispatch(p: Program, targets: list[tuple[int, int, str]]) -> None:
    """Jump on the syscall number (in A) through a binary search of ``(lo, hi, label)``."""
    if len(targets) == 1:
        p.goto(targets[0][2])
        return
    mid = len(targets) // 2
    right = p.label("r")
    p.jge(targets[mid][0], right)
    _dispatch(p, targets[:mid])
    p.place(right)
    _dispatch(p, targets[mid:])


def _intervals(by_nr: dict[int, str], unknown: str) -> list[tuple[int, int, str]]:
    """Consecutive numbers with the same target merged; gaps and the rest go to ``unknown``."""
    out: list[tuple[int, int, str]] = []
    top = max(by_nr) + 1
    for n in range(top):
        target = by_nr.get(n, unknown)
        if out and out[-1][2] == target and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n, target)
        else:
            out.append((n, n, target))
    out.append((top, 0xFFFFFFFF, unknown))
    return out


#: Range filters one process gets before the last one stops every pointer-taking syscall.
MAX_RANGE_FILTERS = 8
#: The grain of the ranges a range filter covers.
COVER_GRAIN = 0xFFFF


def merged(ranges: Sequence[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """Ranges sorted and merged, the closest neighbours joined until ``most`` are left."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    while len(out) > most:
        gaps = [out[i + 1][0] - out[i][1] for i in range(len(out) - 1)]
        i = gaps.index(min(gaps))
        out[i : i + 2] = [(out[i][0], out[i + 1][1])]
    return out


def uncovered(traced: Sequence[tuple[int, int]], covered: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges a new range filter must look at: the traced ``[lo, hi)`` that no filter
    covers yet, rounded out to 64 KiB (a mapping that comes back a little further, in a
    hole the kernel reuses, is covered already) and merged to at most :data:`MAX_RANGES`."""
    missing = []
    for virt, end in traced:
        lo, hi = virt & ~COVER_GRAIN, (end + COVER_GRAIN) & ~COVER_GRAIN
        if not any(c_lo <= lo and hi <= c_hi for c_lo, c_hi in covered):
            missing.append((lo, hi))
    return merged(missing, MAX_RANGES) if missing else []


def range_filter(
    ranges: Sequence[tuple[int, int]],
    everything: bool = False,
    verdict: int = SECCOMP_RET_TRACE,
    never: Sequence[int] = (),
    allow_ips: Sequence[int] = (),
) -> bytes:
    """The filter that stops syscalls reaching into ``ranges`` (``[lo, hi)`` each).

    A syscall whose pointers the table describes (DIRECT) is stopped when one of its
    arguments lies in a range or up to :data:`UNSIZED_REACH` bytes below one, or when a
    pointer with a length argument covers bytes of a range; every other syscall that
    reaches user memory is stopped, and the rest let through on their number alone.

    ``verdict`` is what a stop is (``SECCOMP_RET_TRACE`` for the ptrace backend,
    ``SECCOMP_RET_TRAP`` with data for the agent), and syscalls in ``never`` are never
    stopped (those the agent cannot run from its signal handler: ``clone``...), nor any
    made from ``allow_ips`` (the addresses after the agent's own ``syscall`` and ``int
    0x80`` instructions).

    With ``everything`` it stops every syscall that takes a pointer, whatever it points at:
    the last filter a process gets once it has had too many (see the tracer).  It also
    stops ``exit`` and ``exit_group``: the kernel walks the dying thread's robust futex
    list, which may lie in traced memory.
    """
    if len(ranges) > MAX_RANGES:
        raise ValueError(f"{len(ranges)} ranges in one filter (at most {MAX_RANGES})")
    p = Program()
    trace, allow, anywhere = "trace", "allow", "anywhere"
    p.load(ARCH)
    p.jeq(AUDIT_ARCH_X86_64, None, trace)
    p.load(NR)
    # The busiest syscalls first, each straight to a test of its own pointers only.
    hot = {} if everything else {BY_NAME[name].nr: p.label(name) for name in HOT}
    for n, label in hot.items():
        p.jeq(n, label)
    by_nr: dict[int, str] = {}
    blocks: dict[tuple[tuple[int, int, int], ...], str] = {}
    for sc in SYSCALLS.values():
        if sc.nr in never:
            by_nr[sc.nr] = allow
        elif sc.nr in EXITING or (sc.cls is not Class.NONE and everything) or sc.cls is Class.NESTED:
            by_nr[sc.nr] = trace
        elif sc.cls is Class.NONE:
            by_nr[sc.nr] = allow
        else:
            lengths = _lengths(sc)
            if lengths and lengths not in blocks:
                blocks[lengths] = p.label("len")
            by_nr[sc.nr] = blocks[lengths] if lengths else anywhere
    _dispatch(p, _intervals(by_nr, trace))
    # Pointers with a length: the whole extent is compared.
    for lengths, label in blocks.items():
        p.place(label)
        for arg, n, scale in lengths:
            _extent(p, arg, (n, scale))
            _overlaps(p, ranges, trace)
        p.goto(anywhere)
    # Then every argument as a pointer of unknown extent (a stray integer that lands in a
    # range only costs a stop).
    p.place(anywhere)
    for arg in range(6):
        _near(p, arg, ranges, trace)
    p.goto(allow)
    for n, label in hot.items():
        p.place(label)
        for buf in sorted({u for u in SYSCALLS[n].uses if isinstance(u, Buf)}, key=lambda u: u.arg):
            if isinstance(buf.extent, ArgLen):
                _extent(p, buf.arg, (buf.extent.arg, buf.extent.scale))
                _overlaps(p, ranges, trace)
            else:
                _near(p, buf.arg, ranges, trace)
        p.goto(allow)
    p.place(trace)
    _allow_from(p, allow_ips, allow)
    p.ret(verdict)
    p.place(allow)
    p.ret(SECCOMP_RET_ALLOW)
    return p.assemble()
