"""The program's own SIGSEGV action, kept safe from the tracer's faults.

A page fault's SIGSEGV is forced on the thread (the kernel's ``force_sig_fault``): when the
thread blocks SIGSEGV (it is inside its own SIGSEGV handler, say, or a handler whose mask
holds SIGSEGV) or ignores it, the kernel first resets the action to ``SIG_DFL`` and
unblocks the signal.  kmmio swallows the SIGSEGV of a traced access, but the reset would
stay: the program's next fault of its own would kill it instead of reaching its handler.

So kmmio keeps a copy of the program's SIGSEGV action: from its ``rt_sigaction`` calls
(the seccomp filter stops those for SIGSEGV; an attached program stops on every syscall),
and read at attach time.  After a traced access, if the copy is not the default and the
kernel has reset the action, the action is put back and SIGSEGV blocked again in the
thread, with syscalls run inside the program.
"""

from __future__ import annotations

import signal
import struct

from kmmio.backend import _ptrace as pt
from kmmio.errors import TraceeError
from kmmio.ptrace.process import Process, Thread

#: ``struct kernel_sigaction`` on x86-64: handler, flags, restorer, mask.
_ACTION = struct.Struct("<QQQQ")
SIG_DFL, SIG_IGN = 0, 1
SA_RESETHAND = 0x80000000
_BIT = 1 << (signal.SIGSEGV - 1)
#: Below the red zone of the thread's stack: scratch room for the injected calls' structs.
_SCRATCH = 128 + 64


def _kept(action: bytes) -> bytes | None:
    """The action worth keeping: ``None`` for the default (nothing to put back)."""
    return None if _ACTION.unpack(action)[0] == SIG_DFL else action


def sigaction_done(thread: Thread, args: tuple[int, ...], ret: int) -> None:
    """The program's ``rt_sigaction(SIGSEGV, act, ...)`` returned ``ret``: note the new action."""
    if ret != 0 or args[0] != signal.SIGSEGV or not args[1]:
        return
    try:
        thread.proc.segv_action = _kept(thread.proc.read(args[1], _ACTION.size))
    except TraceeError:
        pass  # the kernel read it; if we cannot, the copy stays as it was


def read_action(proc: Process, thread: Thread) -> None:
    """At attach: take the program's current SIGSEGV action (thread stopped)."""
    if not pt.signal_mask(thread.tid, "SigCgt") & _BIT and not pt.signal_mask(thread.tid, "SigIgn") & _BIT:
        proc.segv_action = None
        return
    regs = pt.get_regs(thread.tid)
    at = (regs.rsp - _SCRATCH - _ACTION.size) & ~15
    ret = proc.inject_syscall(thread, pt.SYS_RT_SIGACTION, (signal.SIGSEGV, 0, at, 8))
    if ret == 0:
        proc.segv_action = _kept(proc.read(at, _ACTION.size))


def delivered(proc: Process) -> None:
    """The program got a SIGSEGV of its own: ``SA_RESETHAND`` resets its action."""
    if proc.segv_action is not None and _ACTION.unpack(proc.segv_action)[1] & SA_RESETHAND:
        proc.segv_action = None


def exec_done(proc: Process) -> None:
    """execve resets handled signals to the default; an ignored one stays ignored."""
    if proc.segv_action is not None and _ACTION.unpack(proc.segv_action)[0] != SIG_IGN:
        proc.segv_action = None


def repair(thread: Thread) -> None:
    """After a traced access of ``thread`` (stopped, registers final): undo a forced reset."""
    proc = thread.proc
    action = proc.segv_action
    if action is None:
        return
    handler = _ACTION.unpack(action)[0]
    field = "SigIgn" if handler == SIG_IGN else "SigCgt"
    if pt.signal_mask(thread.tid, field) & _BIT:
        return  # not reset: the thread did not block SIGSEGV
    regs = pt.get_regs(thread.tid)
    at = (regs.rsp - _SCRATCH - 16 - _ACTION.size) & ~15
    assert proc.mem is not None
    proc.mem.write(at, action + struct.pack("<Q", _BIT))
    proc.inject_syscall(thread, pt.SYS_RT_SIGACTION, (signal.SIGSEGV, at, 0, 8), regs)
    if handler != SIG_IGN:  # a handled SIGSEGV is reset only when blocked: block it again
        proc.inject_syscall(thread, pt.SYS_RT_SIGPROCMASK, (signal.SIG_BLOCK, at + _ACTION.size, 0, 8), regs)
