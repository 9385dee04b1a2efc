"""mmio_driver.py: a Python program doing register I/O the way python-periphery does.

Usage: python mmio_driver.py FILE.  Maps FILE with ``mmap``, writes and reads 8/16/32/64-bit
registers with ctypes, copies a block with a slice assignment (memcpy), and prints its own
account ("W width offset value", "R width offset value") of the single-register accesses.
"""

import ctypes
import mmap
import sys

TYPES = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}

with open(sys.argv[1], "a+b") as f:
    f.truncate(4096)
    mm = mmap.mmap(f.fileno(), 4096)
for width, off, value in [
    (1, 0x0, 0x5A),
    (2, 0x2, 0xBEEF),
    (4, 0x4, 0xDEADBEEF),
    (8, 0x8, 0x0123456789ABCDEF),
]:
    TYPES[width].from_buffer(mm, off).value = value
    print(f"W {width} {off:#x} {value:#x}")
    got = TYPES[width].from_buffer(mm, off).value
    print(f"R {width} {off:#x} {got:#x}")
mm[0x100:0x140] = bytes(range(64))
print("block", mm[0x100:0x140].hex())
mm.close()
