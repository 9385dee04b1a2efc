"""The mapping family of the i386 ABI (``int 0x80`` from a 64-bit program), read as the
x86-64 calls the tracer understands (pure).

A 64-bit program may still enter the kernel through ``int 0x80``; its syscalls then have
the i386 numbers and arguments (``mmap2`` counts its offset in pages, the old ``mmap``
takes a pointer to its six arguments, ``ipc`` multiplexes the System V calls).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kmmio.syscalls import numbers as nr

#: ``AUDIT_ARCH_I386``: the architecture seccomp and ptrace report for such a call.
AUDIT_ARCH_I386 = 0x40000003
#: What :func:`as_x86_64` answers for a call whose effect is only known by looking at the
#: address space afterwards (``ipc(SHMAT)`` writes its address to memory).
RESCAN = -2

_IPC_SHMAT, _IPC_SHMDT = 21, 22
#: Calls whose arguments mean the same in both ABIs (32 bits wide here).
_SAME_ARGS = {
    nr.I386_MUNMAP: nr.MUNMAP, nr.I386_MPROTECT: nr.MPROTECT, nr.I386_PKEY_MPROTECT: nr.PKEY_MPROTECT,
    nr.I386_MREMAP: nr.MREMAP, nr.I386_SHMAT: nr.SHMAT, nr.I386_SHMDT: nr.SHMDT,
}  # fmt: skip
_PAGE_UNIT = 4096  # mmap2's offset unit, whatever the page size


def as_x86_64(
    number: int, args: tuple[int, ...], read: Callable[[int, int], bytes]
) -> tuple[int, tuple[int, ...]] | None:
    """The x86-64 equivalent of i386 syscall ``number(*args)``, or ``None`` if it does not
    create, move, remove or re-protect mappings."""
    a = tuple(x & 0xFFFFFFFF for x in args)
    if number == nr.I386_MMAP2:
        return nr.MMAP, (a[0], a[1], a[2], a[3], a[4], a[5] * _PAGE_UNIT)
    if number == nr.I386_OLD_MMAP:
        try:
            fields = struct.unpack("<6I", read(a[0], 24))
        except Exception:  # the kernel will fail it with EFAULT too
            return None
        return nr.MMAP, tuple(fields)
    if number in _SAME_ARGS:
        return _SAME_ARGS[number], a
    if number == nr.I386_IPC:
        if a[0] & 0xFFFF == _IPC_SHMAT:
            return RESCAN, a
        if a[0] & 0xFFFF == _IPC_SHMDT:
            return nr.SHMDT, (a[4], 0, 0, 0, 0, 0)
    return None
