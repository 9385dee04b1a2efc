"""pack_into.py: one ``struct.pack_into`` into a mapped file, the way Python code writes a
register.  Usage: python pack_into.py FILE.

``pack_into("<I", m, 0x10, v)`` zeroes its 4 bytes first (a ``memset``, which glibc does with
a masked 64-byte store on AVX-512 machines), then writes them.  Prints the 4 bytes, read
back with ``pread``, not through the mapping.
"""

import mmap
import os
import struct
import sys

fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(fd, 4096)
m = mmap.mmap(fd, 4096)
struct.pack_into("<I", m, 0x10, 0x11223344)
print(os.pread(fd, 4, 0x10).hex())
