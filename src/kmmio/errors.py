"""The exception tree of kmmio.

``KmmioError`` is the root.  Caller mistakes (``ProbeError``, ``UsageError``) are kept apart
from trouble that comes from outside: a malformed log (``TraceFormatError``), the operating
system refusing a request (``TraceeError``, which carries errno and pid).
"""

from __future__ import annotations

import errno as _errno
import os


class KmmioError(Exception):
    """Root of every error kmmio raises on purpose."""


class UsageError(KmmioError):
    """The command line or an API call asked for something that cannot be done."""


class ProbeError(KmmioError):
    """A probe was refused: it overlaps another, is empty, or is not registered."""


class EngineInvariantError(KmmioError):
    """The engine found its own state inconsistent (the kernel's ``BUG_ON``)."""


class LogWriteError(KmmioError):
    """The log could not be written (a full disk, a closed pipe's reader gone...)."""


class TraceFormatError(KmmioError):
    """A line of an mmiotrace log could not be parsed; ``line_no`` counts from 1."""

    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"line {line_no}: {message}")
        self.line_no = line_no
        self.message = message


class TraceeError(KmmioError):
    """The kernel refused an operation on a traced process."""

    def __init__(self, what: str, err: int, pid: int | None = None) -> None:
        name = _errno.errorcode.get(err, str(err))
        where = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"{what}{where}: {name}: {os.strerror(err)}")
        self.what = what
        self.errno = err
        self.pid = pid


class TraceeGone(TraceeError):
    """The thread or process went away under us (``ESRCH``)."""


class ServedAccessError(KmmioError):
    """Whatever serves a traced mapping's accesses in place of its memory (a device model,
    a replayed trace, a user's hook) failed on one: the trace stops.  ``pc`` is the
    instruction's address, filled in by the fault path."""

    pc: int | None = None
