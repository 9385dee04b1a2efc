"""The tracer's own view of a traced mapping, and accesses of exact width through it.

A shadow view maps ``/proc/PID/map_files/START-END`` ``MAP_SHARED`` into the tracer: the
very pages the tracee has armed, readable and writable here while they stay ``PROT_NONE``
there.  Loads and stores go through a few machine-code stubs, each a single ``mov`` (or
one 16/32-byte ``movdqu``/``vmovdqu``), so a device register sees exactly one access of
the program's width: no split, no read before a write, no wider copy.

Private mappings have no shared pages to view; :class:`ProcMemView` reaches them through
``/proc/PID/mem``, which may write to ``PROT_NONE`` private pages.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal

from kmmio.backend import _ptrace as pt
from kmmio.errors import TraceeError

_libc = pt.libc
_MAP_FAILED = ctypes.c_void_p(-1).value

# System V calls: rdi = address, rsi = value (stores) or buffer (16/32-byte copies).
_STUBS = {
    "load1": "0fb607c3",  # movzbl (%rdi),%eax; ret
    "load2": "0fb707c3",  # movzwl (%rdi),%eax; ret
    "load4": "8b07c3",  # movl (%rdi),%eax; ret
    "load8": "488b07c3",  # movq (%rdi),%rax; ret
    "store1": "408837c3",  # movb %sil,(%rdi); ret
    "store2": "668937c3",  # movw %si,(%rdi); ret
    "store4": "8937c3",  # movl %esi,(%rdi); ret
    "store8": "488937c3",  # movq %rsi,(%rdi); ret
    "load16": "f30f6f07f30f7f06c3",  # movdqu (%rdi),%xmm0; movdqu %xmm0,(%rsi); ret
    "store16": "f30f6f06f30f7f07c3",  # movdqu (%rsi),%xmm0; movdqu %xmm0,(%rdi); ret
    "load32": "c5fe6f07c5fe7f06c5f877c3",  # vmovdqu (%rdi),%ymm0; vmovdqu %ymm0,(%rsi); vzeroupper
    "store32": "c5fe6f06c5fe7f07c5f877c3",  # vmovdqu (%rsi),%ymm0; vmovdqu %ymm0,(%rdi); vzeroupper
}


# The SIGBUS handler (handler(sig, info, ucontext), System V): a fault inside the stubs
# (the view's file was truncated under it) resumes at a `ret` with rax = 0 and the fault
# flag set; any other SIGBUS restores the default action and faults again, as before.
# Placeholders, patched at install: 1 stubs start, 2 stubs end, 3 the `ret`, 4 the flag,
# 5 a zeroed kernel sigaction (SIG_DFL).
_SIGBUS_HANDLER = (
    "488b82a8000000"  # mov rax, [rdx+168]            (ucontext: rip)
    "48b91111111111111111"  # movabs rcx, STUBS_START
    "4839c8723c"  # cmp rax, rcx; jb other
    "48b92222222222222222"  # movabs rcx, STUBS_END
    "4839c8732d"  # cmp rax, rcx; jae other
    "48b93333333333333333"  # movabs rcx, RET
    "48898aa8000000"  # mov [rdx+168], rcx            (resume at the ret)
    "48c7829000000000000000"  # mov qword [rdx+144], 0    (rax = 0)
    "48b94444444444444444"  # movabs rcx, FLAG
    "c70101000000c3"  # mov dword [rcx], 1; ret
    "b80d000000bf07000000"  # other: eax = rt_sigaction, edi = SIGBUS
    "48be5555555555555555"  # movabs rsi, DEFAULT_ACTION
    "31d241ba080000000f05c3"  # xor edx, edx; r10d = 8; syscall; ret
)
_SA_SIGINFO = 4


class _SigAction(ctypes.Structure):
    """glibc's ``struct sigaction`` on x86-64."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * 16),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


class ViewFault(TraceeError):
    """An access through a view hit a page with nothing behind it (SIGBUS: the file
    shrank).  The instruction goes the kmmio way instead, and the program gets its SIGBUS."""


