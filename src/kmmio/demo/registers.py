"""The register map of the demo's simulated device (a tiny DMA-less "checksum engine")."""

from __future__ import annotations

#: offset → name, for the summary.
REGISTERS = {
    0x00: "ID",
    0x04: "CTRL",
    0x08: "STATUS",
    0x0C: "IRQ_MASK",
    0x10: "SRC",
    0x14: "LEN",
    0x18: "CMD",
    0x1C: "RESULT",
}
ID_VALUE = 0x4B4D4D49  # "KMMI"
CTRL_ENABLE = 1
STATUS_READY = 1
STATUS_BUSY = 2
STATUS_DONE = 4
CMD_CHECKSUM = 0xC5
BLOCK_SIZE = 4096
DATA_OFFSET = 0x100
