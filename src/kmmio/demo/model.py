"""The demo's checksum engine as a ``kmmio sim`` model (``kmmio demo --sim``).

The same device as :mod:`kmmio.demo.device` (the process that serves the shared register
file in the plain demo), answering each access itself: ``ID``; ``CTRL``'s enable bit;
``STATUS`` ready, busy for ``busy_reads`` reads after ``CMD_CHECKSUM``, then done;
``RESULT`` the sum of ``LEN`` bytes of the data window from ``SRC``.
"""

from __future__ import annotations

from kmmio.demo.registers import (
    BLOCK_SIZE,
    CMD_CHECKSUM,
    DATA_OFFSET,
    ID_VALUE,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_READY,
)


class ChecksumEngine:
    size = BLOCK_SIZE

    def __init__(self, busy_reads: int = 2) -> None:
        self.regs = dict.fromkeys(REGISTERS, 0)
        self.regs[0x00] = ID_VALUE
        self.regs[0x08] = STATUS_READY
        self.data = bytearray(BLOCK_SIZE - DATA_OFFSET)
        self.busy_reads = busy_reads
        self.busy_left = 0

    def read(self, offset: int, width: int) -> int:
        if offset >= DATA_OFFSET:
            return int.from_bytes(self.data[offset - DATA_OFFSET : offset - DATA_OFFSET + width], "little")
        if offset not in self.regs or width != 4:
            raise ValueError(f"no {width}-byte register at {offset:#x}")
        if offset == 0x08 and self.busy_left:
            self.busy_left -= 1
            if not self.busy_left:
                src, length = self.regs[0x10], self.regs[0x14]
                window = self.data[src - DATA_OFFSET : src - DATA_OFFSET + length]
                self.regs[0x1C] = sum(window) & 0xFFFFFFFF
                self.regs[0x08] = STATUS_READY | STATUS_DONE
        return self.regs[offset]

    def write(self, offset: int, width: int, value: int) -> None:
        if offset >= DATA_OFFSET:
            self.data[offset - DATA_OFFSET : offset - DATA_OFFSET + width] = value.to_bytes(width, "little")
            return
        if offset not in self.regs or width != 4:
            raise ValueError(f"no {width}-byte register at {offset:#x}")
        if offset in (0x00, 0x08, 0x1C):
            return  # read-only: ignored, as the hardware would
        self.regs[offset] = value
        if offset == 0x18 and value == CMD_CHECKSUM:
            self.regs[0x08] = STATUS_READY | STATUS_BUSY
            self.busy_left = self.busy_reads
