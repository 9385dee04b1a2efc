"""The CRC engine's Python driver: ``python -m kmmio.demo.crc.driver PATH [TEXT] [--irq]``.

Maps the device at PATH (``/dev/uio0`` inside ``kmmio sim``), checks ``ID``, resets,
writes TEXT as 32-bit words to ``DATA``, starts, polls ``STATUS`` until ``BUSY`` clears
(or, with ``--irq``, waits for the interrupt with a blocking 4-byte ``read`` of the device,
as a UIO driver does), reads ``RESULT`` and ``IRQ_STATUS``, and prints the CRC; exit 0 if
it is zlib's.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import zlib

from kmmio.demo.crc import (
    CTRL,
    CTRL_IRQ_EN,
    CTRL_RESET,
    CTRL_START,
    DATA,
    ID,
    ID_VALUE,
    IRQ_STATUS,
    RESULT,
    SIZE,
    STATUS,
    STATUS_BUSY,
)


def main(argv: list[str]) -> int:
    irq = "--irq" in argv
    args = [a for a in argv if a != "--irq"]
    path = args[0]
    text = (args[1] if len(args) > 1 else "kmmio sim answers every access").encode()
    text = text.ljust((len(text) + 3) // 4 * 4, b"\0")
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, SIZE)
    # A 32-bit view: one 4-byte load or store per item.  (Not ctypes: its setters read a
    # value before writing it, to keep the other bits of a bit field, and DATA is write-only.)
    regs = memoryview(mm).cast("I")
    if regs[ID // 4] != ID_VALUE:
        print(f"crc: not a CRC engine (ID {regs[ID // 4]:#x})")
        return 1
    regs[CTRL // 4] = CTRL_RESET
    for i in range(0, len(text), 4):
        regs[DATA // 4] = int.from_bytes(text[i : i + 4], "little")
    if irq:
        os.write(fd, struct.pack("<i", 1))  # enable the interrupt
        regs[CTRL // 4] = CTRL_START | CTRL_IRQ_EN
        (count,) = struct.unpack("<I", os.read(fd, 4))
        print(f"crc: interrupt {count}")
    else:
        regs[CTRL // 4] = CTRL_START
    polls = 1
    while regs[STATUS // 4] & STATUS_BUSY:
        polls += 1
    result = regs[RESULT // 4]
    pending = regs[IRQ_STATUS // 4]
    regs.release()
    mm.close()
    os.close(fd)
    want = zlib.crc32(text)
    verdict = "ok" if result == want else "WRONG"
    print(f"crc: {result:#010x} after {polls} polls, irq status {pending:#x} ({verdict})")
    return 0 if result == want else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
