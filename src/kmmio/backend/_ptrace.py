"""The one door to the kernel: ptrace, waitid, prctl, mmap, and ``/proc`` status.

Every ptrace request goes through :func:`ptrace` (or, on the per-access path, the same
compiled call and :func:`_failed`), which turns ``-1``/errno into
:class:`~kmmio.errors.TraceeError` carrying errno and pid (``ESRCH`` becomes
:class:`~kmmio.errors.TraceeGone`).  The C side is ``_sys_impl.c``, built by cffi.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import MutableSequence

from kmmio.backend._sys import ffi as _ffi
from kmmio.backend._sys import lib as _lib
from kmmio.errors import TraceeError, TraceeGone, UsageError
from kmmio.x86.regs import Registers

assert sys.platform == "linux"

PTRACE_PEEKDATA = 2
PTRACE_PEEKUSER = 3
PTRACE_POKEUSER = 6
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_ATTACH = 16
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SETSIGINFO = 0x4203
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_GET_SYSCALL_INFO = 0x420E
SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2
SYSCALL_INFO_SECCOMP = 3
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208

PTRACE_O_TRACESYSGOOD = 1
PTRACE_O_TRACEFORK = 1 << 1
PTRACE_O_TRACEVFORK = 1 << 2
PTRACE_O_TRACECLONE = 1 << 3
PTRACE_O_TRACEEXEC = 1 << 4
PTRACE_O_TRACEVFORKDONE = 1 << 5
PTRACE_O_TRACEEXIT = 1 << 6
PTRACE_O_TRACESECCOMP = 1 << 7
PTRACE_O_EXITKILL = 1 << 20

__WALL = 0x40000000

SEGV_MAPERR = 1
SEGV_ACCERR = 2
SI_KERNEL = 0x80

SYS_MMAP = 9
SYS_RT_SIGACTION = 13
SYS_RT_SIGPROCMASK = 14
SYS_MPROTECT = 10
SYS_MUNMAP = 11
SYS_MREMAP = 25
SYS_MADVISE = 28
SYS_SHMAT = 30
SYS_SHMDT = 67
SYS_CLONE = 56
SYS_REMAP_FILE_PAGES = 216
SYS_PKEY_MPROTECT = 329
SYS_CLONE3 = 435

# The calls themselves are compiled (``_sys_impl.c``, through cffi): they take and return
# plain integers, addresses of the ctypes buffers below included, so that the per-access
# requests cost no argument conversion.
_call = _lib.kmmio_ptrace

_UserRegs = ctypes.c_ulonglong * 27
_regs_buf = _UserRegs()
_siginfo_buf = (ctypes.c_ubyte * 128)()
_msg_buf = ctypes.c_ulong()
_REGS = ctypes.addressof(_regs_buf)
_regs_words: MutableSequence[int] = _regs_buf  # type: ignore[assignment]
_SIGINFO = ctypes.addressof(_siginfo_buf)
_MSG = ctypes.addressof(_msg_buf)
_SI_CODE_ADDR = struct.Struct("<i4xQ")
_RIP_OFFSET = 16 * 8  # user_regs_struct.rip


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0, peek: bool = False) -> int:
    """The choke point: every ptrace request goes through here.

    ``data`` is a number or the address of a buffer.  For the PEEK requests, whose result
    may be -1, ``peek`` makes errno the judge.
    """
    if peek:
        _ffi.errno = 0
    ret: int = _call(request, pid, addr, data)
    if ret == -1 and (not peek or _ffi.errno):
        _failed(request, pid)
    return ret


def _failed(request: int, pid: int) -> None:
    """Raise for a request that returned -1: errno and pid in the error, ``ESRCH`` as
    :class:`TraceeGone`.  (The per-access requests call ``_call`` directly and come here.)"""
    err = _ffi.errno
    if err == errno.ESRCH:
        raise TraceeGone(f"ptrace({request:#x})", err, pid)
    raise TraceeError(f"ptrace({request:#x})", err or errno.EIO, pid)


def seize(pid: int, options: int) -> None:
    ptrace(PTRACE_SEIZE, pid, 0, options)


def interrupt(tid: int) -> None:
    ptrace(PTRACE_INTERRUPT, tid)


def cont(tid: int, sig: int = 0) -> None:
    if _call(PTRACE_CONT, tid, 0, sig) == -1:
        _failed(PTRACE_CONT, tid)


def singlestep(tid: int, sig: int = 0) -> None:
    ptrace(PTRACE_SINGLESTEP, tid, 0, sig)


def syscall(tid: int, sig: int = 0) -> None:
    ptrace(PTRACE_SYSCALL, tid, 0, sig)


def listen(tid: int) -> None:
    ptrace(PTRACE_LISTEN, tid)


def detach(tid: int, sig: int = 0) -> None:
    ptrace(PTRACE_DETACH, tid, 0, sig)


def get_regs(tid: int) -> Registers:
    ptrace(PTRACE_GETREGS, tid, 0, _REGS)
    return Registers.from_words(_regs_buf[:], tid)


def finish(tid: int, rip: int = 0, syscall: bool = False) -> None:
    """A thread goes on after an access done for it: its ``rip`` alone if not 0 (a store
    moves nothing else), else the registers :func:`get_fault` gave as changed since; then
    ``PTRACE_CONT`` (``PTRACE_SYSCALL`` with ``syscall``).  One compiled call."""
    failed = _lib.kmmio_finish(tid, _REGS, rip, _RIP_OFFSET, PTRACE_SYSCALL if syscall else PTRACE_CONT)
    if failed:
        _failed(failed, tid)


def set_rip_or_regs(tid: int, rip: int = 0) -> None:
    """:func:`finish` without letting the thread go."""
    failed = _lib.kmmio_finish(tid, _REGS, rip, _RIP_OFFSET, 0)
    if failed:
        _failed(failed, tid)


def get_rax(tid: int) -> int:
    """``rax`` alone (``PTRACE_PEEKUSER``): a syscall's result, without a full GETREGS."""
    return ptrace(PTRACE_PEEKUSER, tid, 10 * 8, peek=True) & (1 << 64) - 1


