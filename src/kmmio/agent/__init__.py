"""The in-process backend: an agent library inside the traced program.

The program is started with ``LD_PRELOAD`` naming the agent (``_agent.c``), which takes each
fault on a traced page in the faulting thread's own SIGSEGV handler and performs the
access there, through a second mapping of the same pages: no ptrace stop, no context switch
per access.  Python still decides (:mod:`kmmio.agent.tracer`, which decodes each new
instruction once with iced-x86, :mod:`kmmio.agent.plan`); the agent only executes.

:func:`why_not` says why a program cannot have the agent (a static or set-user-ID
program: the dynamic loader would not load it), for ``--backend auto`` to take ptrace.
"""

from __future__ import annotations

import importlib.machinery
import os
import stat
import struct
from pathlib import Path

_HERE = Path(__file__).parent


def library_path() -> Path:
    """The agent's shared library, built when kmmio was installed."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = _HERE / f"libkmmio_agent{suffix}"
        if p.exists():
            return p
    raise FileNotFoundError("the kmmio agent library is not built (reinstall kmmio)")


_PT_INTERP = 3


def _has_interpreter(data: bytes) -> bool | None:
    """Whether an ELF image names a dynamic loader (``PT_INTERP``); ``None`` if not ELF."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return None
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 4 > len(data):
            return None
        if struct.unpack_from("<I", data, at)[0] == _PT_INTERP:
            return True
    return False


def why_not(path: str, depth: int = 0) -> str | None:
    """Why the agent cannot be loaded into the program at ``path`` (``None``: it can)."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return "set-user-ID program"
    if head[:2] == b"#!" and depth < 4:
        words = head[2:].split(b"\n", 1)[0].split()
        if not words:
            return "script without interpreter"
        return why_not(words[0].decode(errors="replace"), depth + 1)
    dynamic = _has_interpreter(head)
    if dynamic is None:
        return "not a 64-bit ELF program"
    if not dynamic:
        return "static program"
    return None
