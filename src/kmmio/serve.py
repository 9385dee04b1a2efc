"""What a trace can be told to do beyond logging: serve some mappings' accesses itself.

:class:`Serving` is the :class:`~kmmio.ptrace.tracer.Tracer`'s one extension point for that: a
device model answering a simulated device (:mod:`kmmio.sim`), a recorded trace replayed,
hooks that change what a real device's reads return.  Each method is called at one point
of the trace; the defaults change nothing.  A tracer given a ``Serving`` performs every
traced access through :meth:`Serving.view`'s views (the compiled fast loop, which reads
memory itself, stays off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kmmio.devices.model import Place
    from kmmio.mmiotrace import Mapping
    from kmmio.ptrace.process import Thread


class Serving:
    """The defaults: serve nothing (see the module docstring)."""

    #: Syscall numbers a spawned program's seccomp filter must stop, besides the tracer's.
    syscalls: tuple[int, ...] = ()
    #: Seconds between calls of :meth:`tick`, or ``None``.
    tick_interval: float | None = None

    def prepare_child(self) -> None:
        """In the spawned program's process, before its ``execve``: may raise, with one line."""

    def place(self, path: str, offset: int) -> Place | None:
        """Where a new traced mapping of ``path`` at object ``offset`` is, or ``None`` to
        find out as usual (:func:`kmmio.devices.place`)."""
        return None

    def view(self, mapping: Mapping, make: Callable[[Mapping], Any]) -> Any:
        """The view the mapping's accesses are performed through; ``make(mapping)`` makes
        the usual one (of the real pages).  A view whose ``stepping(text, pc)`` exists is
        told of an instruction the tracer would single-step (and may refuse it, raising)."""
        return make(mapping)

    def kernel_reach(self, syscall: str, mappings: list[Mapping]) -> None:
        """A syscall is about to hand traced memory of ``mappings`` to the kernel (may
        refuse, raising)."""

    def syscall_entry(self, thread: Thread, number: int, args: tuple[int, ...]) -> bool:
        """A syscall stop at entry; True if this took it over (changed its arguments: the
        caller resumes the thread; set ``thread.served`` to be told of its exit)."""
        return False

    def syscall_exit(self, thread: Thread) -> bool:
        """A syscall's exit stop; True if it was one this took over (the caller resumes;
        clear ``thread.served``)."""
        return False

    def forget(self, pid: int) -> None:
        """Program ``pid`` exec'd or ended: what was kept of it is gone."""

    def tick(self) -> None:
        """Called every :attr:`tick_interval` seconds while the trace runs."""