def set_regs(tid: int, regs: Registers) -> None:
    _regs_buf[:] = list(regs.to_words())
    ptrace(PTRACE_SETREGS, tid, 0, _REGS)


def siginfo_code_addr(raw: bytes) -> tuple[int, int]:
    """``(si_code, si_addr)`` of a raw ``siginfo_t`` of SIGSEGV or SIGBUS."""
    code, addr = _SI_CODE_ADDR.unpack_from(raw, 8)
    return int(code), int(addr)


NT_X86_XSTATE = 0x202
_XSTATE_MAX = 1 << 14


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_xstate_buf = (ctypes.c_ubyte * _XSTATE_MAX)()


def get_xstate(tid: int) -> bytearray:
    """The thread's extended state in the XSAVE standard layout (``NT_X86_XSTATE``)."""
    iov = _IoVec(ctypes.addressof(_xstate_buf), _XSTATE_MAX)
    ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))
    return bytearray(_xstate_buf[: iov.len])


def set_xstate(tid: int, data: bytes | bytearray) -> None:
    buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
    iov = _IoVec(ctypes.addressof(buf), len(data))
    ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))


_syscall_info_buf = (ctypes.c_ubyte * 88)()
_SYSCALL_INFO = struct.Struct("<B3xIQQQ6Q")


def get_syscall_info(tid: int) -> tuple[int, int, tuple[int, ...]]:
    """At a syscall stop: ``(op, nr, args)`` at entry, ``(op, result, ())`` at exit."""
    op, _arch, first, args = get_syscall_stop(tid)
    return op, first, args


def get_syscall_stop(tid: int) -> tuple[int, int, int, tuple[int, ...]]:
    """At a syscall or seccomp stop: ``(op, arch, nr, args)`` at entry, ``(op, arch,
    result, ())`` at exit (``arch`` is the ``AUDIT_ARCH_*`` of the call: i386 for
    ``int 0x80``)."""
    ptrace(PTRACE_GET_SYSCALL_INFO, tid, len(_syscall_info_buf), ctypes.addressof(_syscall_info_buf))
    op, arch, _ip, _sp, first, *args = _SYSCALL_INFO.unpack_from(bytes(_syscall_info_buf))
    if op == SYSCALL_INFO_EXIT:
        return op, arch, first - (1 << 64) if first >= 1 << 63 else first, ()
    if op == SYSCALL_INFO_SECCOMP:  # struct ptrace_syscall_info.seccomp: nr, args, ret_data
        return op, arch, first, tuple(args)
    return op, arch, first, tuple(args)


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_GET_ROBUST_LIST = 274
_robust = (ctypes.c_uint64 * 2)()


