"""The pure parts of the backend: wait statuses, /proc/PID/maps lines, the seccomp program."""

from __future__ import annotations

import signal
import struct

from kmmio.backend.procmaps import parse_maps
from kmmio.backend.seccomp import (
    INJECT_MARKER,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_TRACE,
    WATCHED,
    build_filter,
)
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


def _run_bpf(prog: bytes, nr: int, arch: int = 0xC000003E, args: tuple[int, ...] = (0,) * 6) -> int:
    """A tiny interpreter for the few BPF instructions the filter uses."""
    data = struct.pack("<IIQ6Q", nr, arch, 0, *args)
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x06:
            return k
        pc += 1


def test_seccomp_filter_stops_only_on_the_mmap_family() -> None:
    prog = build_filter()
    for nr in WATCHED:
        assert _run_bpf(prog, nr) == SECCOMP_RET_TRACE
    for nr in (0, 1, 3, 60, 202, 231, 12):
        assert _run_bpf(prog, nr) == SECCOMP_RET_ALLOW
    marked = (0, 0, 0, INJECT_MARKER, 0, 0)
    assert _run_bpf(prog, 10, args=marked) == SECCOMP_RET_ALLOW
    assert _run_bpf(prog, 10, args=(0, 0, 0, INJECT_MARKER & 0xFFFFFFFF, 0, 0)) == SECCOMP_RET_TRACE
    assert _run_bpf(prog, 9, arch=0x40000003) == SECCOMP_RET_TRACE
    assert _run_bpf(prog, 13, args=(11, 0, 0, 0, 0, 0)) == SECCOMP_RET_TRACE  # rt_sigaction(SIGSEGV)
    assert _run_bpf(prog, 13, args=(14, 0, 0, 0, 0, 0)) == SECCOMP_RET_ALLOW  # rt_sigaction(SIGALRM)
