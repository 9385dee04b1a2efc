"""The CRC-32 engine as a ``kmmio sim`` model (see :mod:`kmmio.demo.crc` for its registers).

Use: ``kmmio sim --device /dev/uio0=kmmio.demo.crc.model:CrcEngine -- PROGRAM``.  It is
busy for ``busy_reads`` reads of ``STATUS`` after ``START`` (so a polling driver's runs are
repeatable), or, started with ``IRQ_EN``, for ``busy_us`` microseconds (kmmio calls
``tick`` as time passes), and then raises the interrupt (``self.irq()``, which kmmio gives
every model); reading ``IRQ_STATUS`` clears it.  Accesses it does not expect raise: a wrong width, a write
to a read-only register, a read of ``DATA``; the run stops there, naming the access.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from kmmio.demo.crc import (
    CTRL,
    CTRL_IRQ_EN,
    CTRL_RESET,
    CTRL_START,
    DATA,
    ID,
    ID_VALUE,
    IRQ_DONE,
    IRQ_STATUS,
    RESULT,
    SIZE,
    STATUS,
    STATUS_BUSY,
    STATUS_DONE,
)

NAMES = {ID: "ID", CTRL: "CTRL", STATUS: "STATUS", DATA: "DATA", RESULT: "RESULT", IRQ_STATUS: "IRQ_STATUS"}


class CrcEngine:
    """The model.  ``calls`` keeps every access as ``(kind, name, value)``."""

    size = SIZE
    irq: Callable[[], None]

    def __init__(self, busy_reads: int = 3, busy_us: int = 2000) -> None:
        self.busy_reads = busy_reads
        self.busy_us = busy_us
        self.now = 0
        self.deadline: int | None = None
        self.data = bytearray()
        self.ctrl = 0
        self.result = 0
        self.busy_left = 0
        self.done = False
        self.irq_status = 0
        self.calls: list[tuple[str, str, int]] = []

    def _register(self, offset: int, width: int) -> str:
        name = NAMES.get(offset)
        if name is None or width != 4:
            raise ValueError(f"no {width}-byte register at {offset:#x}")
        return name

    def read(self, offset: int, width: int) -> int:
        name = self._register(offset, width)
        if offset == ID:
            value = ID_VALUE
        elif offset == CTRL:
            value = self.ctrl & CTRL_IRQ_EN
        elif offset == STATUS:
            value = self._status()
        elif offset == RESULT:
            value = self.result
        elif offset == IRQ_STATUS:
            value, self.irq_status = self.irq_status, 0  # clear on read
        else:
            raise ValueError("DATA is write-only")
        self.calls.append(("R", name, value))
        return value

    def tick(self, now_us: int) -> None:
        self.now = now_us
        if self.deadline is not None and now_us >= self.deadline:
            self.deadline = None
            self._finish()

    def _status(self) -> int:
        if self.deadline is not None:
            return STATUS_BUSY
        if self.busy_left:
            self.busy_left -= 1
            if not self.busy_left:
                self._finish()
            return STATUS_BUSY
        return STATUS_DONE if self.done else 0

    def _finish(self) -> None:
        self.result = zlib.crc32(bytes(self.data))
        self.done = True
        if self.ctrl & CTRL_IRQ_EN:
            self.irq_status |= IRQ_DONE
            self.irq()

    def write(self, offset: int, width: int, value: int) -> None:
        name = self._register(offset, width)
        self.calls.append(("W", name, value))
        if offset == CTRL:
            self.ctrl = value
            if value & CTRL_RESET:
                self.data.clear()
                self.done = False
            if value & CTRL_START:
                self.done = False
                if value & CTRL_IRQ_EN:
                    self.deadline = self.now + self.busy_us
                else:
                    self.busy_left = self.busy_reads
                    if not self.busy_left:
                        self._finish()
        elif offset == DATA:
            self.data += value.to_bytes(4, "little")
        else:
            raise ValueError(f"{name} is read-only")
