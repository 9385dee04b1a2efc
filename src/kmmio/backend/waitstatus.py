"""Raw ``waitpid`` statuses to typed stop events (pure: ints in, values out)."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass


class PtraceEvent(enum.IntEnum):
    """``PTRACE_EVENT_*``: the high byte of a stop status."""

    NONE = 0
    FORK = 1
    VFORK = 2
    CLONE = 3
    EXEC = 4
    VFORK_DONE = 5
    EXIT = 6
    SECCOMP = 7
    STOP = 128


@dataclass(frozen=True, slots=True)
class Exited:
    tid: int
    code: int


@dataclass(frozen=True, slots=True)
class Killed:
    tid: int
    signal: int
    core: bool = False


@dataclass(frozen=True, slots=True)
class Stopped:
    """A ptrace stop.  ``syscall`` marks a syscall stop (``TRACESYSGOOD``)."""

    tid: int
    signal: int
    event: PtraceEvent = PtraceEvent.NONE
    syscall: bool = False


WaitEvent = Exited | Killed | Stopped


#: The status of a SIGSEGV signal stop: every traced access's, which the tracer's loop
#: knows without decoding.
SEGV_STOP = (signal.SIGSEGV << 8) | 0x7F


def decode_status(tid: int, status: int) -> WaitEvent:
    """Decode a wait status the way ``WIFEXITED``/``WIFSIGNALED``/``WIFSTOPPED`` do."""
    low = status & 0x7F
    if low == 0:
        return Exited(tid, (status >> 8) & 0xFF)
    if low != 0x7F:
        return Killed(tid, low, bool(status & 0x80))
    sig = (status >> 8) & 0xFF
    event = (status >> 16) & 0xFF
    if not event and sig != (signal.SIGTRAP | 0x80):
        return Stopped(tid, sig)  # a plain signal stop: the common case, kept cheap
    if sig == (signal.SIGTRAP | 0x80):
        return Stopped(tid, signal.SIGTRAP, PtraceEvent.NONE, syscall=True)
    try:
        ev = PtraceEvent(event)
    except ValueError:
        ev = PtraceEvent.NONE
    return Stopped(tid, sig, ev)


def exit_code(event: Exited | Killed) -> int:
    """The status a shell would report: the exit code, or 128 + N for signal N."""
    if isinstance(event, Exited):
        return event.code
    return 128 + event.signal
