"""The demo's user-space driver: the kind of program kmmio traces.

It maps the device's register file as a user-space driver maps ``/dev/uioN`` or a PCI
``resourceN`` file, and talks to it with 32-bit loads and stores through ctypes: check
the ID, enable, mask interrupts, fill the data window, start a checksum, poll STATUS until
DONE, read RESULT, disable.  Run as ``python driver.py FILE``.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import time

BLOCK = 4096


class Regs:
    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm

    def read32(self, off: int) -> int:
        return int(ctypes.c_uint32.from_buffer(self._mm, off).value)

    def write32(self, off: int, value: int) -> None:
        ctypes.c_uint32.from_buffer(self._mm, off).value = value


def main(path: str) -> int:
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), BLOCK)
    regs = Regs(mm)
    ident = regs.read32(0x00)
    if ident != 0x4B4D4D49:
        print(f"driver: unexpected ID {ident:#x}")
        return 1
    regs.write32(0x04, 1)  # CTRL: enable
    regs.write32(0x0C, 0)  # IRQ_MASK: polled mode
    payload = b"kmmio traces every access"
    for i in range(0, len(payload), 4):
        regs.write32(0x100 + i, int.from_bytes(payload[i : i + 4].ljust(4, b"\0"), "little"))
    regs.write32(0x10, 0x100)  # SRC
    regs.write32(0x14, len(payload))  # LEN
    regs.write32(0x18, 0xC5)  # CMD: checksum
    polls = 0
    while not regs.read32(0x08) & 4:  # STATUS.DONE
        polls += 1
        time.sleep(0.005)
    result = regs.read32(0x1C)
    regs.write32(0x04, 0)  # CTRL: disable
    expected = sum(payload.ljust((len(payload) + 3) // 4 * 4, b"\0")[: len(payload)])
    print(f"driver: checksum {result:#x} (expected {expected:#x}) after {polls} polls")
    del regs
    mm.close()
    return 0 if result == expected else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
