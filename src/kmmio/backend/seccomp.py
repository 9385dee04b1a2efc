"""A seccomp filter that stops the tracee only on the mmap family of syscalls.

Every other syscall runs at full speed: the filter answers ``SECCOMP_RET_ALLOW`` and the
tracer is never woken.  ``mprotect`` calls the tracer injects itself carry a marker in
their unused fourth argument and are allowed without a stop.
"""

from __future__ import annotations

import ctypes
import signal
import struct

from kmmio.backend import _ptrace as pt
from kmmio.errors import TraceeError

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

#: Fourth argument of the tracer's own ``mprotect`` calls (unused by the kernel).
INJECT_MARKER = 0x6B6D6D696F21B0B0

#: Syscalls that create, move, remove or re-protect mappings (and ``rt_sigaction`` for
#: SIGSEGV, see :mod:`kmmio.sigsegv`).
WATCHED = (
    pt.SYS_MMAP,
    pt.SYS_MPROTECT,
    pt.SYS_MUNMAP,
    pt.SYS_MREMAP,
    pt.SYS_SHMAT,
    pt.SYS_SHMDT,
    pt.SYS_REMAP_FILE_PAGES,
    pt.SYS_PKEY_MPROTECT,
)

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_RET_K = 0x06


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def build_filter() -> bytes:
    """The BPF program, as the bytes of a ``struct sock_filter`` array."""
    prog = [
        _insn(_LD_W_ABS, 0, 0, 4),  # arch
        _insn(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, SECCOMP_RET_TRACE),  # i386 / x32 entry: let the tracer see it
        _insn(_LD_W_ABS, 0, 0, 0),  # nr
        # mprotect with the marker in args[3]: the tracer's own, allowed.
        _insn(_JEQ_K, 0, 5, pt.SYS_MPROTECT),
        _insn(_LD_W_ABS, 0, 0, 16 + 3 * 8),
        _insn(_JEQ_K, 0, 3, INJECT_MARKER & 0xFFFFFFFF),
        _insn(_LD_W_ABS, 0, 0, 16 + 3 * 8 + 4),
        _insn(_JEQ_K, 0, 1, INJECT_MARKER >> 32),
        _insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        _insn(_LD_W_ABS, 0, 0, 0),  # nr again
    ]
    n = len(WATCHED)
    tail = [
        # rt_sigaction(SIGSEGV, ...): the tracer keeps a copy of the program's action
        _insn(_JEQ_K, 0, 2, pt.SYS_RT_SIGACTION),
        _insn(_LD_W_ABS, 0, 0, 16),  # args[0], low half
        _insn(_JEQ_K, 1, 0, signal.SIGSEGV),
        _insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        _insn(_RET_K, 0, 0, SECCOMP_RET_TRACE),
    ]
    for i, nr in enumerate(WATCHED):
        # match: jump to the TRACE return at the end; else fall to the next test
        prog.append(_insn(_JEQ_K, n - 1 - i + len(tail) - 1, 0, nr))
    return b"".join(prog + tail)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter() -> None:
    """Install the filter in the calling process (the child, before ``execve``).

    Without ``CAP_SYS_ADMIN`` the kernel wants ``no_new_privs`` first; it is set only then.
    """
    code = build_filter()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    try:
        pt.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    except TraceeError:
        pt.prctl(PR_SET_NO_NEW_PRIVS, 1)
        pt.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
