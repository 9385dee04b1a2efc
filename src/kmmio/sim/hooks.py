"""Hooks on an ordinary trace: change what a real device's reads return, drop writes.

``Tracer(..., on_read=f, on_write=g)`` (``kmmio trace --hook FILE.py``, whose module
defines ``on_read`` and/or ``on_write``) calls ``f(access)`` after each traced read and
``g(access)`` before each traced write, with a :class:`HookAccess`.  ``f`` returns the
value the program gets instead (or ``None`` to leave it); ``g`` returns ``False`` to drop
the write (the device never sees it), anything else to let it through.  Fault injection on
real hardware: "make STATUS read 0xffffffff on the third read".

The accesses go through :class:`HookedView`, around the usual view of the real pages, so
every access kmmio performs itself is hooked: the ``mov`` family, ``push``/``pop``,
string and vector moves, ALU operations without ``lock``.  An instruction kmmio single-
steps (atomics, bit tests...) reaches the device without the hooks: it is said once per
instruction on standard error.  The log shows what the program saw: a read's replaced
value, a write as the program made it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmmio.errors import ServedAccessError, UsageError
from kmmio.serve import Serving

if TYPE_CHECKING:
    from kmmio.mmiotrace import Mapping


@dataclass(frozen=True, slots=True)
class HookAccess:
    """One traced access, as a hook sees it: the mapping's ``path``, the ``offset`` in the
    mapped object, the ``phys`` address the log gives it, ``width``, ``value`` (read or to
    be written), the instruction's ``pc`` and the thread ``tid``."""

    kind: str
    path: str
    offset: int
    phys: int
    width: int
    value: int
    pc: int
    tid: int


class HookFailure(ServedAccessError):
    """A hook raised or returned nonsense: the trace stops (one line)."""


OnRead = Callable[[HookAccess], int | None]
OnWrite = Callable[[HookAccess], bool | None]


class HookedView:
    """A view that performs through ``inner`` and asks the hooks (see the module)."""

    def __init__(self, inner: Any, mapping: Mapping, on_read: OnRead | None, on_write: OnWrite | None,
                 warned: set[int]) -> None:  # fmt: skip
        self.inner = inner
        self.start, self.end = inner.start, inner.end
        self.writable = inner.writable
        self._mapping = mapping
        self._bus = mapping.proc.bus
        self._on_read = on_read
        self._on_write = on_write
        self._warned = warned

    def _access(self, kind: str, addr: int, width: int, value: int) -> HookAccess:
        m = self._mapping
        tid, pc = self._bus.current
        return HookAccess(kind, m.path, m.offset + (addr - m.virt), m.phys_of(addr), width, value, pc, tid)

    def read(self, addr: int, width: int) -> int:
        value: int = self.inner.read(addr, width)
        if self._on_read is None:
            return value
        a = self._access("R", addr, width, value)
        try:
            got = self._on_read(a)
        except Exception as exc:
            raise HookFailure(
                f"on_read failed on R {width} at {a.phys:#x}: {type(exc).__name__}: {exc}"
            ) from exc
        if got is None:
            return value
        if not isinstance(got, int) or isinstance(got, bool) or not 0 <= got < 1 << (8 * width):
            raise HookFailure(f"on_read returned {got!r} for a {width}-byte read at {a.phys:#x}")
        return got

    def write(self, addr: int, width: int, value: int) -> None:
        if self._on_write is not None:
            a = self._access("W", addr, width, value)
            try:
                keep = self._on_write(a)
            except Exception as exc:
                raise HookFailure(
                    f"on_write failed on W {width} at {a.phys:#x}: {type(exc).__name__}: {exc}"
                ) from exc
            if keep is False:
                return
        self.inner.write(addr, width, value)

    def close(self) -> None:
        self.inner.close()

    def stepping(self, text: str, pc: int) -> None:
        if pc not in self._warned:
            self._warned.add(pc)
            print(
                f"kmmio: {text!r} at pc {pc:#x} is single-stepped: the hooks do not see it", file=sys.stderr
            )


class HookServing(Serving):
    """The :class:`~kmmio.serve.Serving` of hooks: real pages, hooked views."""

    def __init__(self, on_read: OnRead | None, on_write: OnWrite | None) -> None:
        self.on_read = on_read
        self.on_write = on_write
        self._warned: set[int] = set()

    def view(self, mapping: Mapping, make: Callable[[Mapping], Any]) -> Any:
        return HookedView(make(mapping), mapping, self.on_read, self.on_write, self._warned)


def load_hooks(path: str) -> tuple[OnRead | None, OnWrite | None]:
    """``on_read`` and ``on_write`` of the Python file ``path`` (``--hook``)."""
    from kmmio.sim.load import import_file

    module = import_file(path, f"--hook {path}")
    on_read = getattr(module, "on_read", None)
    on_write = getattr(module, "on_write", None)
    if on_read is None and on_write is None:
        raise UsageError(f"--hook {path}: defines neither on_read nor on_write")
    for name, f in (("on_read", on_read), ("on_write", on_write)):
        if f is not None and not callable(f):
            raise UsageError(f"--hook {path}: {name} is not a function")
    return on_read, on_write