def get_robust_list(tid: int) -> int:
    """The address of thread ``tid``'s robust futex list head (0: none); ``get_robust_list``."""
    if _libc.syscall(_SYS_GET_ROBUST_LIST, tid, ctypes.byref(_robust, 0), ctypes.byref(_robust, 8)) != 0:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            raise TraceeGone("get_robust_list", err, tid)
        raise TraceeError("get_robust_list", err, tid)
    return int(_robust[0])


def file_identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of what ``path`` leads to (a ``/proc/PID/fd`` link), if anything."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def fd_target(pid: int, fd: int) -> str:
    """What descriptor ``fd`` of process ``pid`` stands for (``/proc/PID/fd/FD``'s link)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd & 0xFFFFFFFF}")
    except OSError:
        return ""


def open_fds(pid: int) -> list[int]:
    """The file descriptors process ``pid`` has open now."""
    try:
        return sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return []


def get_siginfo_raw(tid: int) -> bytes:
    """The whole ``siginfo_t`` of the signal a thread is stopped with."""
    ptrace(PTRACE_GETSIGINFO, tid, 0, _SIGINFO)
    return bytes(_siginfo_buf)


def get_fault(tid: int) -> tuple[int, int, MutableSequence[int]]:
    """``(si_code, si_addr, words)`` of the SIGSEGV/SIGBUS a thread is stopped with.

    ``words`` are the 27 raw words of its ``user_regs_struct``, in a buffer shared by every
    call: no snapshot is built (the per-access path), and :func:`finish` gives them back to
    the thread as changed.  The whole ``siginfo_t`` stays readable with
    :func:`last_siginfo`.  Both are valid until the next ``get_fault`` or ``get_regs``.
    """
    failed = _lib.kmmio_get_fault(tid, _SIGINFO, _REGS)
    if failed:
        _failed(failed, tid)
    code, addr = _SI_CODE_ADDR.unpack_from(_siginfo_buf, 8)
    return code, addr, _regs_words


def last_siginfo() -> bytes:
    return bytes(_siginfo_buf)


def set_siginfo_raw(tid: int, raw: bytes) -> None:
    """Put back a ``siginfo_t`` (after injected steps replaced it with their trap's)."""
    buf = (ctypes.c_ubyte * 128).from_buffer_copy(raw)
    ptrace(PTRACE_SETSIGINFO, tid, 0, ctypes.addressof(buf))


def get_event_msg(tid: int) -> int:
    ptrace(PTRACE_GETEVENTMSG, tid, 0, _MSG)
    return int(_msg_buf.value)


def wait(pid: int = -1, nohang: bool = False) -> tuple[int, int] | None:
    """``waitpid(pid, __WALL)``; ``None`` when there is no child left (or none ready)."""
    try:
        got, status = os.waitpid(pid, __WALL | (os.WNOHANG if nohang else 0))
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return got, status


_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED, _CLD_TRAPPED = 1, 2, 3, 4
_wait_buf = (ctypes.c_int * 32)()  # a siginfo_t: si_code at [2], si_pid at [4], si_status at [6]
_WAIT_INFO = ctypes.addressof(_wait_buf)
_WAIT_FLAGS = os.WEXITED | os.WSTOPPED | __WALL
#: The waitid buffer and flags, for a compiled loop that waits as :func:`wait_next` does.
WAIT_INFO, WAIT_FLAGS = _WAIT_INFO, _WAIT_FLAGS
#: "No status": what a wait that stopped only to hand over log rows returns.
NO_STATUS = (0, 0)


def wait_next() -> tuple[int, int] | None:
    """Block until some traced task reports; ``(tid, status)`` as ``waitpid`` gives them.

    One ``waitid`` call, which consumes the status.  The kernel writes it into a buffer
    first, so when a signal handler's exception cuts this call short after the status
    arrived, :func:`unclaimed_status` still has it.  ``None``: no traced task is left.
    """
    buf = _wait_buf
    buf[4] = 0
    while _lib.kmmio_waitid(_WAIT_INFO, _WAIT_FLAGS) == -1:
        err = _ffi.errno
        if err == errno.ECHILD:
            return None
        if err != errno.EINTR:
            raise TraceeError("waitid", err, os.getpid())
    return claim_status()


def claim_status() -> tuple[int, int] | None:
    """The status a ``waitid`` just left in the buffer, as ``waitpid`` gives it (taken)."""
    buf = _wait_buf
    if buf[2] == _CLD_TRAPPED:  # a ptrace stop, nearly every time: as unclaimed_status() says it
        pid, buf[4] = buf[4], 0
        return pid, ((buf[6] & 0xFFFF) << 8) | 0x7F
    return unclaimed_status()


def unclaimed_status() -> tuple[int, int] | None:
    """The status :func:`wait_next` read and nobody took yet (then it is taken)."""
    pid = _wait_buf[4]
    if pid == 0:
        return None
    _wait_buf[4] = 0
    code, status = _wait_buf[2], _wait_buf[6]
    if code == _CLD_EXITED:
        return pid, (status & 0xFF) << 8
    if code == _CLD_KILLED:
        return pid, status & 0x7F
    if code == _CLD_DUMPED:
        return pid, (status & 0x7F) | 0x80
    return pid, ((status & 0xFFFF) << 8) | 0x7F  # stopped or trapped: what waitpid would say


def proc_status(pid: int) -> dict[str, str]:
    """The fields of ``/proc/PID/status`` (empty when there is no such task)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return {}


def thread_ids(pid: int) -> set[int]:
    """The threads of process ``pid`` now (``/proc/PID/task``); FileNotFoundError if gone."""
    return {int(t) for t in os.listdir(f"/proc/{pid}/task")}


def signal_mask(tid: int, field: str) -> int:
    """A signal mask of ``/proc/TID/status``: ``SigPnd`` (pending for the thread),
    ``SigBlk`` (blocked), ``SigIgn`` (ignored) or ``SigCgt`` (caught by a handler)."""
    try:
        return int(proc_status(tid).get(field, "0"), 16)
    except ValueError:
        return 0


def mmap(length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    """``mmap`` in the tracer, at an address of the kernel's choosing."""
    addr: int = _lib.kmmio_mmap(length, prot, flags, fd, offset)
    if addr == _MAP_FAILED:
        raise TraceeError("mmap", _ffi.errno or errno.ENOMEM, os.getpid())
    return addr


def munmap(addr: int, length: int) -> None:
    _lib.kmmio_munmap(addr, length)


_MAP_FAILED = (1 << 64) - 1


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret: int = _lib.kmmio_prctl(option, arg2, arg3, arg4, arg5)
    if ret == -1:
        err = _ffi.errno
        raise TraceeError(f"prctl({option})", err, os.getpid())
    return ret


def yama_scope() -> int:
    """``kernel.yama.ptrace_scope`` (0 where Yama is absent)."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def check_ptrace_permitted() -> None:
    """Refuse early, with the reason, when this process may not trace at all."""
    if yama_scope() >= 3:
        raise UsageError("ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3)")


_SYS_RT_SIGQUEUEINFO = 129
_SI_QUEUE = -1


def sigqueue(pid: int, sig: int, value: int) -> None:
    """``rt_sigqueueinfo``: signal ``sig`` to process ``pid`` with ``si_code`` SI_QUEUE
    and ``value`` (the agent's nudge to let go of its pages)."""
    info = ctypes.create_string_buffer(128)
    struct.pack_into("<iii", info, 0, sig, 0, _SI_QUEUE)
    struct.pack_into("<iIQ", info, 16, os.getpid(), os.getuid(), value)
    if _libc.syscall(_SYS_RT_SIGQUEUEINFO, pid, sig, info) != 0:
        err = ctypes.get_errno()
        raise TraceeError("rt_sigqueueinfo", err, pid)
