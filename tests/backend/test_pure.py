"""The pure parts of the backend: wait statuses, /proc/PID/maps lines."""

from __future__ import annotations

import signal

from kmmio.backend.procmaps import parse_maps
from kmmio.backend.waitstatus import Exited, Killed, PtraceEvent, Stopped, decode_status, exit_code
from kmmio.engine import PROT_READ, PROT_WRITE


def test_wait_statuses() -> None:
    assert decode_status(5, 3 << 8) == Exited(5, 3)
    assert decode_status(5, signal.SIGSEGV | 0x80) == Killed(5, signal.SIGSEGV, True)
    assert decode_status(5, (signal.SIGSEGV << 8) | 0x7F) == Stopped(5, signal.SIGSEGV)
    assert decode_status(5, ((signal.SIGTRAP | 0x80) << 8) | 0x7F) == Stopped(5, signal.SIGTRAP, syscall=True)
    ev = decode_status(5, (PtraceEvent.SECCOMP << 16) | (signal.SIGTRAP << 8) | 0x7F)
    assert ev == Stopped(5, signal.SIGTRAP, PtraceEvent.SECCOMP)
    assert exit_code(Killed(1, 9)) == 137
    assert exit_code(Exited(1, 4)) == 4


def test_maps_lines() -> None:
    text = (
        "7f00c0de0000-7f00c0de2000 rw-s 00003000 00:1f 1234    /dev/shm/regs (deleted)\n"
        "7ffd1000-7ffd3000 rw-p 00000000 00:00 0 \n"
        "7ffd5000-7ffd6000 r-xp 00000000 00:00 0    [vdso]\n"
    )
    shm, anon, vdso = parse_maps(text)
    assert (shm.start, shm.end, shm.offset, shm.path) == (
        0x7F00C0DE0000,
        0x7F00C0DE2000,
        0x3000,
        "/dev/shm/regs (deleted)",
    )
    assert shm.prot == PROT_READ | PROT_WRITE and shm.shared and not shm.anonymous
    assert anon.anonymous and anon.path == ""
    assert vdso.path == "[vdso]" and vdso.perms == "r-xp"
