"""A generated mmiotrace log: ``python bench/genlog.py LINES OUT [driver|addresses|wide]``.

``driver`` (the default) looks like a driver's:

What a real trace of a device driver is made of, in proportions picked from the kernel's
sample and our own traces: a header (VERSION, PCIDEV, MAP and its MARK map line), then, in
two threads, bursts of register writes (configuration: a few hundred registers, values
that repeat), polling loops (runs of 2 to 400 reads of a status register whose value
changes at the end), FIFO traffic (reads and writes of random 4- and 8-byte values to one
data register), now and then a 1-, 2-, 16- or 32-byte access, and a ``MARK`` syscall line
every few thousand accesses.  Deterministic (a fixed seed), so runs compare.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable

BASE = 0xF7C00000
REGS = [BASE + 4 * i for i in range(512)]
STATUS = BASE + 0x1C
FIFO = BASE + 0x800


def write(n: int, put: Callable[[str], object], seed: int = 11) -> None:
    """About ``n`` lines (the last burst may pass it by a few), each given to ``put``
    with its newline."""
    r = random.Random(seed)
    put("VERSION 20070824\n")
    put("PCIDEV 0300 8086100e b f7c00000 0 c001 0 0 0 0 20000 0 40 0 0 0 0 e1000\n")
    put(f"MAP 1.000000 1 {BASE:#x} 0x7f5a3c000000 0x20000 0x4011a0 4242\n")
    put("MARK 1.000000 map 1 /sys/bus/pci/devices/0000:03:00.0/resource0 pci 0000:03:00.0 bar 0\n")
    written = 4
    ts = 1_000_001
    tids = (4242, 4243)
    pcs = [0x401000 + 7 * i for i in range(300)]

    def stamp() -> str:
        return f"{ts // 1_000_000}.{ts % 1_000_000:06d}"

    def line(kind: str, width: int, addr: int, value: int, tid: int) -> str:
        return f"{kind} {width} {stamp()} 1 {addr:#x} {value:#x} {r.choice(pcs):#x} {tid}\n"

    while written < n:
        tid = tids[r.random() < 0.2]
        what = r.random()
        if what < 0.35:  # a burst of configuration writes
            for _ in range(r.randrange(4, 40)):
                ts += r.randrange(1, 4)
                put(line("W", 4, r.choice(REGS), r.choice((0, 1, 0x10000009, r.randrange(1 << 32))), tid))
                written += 1
        elif what < 0.55:  # a polling loop
            polls = r.randrange(2, 400)
            for i in range(polls):
                ts += r.randrange(1, 3)
                put(line("R", 4, STATUS, 1 if i == polls - 1 else 0, tid))
                written += 1
        elif what < 0.97:  # FIFO traffic
            for _ in range(r.randrange(8, 200)):
                ts += 1
                w = r.choice((4, 4, 8))
                put(line(r.choice("RW"), w, FIFO, r.randrange(1 << (8 * w)), tid))
                written += 1
        elif what < 0.99:  # odd widths
            w = r.choice((1, 2, 16, 32))
            ts += 1
            put(line(r.choice("RW"), w, FIFO + 0x40, r.randrange(1 << (8 * w)), tid))
            written += 1
        else:
            ts += 5
            put(f"MARK {stamp()} syscall write reads map 1 0x800+0x400 tid {tid}\n")
            written += 1


def write_shape(n: int, put: Callable[[str], object], shape: str) -> None:
    """Logs of the shapes that stress a tool's memory: ``addresses``, one 4-byte write to
    each of ``n`` distinct addresses (a buffer or firmware fill); ``wide``, ``n`` 16-byte
    writes of distinct values to one register (an SSE copy to a FIFO)."""
    put("VERSION 20070824\n")
    put(f"MAP 1.000000 1 {BASE:#x} 0x7f5a3c000000 {max(4 * n, 0x1000):#x} 0x4011a0 4242\n")
    for i in range(n):
        ts = 1_000_001 + i
        stamp = f"{ts // 1_000_000}.{ts % 1_000_000:06d}"
        if shape == "addresses":
            put(f"W 4 {stamp} 1 {BASE + 4 * i:#x} {i & 0xFFFFFFFF:#x} 0x401000 4242\n")
        else:
            value = (i * 0x9E3779B97F4A7C15_1234567890ABCDEF) % (1 << 128)  # distinct, 16 bytes
            put(f"W 16 {stamp} 1 {FIFO:#x} {value:#x} 0x401000 4242\n")


def main() -> int:
    n, path = int(sys.argv[1]), sys.argv[2]
    shape = sys.argv[3] if len(sys.argv) > 3 else "driver"
    with open(path, "w", buffering=1 << 20) as f:
        if shape == "driver":
            write(n, f.write)
        else:
            write_shape(n, f.write, shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
