"""Before tracing: is the program there to run, may this process be joined, and why not."""

from __future__ import annotations

import errno
import os
import shutil

from kmmio.backend import _ptrace as pt
from kmmio.errors import TraceeError, UsageError


def check_attachable(pid: int) -> int:
    """The thread group of ``pid``, or a :class:`UsageError` saying why it cannot be joined."""
    status = pt.proc_status(pid)
    if not status:
        raise UsageError(f"no process {pid}")
    if status.get("State", "").startswith(("Z", "X")):
        raise UsageError(f"process {pid} has exited")
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        raise UsageError(f"process {pid} is already traced by process {tracer}")
    if int(status["Tgid"]) == os.getpid():
        raise UsageError("kmmio cannot trace itself")
    pt.check_ptrace_permitted()
    return int(status["Tgid"])


def why_not_permitted(pid: int, exc: TraceeError) -> str:
    if exc.errno != errno.EPERM:
        return f"cannot attach to process {pid}: {exc}"
    scope = pt.yama_scope()
    if os.geteuid() != 0 and scope >= 1:
        return f"cannot attach to process {pid}: Yama ptrace_scope is {scope} (try as root)"
    if os.geteuid() != 0:
        return f"cannot attach to process {pid}: not privileged (it is not yours, or it gained privileges)"
    return f"cannot attach to process {pid}: the kernel refused (EPERM)"


def resolve_program(program: str) -> str:
    """The executable ``execvp`` would run, or a :class:`UsageError` that says why not."""
    if "/" in program:
        if not os.path.exists(program):
            raise UsageError(f"{program}: no such file")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise UsageError(f"{program}: not an executable file")
        return program
    found = shutil.which(program)
    if found is None:
        raise UsageError(f"{program}: command not found")
    return found
