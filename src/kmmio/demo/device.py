"""A simulated device: answers the driver through the shared register file.

Run as ``python -m kmmio.demo.device FILE`` (not traced).  It reports itself ready, then
waits for ``CMD``; on ``CMD_CHECKSUM`` it is busy for a moment, sums ``LEN`` bytes of the
data window at ``SRC``, puts the sum in ``RESULT`` and sets ``DONE``.  It stops when the
driver clears ``CTRL``'s enable bit or after ten seconds.
"""

from __future__ import annotations

import mmap
import struct
import sys
import time

from kmmio.demo.registers import (
    BLOCK_SIZE,
    CMD_CHECKSUM,
    CTRL_ENABLE,
    ID_VALUE,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_READY,
)


def _get(mm: mmap.mmap, off: int) -> int:
    return int(struct.unpack_from("<I", mm, off)[0])


def _put(mm: mmap.mmap, off: int, value: int) -> None:
    struct.pack_into("<I", mm, off, value)


def serve(path: str, timeout: float = 10.0) -> None:
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), BLOCK_SIZE)
    _put(mm, 0x00, ID_VALUE)
    _put(mm, 0x08, STATUS_READY)
    deadline = time.monotonic() + timeout
    enabled_once = False
    while time.monotonic() < deadline:
        ctrl = _get(mm, 0x04)
        if ctrl & CTRL_ENABLE:
            enabled_once = True
        elif enabled_once:
            break
        if _get(mm, 0x18) == CMD_CHECKSUM:
            _put(mm, 0x18, 0)
            _put(mm, 0x08, STATUS_READY | STATUS_BUSY)
            time.sleep(0.02)
            src, length = _get(mm, 0x10), _get(mm, 0x14)
            total = sum(mm[src : src + length]) & 0xFFFFFFFF
            _put(mm, 0x1C, total)
            _put(mm, 0x08, STATUS_READY | STATUS_DONE)
        time.sleep(0.001)
    mm.close()


if __name__ == "__main__":
    serve(sys.argv[1])
