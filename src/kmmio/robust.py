"""Robust futex lists (``set_robust_list``) a dying thread's kernel walk reaches: where they
touch traced memory, both backends lend the pages and log what the kernel does there."""

from __future__ import annotations

import struct
from collections.abc import Callable

from kmmio.backend import _ptrace as pt
from kmmio.errors import KmmioError, TraceeError
from kmmio.syscalls.plan import Span, Spans
from kmmio.syscalls.spec import Dir

#: The most list entries walked (the kernel's ROBUST_LIST_LIMIT).
ROBUST_LIST_LIMIT = 2048
_FUTEX_TID_MASK = 0x3FFFFFFF


def robust_words(read: Callable[[int, int], bytes], head: int) -> list[tuple[int, int]]:
    """What the kernel's ``exit_robust_list`` reads from the list at ``head``: list
    entries and futex words, as (address, size)."""
    out: list[tuple[int, int]] = [(head, 24)]
    try:
        first, offset, pending = struct.unpack("<QqQ", read(head, 24))
    except (KmmioError, OSError, struct.error):
        return out
    entry = first & ~1
    seen = 0
    while entry and entry != head and seen < ROBUST_LIST_LIMIT:
        out.append((entry, 8))
        out.append((entry + offset, 4))
        try:
            entry = int.from_bytes(read(entry, 8), "little") & ~1
        except (KmmioError, OSError):
            break
        seen += 1
    if pending & ~1:
        out.append(((pending & ~1) + offset, 4))
    return out


def robust_reach(tid: int, read: Callable[[int, int], bytes], spans: Spans) -> list[tuple[int, int]]:
    """The traced bytes the kernel's walk of thread ``tid``'s robust list reaches."""
    try:
        head = pt.get_robust_list(tid)
    except TraceeError:
        return []
    if not head or not spans:
        return []
    return [(a, n) for a, n in robust_words(read, head) if spans.reaches(a, a + n)]


def robust_marks(
    tid: int, read: Callable[[int, int], bytes], spans: Spans, reached: list[tuple[int, int]]
) -> list[tuple[Span, int, Dir]]:
    """The futex words of ``reached`` the kernel updates (the dying thread owns them) or
    reads, for the log's ``robust_list`` lines."""
    out = []
    for a, n in reached:
        span = spans.at(a)
        if span is None or n != 4:
            continue
        try:
            owner = int.from_bytes(read(a, 4), "little") & _FUTEX_TID_MASK
        except (KmmioError, OSError):
            owner = 0
        out.append((span, a, Dir.UPDATES if owner == tid else Dir.READS))
    return out
