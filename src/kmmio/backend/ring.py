"""The tracer's end of the agent's record ring (``_ring_impl.c``; the agent's end is
``kmmio/agent/_agent.c``): a ``memfd`` shared with the traced programs only (inherited,
no path), records taken out as mmiotrace lines."""

from __future__ import annotations

import array
import mmap
import os
import struct
import time
from typing import NamedTuple

from kmmio.backend._ring import ffi, lib

#: The ring's header (``struct ring_hdr`` in ring_layout.h), then its lanes of records of
#: 120 bytes, a lane per thread (handed out round robin; shared beyond LANES threads).
HEADER = 4096
RECORD = 120
LANES = 16
#: Where the header keeps the count of kept relocations run, and of their records.
_KEPT = 16
#: ``now`` for a final take: every written record.
_END = (1 << 64) - 1


def timens_offset_us() -> int:
    """This process's time namespace's ``CLOCK_MONOTONIC`` offset in µs (0 in the first
    namespace): the agents stamp their records in the tracer's clock with it."""
    try:
        with open("/proc/self/timens_offsets") as f:
            for line in f:
                name, sec, nsec = line.split()
                if name == "monotonic":
                    return int(sec) * 1_000_000 + int(nsec) // 1000
    except (OSError, ValueError):
        pass
    return 0


class Taken(NamedTuple):
    """What one take gave: log lines, their reads and writes, records lost (abandoned by
    their writer), and records held back behind one still on its way."""

    text: str
    reads: int
    writes: int
    lost: int
    held: int


class RecordRing:
    """``LANES`` lanes of ``capacity`` records each (a power of two) in a memfd named ``name``."""

    def __init__(self, name: str, capacity: int) -> None:
        size = HEADER + LANES * capacity * RECORD
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self._map = mmap.mmap(self.fd, size)
        self._addr = ffi.cast("uintptr_t", ffi.from_buffer(self._map))
        self.capacity = capacity
        lib.kmmio_ring_init(self._addr, capacity, os.getpid(), timens_offset_us())
        self._out = bytearray(1 << 20)
        self._out_addr = ffi.cast("uintptr_t", ffi.from_buffer(self._out))
        self._counts = array.array("Q", [0, 0, 0, 0])
        self._counts_addr = ffi.cast("uintptr_t", ffi.from_buffer(self._counts))

    def take(self, final: bool = False, now: int | None = None) -> Taken:
        """Written records as log lines (up to 1 MiB of them), the lanes merged in time
        order.  Unless ``final`` (no agent writes any more), only records stamped up to
        ``now`` (the trace clock, ``CLOCK_MONOTONIC`` in µs, read here by default) and
        none after a record still on its way, so that a later take does not go back in
        time (see ``_ring_impl.c`` for when it may)."""
        c = self._counts
        c[0] = c[1] = c[2] = c[3] = 0
        if final:
            now = _END
        elif now is None:
            now = time.monotonic_ns() // 1000
        n = lib.kmmio_ring_take(
            self._addr, self.capacity, self._out_addr, len(self._out), self._counts_addr, now
        )
        return Taken(self._out[:n].decode("ascii") if n > 0 else "", c[0], c[1], c[2], c[3])

    def pending(self) -> int:
        """Records reserved and not taken (written or not)."""
        return int(lib.kmmio_ring_pending(self._addr))

    def skip(self) -> bool:
        """Step over a record whose writer died before writing it (False: none is there)."""
        return bool(lib.kmmio_ring_skip(self._addr, self.capacity))

    def detach(self) -> None:
        """Tell every agent to let go of its pages and record nothing more."""
        lib.kmmio_ring_detach(self._addr)

    def kept(self) -> tuple[int, int]:
        """Kept relocations the agents ran, and the records they made."""
        runs, records = struct.unpack_from("<QQ", self._map, _KEPT)
        return int(runs), int(records)
