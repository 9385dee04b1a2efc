"""A traced program's file descriptor, borrowed, and ioctls on it.

A VFIO device fd answers ``VFIO_DEVICE_GET_REGION_INFO`` only through the open file the
program has (a second open of the device would have to bind it again, and the group API's
device fd cannot be opened again at all).  ``pidfd_getfd()`` (Linux 5.6) gives the tracer
a duplicate of that very file; it needs ``PTRACE_MODE_ATTACH_REALCREDS`` over the program,
which a tracer has.  The Python standard library has ``os.pidfd_open`` but no
``pidfd_getfd``, hence the raw syscall here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from kmmio.errors import TraceeError

_SYS_PIDFD_GETFD = 438  # the same number on every architecture since the 5.x unification
_SYS_KCMP, _KCMP_FILE = 312, 0

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
_kcmp = _libc["syscall"]  # another handle of syscall(), with kcmp's arguments
_kcmp.restype = ctypes.c_long
_kcmp.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]


def borrow_fd(pid: int, fd: int) -> int:
    """A duplicate, in this process, of the program's ``fd`` (close it when done).

    Raises :class:`~kmmio.errors.TraceeError` (``ESRCH``: no such process; ``EBADF``: no
    such fd; ``EPERM``: not allowed; ``ENOSYS``: a kernel older than 5.6).
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        raise TraceeError("pidfd_open", e.errno or errno.EIO, pid) from None
    try:
        got = int(_syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
        if got < 0:
            raise TraceeError(f"pidfd_getfd of fd {fd}", ctypes.get_errno(), pid)
        return got
    finally:
        os.close(pidfd)


def same_file(pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
    """Whether two programs' fds are the same open file (a ``dup``, or inherited across
    ``fork``): ``kcmp(KCMP_FILE)``, which a tracer may ask.  False when it cannot tell."""
    return int(_kcmp(_SYS_KCMP, pid1, pid2, _KCMP_FILE, fd1, fd2)) == 0


@contextmanager
def borrowed_fd(pid: int, fd: int) -> Iterator[int]:
    """:func:`borrow_fd` for the length of a ``with`` block."""
    mine = borrow_fd(pid, fd)
    try:
        yield mine
    finally:
        os.close(mine)


def ioctl_inout(fd: int, request: int, arg: bytes) -> bytes:
    """``ioctl(fd, request, buf)`` on a copy of ``arg``; returns the buffer as the kernel left it.

    Raises :class:`~kmmio.errors.TraceeError` with the kernel's errno (``ENOTTY``: not a
    file that knows ``request``).
    """
    buf = bytearray(arg)
    try:
        fcntl.ioctl(fd, request, buf, True)
    except OSError as e:
        raise TraceeError(f"ioctl {request:#x} on fd {fd}", e.errno or errno.EIO) from None
    return bytes(buf)
