"""Installing a seccomp filter in the calling process (the child, before ``execve``).

The filters themselves are built in :mod:`kmmio.syscalls.filters`; filters added later,
inside the running program, are injected syscalls (:mod:`kmmio.ptrace.syscall_path`).
"""

from __future__ import annotations

import ctypes

from kmmio.backend import _ptrace as pt
from kmmio.errors import TraceeError
from kmmio.syscalls.filters import INJECT_MARKER

__all__ = ["INJECT_MARKER", "install_filter"]

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(code: bytes) -> None:
    """Install the BPF program ``code`` in the calling process.

    Without ``CAP_SYS_ADMIN`` the kernel wants ``no_new_privs`` first; it is set only then.
    """
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    try:
        pt.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    except TraceeError:
        pt.prctl(PR_SET_NO_NEW_PRIVS, 1)
        pt.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
