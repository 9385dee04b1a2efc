"""Test program: map a file (a /dev/shm file the test made) and write then read its first
word in a loop for SECONDS seconds; print the number of loops.  Used under `kmmio trace` to
see the status line redrawn while a program keeps accessing a traced mapping."""

import mmap
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
with open(path, "r+b") as f:
    mm = mmap.mmap(f.fileno(), 4096)
end = time.monotonic() + seconds
loops = 0
while time.monotonic() < end:
    for _ in range(100):
        mm[0] = loops & 0xFF
        loops += 1 if mm[0] == loops & 0xFF else 0
print(loops)
