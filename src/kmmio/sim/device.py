"""A device model behind a traced mapping: its view, its place in the log, its failures.

A model is any object with ``size`` (bytes), ``read(offset, width) -> int`` and
``write(offset, width, value) -> None``, and optionally ``tick(now_us)`` and ``phys`` (the
physical address its offset 0 stands for: ``/dev/mem`` models use it; 0 by default).
kmmio gives it ``irq()`` (see :mod:`kmmio.sim.uio`).

:class:`ModelView` is what the tracer performs a simulated mapping's accesses through: it
has the shape of the tracer's views of real pages (:mod:`kmmio.backend.shadow`), so the
fault path and the emulator serve a model exactly as they serve memory, one call of the
exact width per access.  An instruction the tracer would have to single-step (atomics,
bit tests...) cannot be served by a model: :meth:`ModelView.stepping` refuses it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kmmio.devices.model import Place
from kmmio.errors import ServedAccessError

_RESOURCE = re.compile(r".*/(?P<bdf>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/resource(?P<bar>[0-5])(_wc)?")
_UIO = re.compile(r"/dev/(?P<dev>uio\d+)")


class ModelFailure(ServedAccessError):
    """The model raised (or answered nonsense) on an access: the run stops.

    ``str()`` is one line naming the device, the access and the model's message; ``cause``
    is the model's exception (its traceback for ``--verbose``); ``pc`` the instruction's
    address, filled in by the fault path."""

    def __init__(self, device: str, kind: str, offset: int, width: int, message: str,
                 cause: BaseException | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.device = device
        self.kind = kind
        self.offset = offset
        self.width = width
        self.message = message
        self.cause = cause

    def __str__(self) -> str:
        if self.kind not in ("R", "W"):  # a call of the model's own: tick(), irq_control()
            return f"the model of {self.device} failed in {self.kind}(): {self.message}"
        where = f" at pc {self.pc:#x}" if self.pc is not None else ""
        return (
            f"the model of {self.device} failed on {self.kind} {self.width} at offset "
            f"{self.offset:#x}{where}: {self.message}"
        )


class NotServable(ServedAccessError):
    """The program did something to a simulated device that a model cannot answer: an
    instruction kmmio could only single-step, or a syscall that hands the device's memory
    to the kernel.  One line; the run stops."""


@dataclass
class SimDevice:
    """One simulated device: the program's ``path``, its ``model``, the file standing for
    it (``backing``, sized to the model) and the interrupt count (UIO)."""

    path: str
    model: Any
    spec: str
    backing: str = ""
    irq_count: int = 0
    #: Interrupts enabled (UIO's irqcontrol: a write of 1 enables, 0 disables).
    irq_enabled: bool = True
    #: The device and inode of the backing file, which the program's fds are told by.
    dev: int = 0
    inode: int = 0
    #: The path the program's mappings of it have in /proc/PID/maps (``path`` with the
    #: symbolic links of its existing part resolved: a sysfs device link).
    seen: str = ""

    @property
    def size(self) -> int:
        return int(self.model.size)

    @property
    def phys(self) -> int:
        return int(getattr(self.model, "phys", 0) or 0)

    @property
    def base(self) -> int:
        """The file offset of the model's byte 0: its physical address for ``/dev/mem``
        (a program maps ``/dev/mem`` at physical addresses), else 0."""
        return self.phys if self.path == "/dev/mem" else 0

    def make_backing(self, directory: str, index: int) -> None:
        """The file that stands for the device: ``size`` bytes of zeros from :attr:`base`
        on (never read: every access goes to the model)."""
        self.backing = os.path.join(directory, f"device{index}")
        with open(self.backing, "wb") as f:
            f.truncate(self.base + self.size)  # sparse below base
        st = os.stat(self.backing)
        self.dev, self.inode = st.st_dev, st.st_ino

    def place(self, offset: int) -> Place:
        """Where the log says a mapping at ``offset`` of the device is: the model's ``phys``
        + the offset, and what the path is (a PCI BAR, a UIO map, ``/dev/mem``)."""
        if self.path == "/dev/mem":
            return Place(offset, "mem")
        m = _RESOURCE.fullmatch(self.path)
        if m is not None:
            return Place(self.phys + offset, "pci", m["bdf"], f"bar {m['bar']}")
        m = _UIO.fullmatch(self.path)
        if m is not None:
            return Place(self.phys + offset, "uio", m["dev"], "map 0", offset=offset)
        return Place(self.phys + offset, "file")


class ModelView:
    """The tracer's view of a simulated mapping ``[start, end)`` whose first byte is the
    model's byte ``offset`` (see the module docstring)."""

    steppable = False

    def __init__(
        self,
        device: SimDevice,
        start: int,
        end: int,
        offset: int,
        tick: Callable[[], None] | None = None,
        where: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.device = device
        self.start, self.end = start, end
        self.offset = offset
        self.writable = True
        #: Called before each access: a model's notion of time moves on at every poll.
        self.tick = tick
        #: The (thread, pc) of the access being served, for models that want them
        #: (``with_context = True``: ``read(offset, width, pc=, tid=)``, a replayed trace).
        self.where = where

    def _at(self, kind: str, addr: int, width: int) -> int:
        off = self.offset + (addr - self.start)
        if off < 0 or off + width > self.device.size:
            raise ModelFailure(
                self.device.path, kind, off, width, f"outside the model's {self.device.size:#x} bytes"
            )
        return off

    def read(self, addr: int, width: int) -> int:
        off = self._at("R", addr, width)
        try:
            if self.tick is not None:
                self.tick()
            model = self.device.model
            if self.where is not None and getattr(model, "with_context", False):
                tid, pc = self.where()
                value = model.read(off, width, pc=pc, tid=tid)
            else:
                value = model.read(off, width)
        except ServedAccessError:
            raise
        except Exception as exc:
            raise ModelFailure(self.device.path, "R", off, width, said(exc), exc) from exc
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * width):
            raise ModelFailure(
                self.device.path,
                "R",
                off,
                width,
                f"read() returned {value!r}, not a {width}-byte unsigned int",
            )
        return value

    def write(self, addr: int, width: int, value: int) -> None:
        off = self._at("W", addr, width)
        try:
            if self.tick is not None:
                self.tick()
            model = self.device.model
            if self.where is not None and getattr(model, "with_context", False):
                tid, pc = self.where()
                model.write(off, width, value, pc=pc, tid=tid)
            else:
                model.write(off, width, value)
        except ServedAccessError:
            raise
        except Exception as exc:
            raise ModelFailure(self.device.path, "W", off, width, said(exc), exc) from exc

    def close(self) -> None:
        """The mapping ended (the model stays: another mapping may come)."""

    def stepping(self, text: str, pc: int) -> None:
        """The fault path would single-step ``text`` at ``pc`` on this mapping: refused."""
        raise NotServable(
            f"{text!r} at pc {pc:#x} cannot be performed against the model of {self.device.path} "
            "(kmmio emulates loads, stores, push/pop, string and vector moves and ALU operations "
            "without lock; this instruction it could only single-step)"
        )


def said(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