def _mmap(length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    addr = _libc.mmap(None, length, prot, flags, fd, offset)
    if addr is None or addr == _MAP_FAILED:
        raise TraceeError("mmap", ctypes.get_errno() or errno.ENOMEM, os.getpid())
    return int(addr)


def _open(path: str, flags: int, pid: int) -> int:
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise TraceeError(f"open {path}", exc.errno or errno.EACCES, pid) from None


class _Stubs:
    """The machine-code stubs, in one executable page of the tracer."""

    def __init__(self) -> None:
        code = b"".join(bytes.fromhex(h).ljust(16, b"\xcc") for h in _STUBS.values())
        page = _mmap(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        ctypes.memmove(page, code, len(code))
        #: Set by the SIGBUS handler when a stub faulted; see :meth:`check`.
        self.flag = ctypes.c_uint32(0)
        self._default_action = ctypes.create_string_buffer(32)
        ret, handler = page + 0x200, page + 0x300
        patches = {
            0x1111111111111111: page,
            0x2222222222222222: page + len(code),
            0x3333333333333333: ret,
            0x4444444444444444: ctypes.addressof(self.flag),
            0x5555555555555555: ctypes.addressof(self._default_action),
        }
        body = bytes.fromhex(_SIGBUS_HANDLER)
        for mark, value in patches.items():
            body = body.replace(mark.to_bytes(8, "little"), value.to_bytes(8, "little"))
        ctypes.memmove(ret, b"\xc3", 1)
        ctypes.memmove(handler, body, len(body))
        _libc.mprotect(page, 4096, mmap.PROT_READ | mmap.PROT_EXEC)
        self._action = _SigAction(handler=handler, flags=_SA_SIGINFO)
        if _libc.sigaction(signal.SIGBUS, ctypes.byref(self._action), None) != 0:
            raise TraceeError("sigaction(SIGBUS)", ctypes.get_errno(), os.getpid())
        loads = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)
        stores = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64)
        copies = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
        fns = {}
        for i, name in enumerate(_STUBS):
            kind = (
                loads
                if name in ("load1", "load2", "load4", "load8")
                else copies
                if name[-2:] in ("16", "32")
                else stores
            )
            fns[name] = kind(page + 16 * i)
        self.load = {w: fns[f"load{w}"] for w in (1, 2, 4, 8)}
        self.store = {w: fns[f"store{w}"] for w in (1, 2, 4, 8)}
        self.copy_in = {w: fns[f"load{w}"] for w in (16, 32)}
        self.copy_out = {w: fns[f"store{w}"] for w in (16, 32)}
        self._buf = ctypes.create_string_buffer(32)

    def check(self) -> None:
        """Raise :class:`ViewFault` if the last stub call faulted (its result is void)."""
        if self.flag.value:
            self.flag.value = 0
            raise ViewFault("access through the view", errno.EFAULT, os.getpid())

    def read(self, addr: int, width: int) -> int:
        if width <= 8:
            value = int(self.load[width](addr))
        else:
            self.copy_in[width](addr, self._buf)
            value = int.from_bytes(self._buf.raw[:width], "little")
        self.check()
        return value

    def write(self, addr: int, width: int, value: int) -> None:
        if width <= 8:
            self.store[width](addr, value)
        else:
            ctypes.memmove(self._buf, value.to_bytes(width, "little"), width)
            self.copy_out[width](addr, self._buf)
        self.check()


_stubs: _Stubs | None = None


def stubs() -> _Stubs:
    global _stubs
    if _stubs is None:
        _stubs = _Stubs()
    return _stubs


class ShadowView:
    """The tracer's ``MAP_SHARED`` mapping of a traced range ``[start, end)``."""

    def __init__(self, pid: int, vma: tuple[int, int], start: int, end: int, offset: int) -> None:
        self.start, self.end = start, end
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
            self.base = _mmap(end - start, prot, mmap.MAP_SHARED, fd, offset)
        finally:
            os.close(fd)
        self._stubs = stubs()
        self._load, self._store, self._flag = self._stubs.load, self._stubs.store, self._stubs.flag

    def read(self, addr: int, width: int) -> int:
        if width <= 8:
            value = int(self._load[width](self.base + (addr - self.start)))
            if self._flag.value:
                self._stubs.check()
            return value
        return self._stubs.read(self.base + (addr - self.start), width)

    def write(self, addr: int, width: int, value: int) -> None:
        if width <= 8:
            self._store[width](self.base + (addr - self.start), value)
            if self._flag.value:
                self._stubs.check()
            return
        self._stubs.write(self.base + (addr - self.start), width, value)

    def close(self) -> None:
        if self.base:
            _libc.munmap(self.base, self.end - self.start)
            self.base = 0


class ProcMemView:
    """A private traced mapping, reached through ``/proc/PID/mem``."""

    writable = True

    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd, self.start, self.end = fd, start, end

    def read(self, addr: int, width: int) -> int:
        return int.from_bytes(os.pread(self.fd, width, addr), "little")

    def write(self, addr: int, width: int, value: int) -> None:
        os.pwrite(self.fd, value.to_bytes(width, "little"), addr)

    def close(self) -> None:
        pass


View = ShadowView | ProcMemView
