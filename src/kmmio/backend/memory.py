"""Reading a tracee's memory through ``/proc/PID/mem`` (PROT_NONE pages included)."""

from __future__ import annotations

import errno
import os

from kmmio.errors import TraceeError


class ProcessMemory:
    """An open ``/proc/PID/mem``; reopen it after ``execve`` (it follows the old image)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TraceeError("open /proc/PID/mem", exc.errno or errno.EIO, pid) from None

    def read(self, addr: int, size: int) -> bytes:
        try:
            data = os.pread(self.fd, size, addr)
        except (OSError, OverflowError) as exc:
            raise TraceeError(
                f"read {size} bytes at {addr:#x}",
                getattr(exc, "errno", None) or errno.EFAULT,
                self.pid,
            ) from None
        if len(data) != size:
            raise TraceeError(f"read {size} bytes at {addr:#x}", errno.EFAULT, self.pid)
        return data

    def write(self, addr: int, data: bytes) -> None:
        try:
            done = os.pwrite(self.fd, data, addr)
        except (OSError, OverflowError) as exc:
            done = -(getattr(exc, "errno", None) or errno.EFAULT)
        if done != len(data):
            raise TraceeError(
                f"write {len(data)} bytes at {addr:#x}", -done if done < 0 else errno.EFAULT, self.pid
            )

    def read_upto(self, addr: int, size: int) -> bytes:
        """As many of ``size`` bytes as can be read (for instruction fetch near a page end)."""
        try:
            return self.read(addr, size)
        except TraceeError:
            pass
        out = b""
        for i in range(size):
            try:
                out += os.pread(self.fd, 1, addr + i)
            except OSError:
                break
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
