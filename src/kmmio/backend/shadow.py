"""The tracer's own view of a traced mapping, and accesses of exact width through it.

A shadow view maps ``/proc/PID/map_files/START-END`` ``MAP_SHARED`` into the tracer: the
very pages the tracee has armed, readable and writable here while they stay ``PROT_NONE``
there.  Loads and stores are compiled (``_sys_impl.c``), each a single ``mov`` (or one
16/32-byte ``movdqu``/``vmovdqu``, or one 64-byte ``vmovdqu64`` where the CPU has
AVX-512), so a device register sees exactly one access of the program's width: no split,
no read before a write, no wider copy.

Private mappings have no shared pages to view; :class:`ProcMemView` reaches them through
``/proc/PID/mem``, which may write to ``PROT_NONE`` private pages.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

from kmmio.backend import _ptrace as pt
from kmmio.backend._sys import ffi, lib
from kmmio.errors import TraceeError


class ViewFault(TraceeError):
    """An access through a view hit a page with nothing behind it (SIGBUS: the file
    shrank).  The instruction goes the kmmio way instead, and the program gets its SIGBUS."""


def _fault() -> ViewFault:
    lib.kmmio_view_fault = 0
    return ViewFault("access through the view", errno.EFAULT, os.getpid())


_wide = ctypes.create_string_buffer(64)
_WIDE = ctypes.addressof(_wide)
_armed = False


def _arm() -> None:
    """Install the SIGBUS handler that turns a fault inside an access into :class:`ViewFault`
    (a SIGBUS anywhere else takes its default action, as without it)."""
    global _armed
    if not _armed:
        if lib.kmmio_view_init() != 0:
            raise TraceeError("sigaction(SIGBUS)", ffi.errno, os.getpid())
        _armed = True


def _copy_wide(dst: int, src: int, width: int) -> None:
    """One 16-, 32- or 64-byte copy; a 64-byte one without AVX-512 (no ``vmovdqu64``
    here) is a :class:`ViewFault`, and the instruction goes the kmmio way."""
    if width == 64:
        if lib.kmmio_copy_zmm(dst, src) < 0:
            raise ViewFault("64-byte access without AVX-512", errno.EOPNOTSUPP, os.getpid())
    else:
        lib.kmmio_copy_wide(dst, src, width)


def load(addr: int, width: int) -> int:
    """One load of ``width`` (1, 2, 4, 8, 16, 32 or 64) bytes at ``addr`` in the tracer."""
    _arm()
    if width <= 8:
        value: int = lib.kmmio_load(addr, width)
    else:
        _copy_wide(_WIDE, addr, width)
        value = int.from_bytes(_wide.raw[:width], "little")
    if lib.kmmio_view_fault:
        raise _fault()
    return value


def store(addr: int, width: int, value: int) -> None:
    """One store of ``width`` bytes of ``value`` at ``addr`` in the tracer."""
    _arm()
    if width <= 8:
        lib.kmmio_store(addr, width, value)
    else:
        ctypes.memmove(_WIDE, value.to_bytes(width, "little"), width)
        _copy_wide(addr, _WIDE, width)
    if lib.kmmio_view_fault:
        raise _fault()


def _open(path: str, flags: int, pid: int) -> int:
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise TraceeError(f"open {path}", exc.errno or errno.EACCES, pid) from None


class ShadowView:
    """The tracer's ``MAP_SHARED`` mapping of a traced range ``[start, end)``."""

    def __init__(self, pid: int, vma: tuple[int, int], start: int, end: int, offset: int) -> None:
        """``offset``: the object's offset of ``start``, which need not be page-aligned
        (a traced part of a mapping): the view maps whole pages around it."""
        self.start, self.end = start, end
        page = mmap.PAGESIZE
        self._skip = offset & (page - 1)
        self._length = (end - start + self._skip + page - 1) & ~(page - 1)
        path = f"/proc/{pid}/map_files/{vma[0]:x}-{vma[1]:x}"
        # Writable if the object allows it (the program may mprotect its pages writable
        # later); read-only otherwise, and then its stores go the kmmio way.
        self.writable = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            self.writable = False
            fd = _open(path, os.O_RDONLY | os.O_CLOEXEC, pid)
        except OSError as exc:
            raise TraceeError(f"open {path}", exc.errno or errno.EACCES, pid) from None
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if self.writable else 0)
            self.base = pt.mmap(self._length, prot, mmap.MAP_SHARED, fd, offset - self._skip) + self._skip
        finally:
            os.close(fd)
        _arm()

    def read(self, addr: int, width: int) -> int:
        if width <= 8:  # load(), one call less: this is every traced load's path
            value: int = lib.kmmio_load(self.base + (addr - self.start), width)
            if lib.kmmio_view_fault:
                raise _fault()
            return value
        return load(self.base + (addr - self.start), width)

    def write(self, addr: int, width: int, value: int) -> None:
        if width <= 8:
            lib.kmmio_store(self.base + (addr - self.start), width, value)
            if lib.kmmio_view_fault:
                raise _fault()
            return
        store(self.base + (addr - self.start), width, value)

    def close(self) -> None:
        if self.base:
            pt.munmap(self.base - self._skip, self._length)
            self.base = 0


class ProcMemView:
    """A private traced mapping, reached through ``/proc/PID/mem``; or a shared one
    through its alias in the program, ``delta`` bytes away (the kernel writes no shared
    page it may not write through ``/proc/PID/mem``, and the traced pages are PROT_NONE)."""

    writable = True

    def __init__(self, fd: int, start: int, end: int, delta: int = 0) -> None:
        self.fd, self.start, self.end, self.delta = fd, start, end, delta

    def read(self, addr: int, width: int) -> int:
        return int.from_bytes(os.pread(self.fd, width, addr + self.delta), "little")

    def write(self, addr: int, width: int, value: int) -> None:
        os.pwrite(self.fd, value.to_bytes(width, "little"), addr + self.delta)

    def close(self) -> None:
        pass


View = ShadowView | ProcMemView
