"""Borrowing a program's fd (pidfd_getfd) and ioctls on it, run for real on a child process.

There is no VFIO device here, so VFIO_DEVICE_GET_INFO is only shown to reach the kernel and be
refused by a file that is not one (ENOTTY); the region infos a VFIO fd would give are tested
as tables in test_devices_place.py.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator

import pytest

from kmmio.backend.devfd import borrow_fd, borrowed_fd, ioctl_inout
from kmmio.devices import vfio_region_infos
from kmmio.errors import TraceeError


@pytest.fixture
def child_with_pipe() -> Iterator[tuple[int, int, int]]:
    """A child holding the read end of a pipe with 5 bytes in it: (pid, its fd, our write end)."""
    r, w = os.pipe()
    os.write(w, b"hello")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(r,))
    try:
        yield proc.pid, r, w
    finally:
        proc.kill()
        proc.wait()
        os.close(r)
        os.close(w)


def _borrow_or_skip(pid: int, fd: int) -> int:
    try:
        return borrow_fd(pid, fd)
    except TraceeError as e:
        if e.errno in (errno.ENOSYS, errno.EPERM):
            pytest.skip(f"pidfd_getfd not available here: {e}")
        raise


def _skip_without_pidfd_getfd(pid: int, fd: int) -> None:
    os.close(_borrow_or_skip(pid, fd))


def test_borrowed_fd_is_the_programs_file(child_with_pipe: tuple[int, int, int]) -> None:
    pid, fd, _ = child_with_pipe
    mine = _borrow_or_skip(pid, fd)
    try:
        assert (os.fstat(mine).st_ino, os.fstat(mine).st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
        # an ioctl through the borrowed fd sees the program's pipe: FIONREAD = 5 bytes waiting
        out = ioctl_inout(mine, termios.FIONREAD, struct.pack("i", 0))
        assert struct.unpack("i", out)[0] == 5
    finally:
        os.close(mine)


def test_borrowed_fd_context_closes(child_with_pipe: tuple[int, int, int]) -> None:
    pid, fd, _ = child_with_pipe
    _skip_without_pidfd_getfd(pid, fd)
    with borrowed_fd(pid, fd) as mine:
        os.fstat(mine)
    with pytest.raises(OSError):
        os.fstat(mine)


def test_errors_are_tracee_errors(child_with_pipe: tuple[int, int, int]) -> None:
    pid, fd, _ = child_with_pipe
    _skip_without_pidfd_getfd(pid, fd)
    with pytest.raises(TraceeError) as info:
        borrow_fd(pid, 987)
    assert info.value.errno == errno.EBADF and info.value.pid == pid
    with pytest.raises(TraceeError) as gone:
        borrow_fd(2**22 + 12345, 0)  # above pid_max's default ceiling: no such process
    assert gone.value.errno == errno.ESRCH


def test_vfio_ioctls_reach_the_kernel(child_with_pipe: tuple[int, int, int]) -> None:
    """VFIO_DEVICE_GET_INFO on the child's pipe: borrowed, asked, refused with ENOTTY."""
    pid, fd, _ = child_with_pipe
    _skip_without_pidfd_getfd(pid, fd)
    with pytest.raises(TraceeError) as info:
        vfio_region_infos(pid, fd)
    assert info.value.errno == errno.ENOTTY
