"""The tracer's end of the agent's record ring (``_ring_impl.c``; the agent's end is
``kmmio/agent/_agent.c``): a ``memfd`` shared with the traced programs only (inherited,
no path), records taken out as mmiotrace lines."""

from __future__ import annotations

import array
import mmap
import os
import struct

from kmmio.backend._ring import ffi, lib

#: The ring's header (``struct ring_hdr`` in ring_layout.h), then its lanes of records of
#: 120 bytes, one lane per thread (by thread id modulo LANES).
HEADER = 4096
RECORD = 120
LANES = 16
#: Where the header keeps the count of kept relocations run, and of their records.
_KEPT = 16


class RecordRing:
    """``LANES`` lanes of ``capacity`` records each (a power of two) in a memfd named ``name``."""

    def __init__(self, name: str, capacity: int) -> None:
        size = HEADER + LANES * capacity * RECORD
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self._map = mmap.mmap(self.fd, size)
        self._addr = ffi.cast("uintptr_t", ffi.from_buffer(self._map))
        lib.kmmio_ring_init(self._addr, capacity, os.getpid())
        self._out = bytearray(1 << 20)
        self._out_addr = ffi.cast("uintptr_t", ffi.from_buffer(self._out))
        self._counts = array.array("Q", [0, 0])
        self._counts_addr = ffi.cast("uintptr_t", ffi.from_buffer(self._counts))

    def take(self, final: bool = False) -> tuple[str, int, int]:
        """Written records as log lines (up to 1 MiB of them), the lanes merged in time
        order: text, reads, writes.  Unless ``final`` (no agent writes any more), only
        records stamped before the call, so that a later take never goes back in time."""
        self._counts[0] = self._counts[1] = 0
        n = lib.kmmio_ring_take(self._addr, self._out_addr, len(self._out), self._counts_addr, final)
        return self._out[:n].decode("ascii") if n > 0 else "", self._counts[0], self._counts[1]

    def pending(self) -> int:
        """Records reserved and not taken (written or not)."""
        return int(lib.kmmio_ring_pending(self._addr))

    def skip(self) -> None:
        """Step over a record whose writer died before writing it."""
        lib.kmmio_ring_skip(self._addr)

    def detach(self) -> None:
        """Tell every agent to let go of its pages and record nothing more."""
        lib.kmmio_ring_detach(self._addr)

    def kept(self) -> tuple[int, int]:
        """Kept relocations the agents ran, and the records they made."""
        runs, records = struct.unpack_from("<QQ", self._map, _KEPT)
        return int(runs), int(records)
