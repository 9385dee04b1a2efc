"""Probes and the registry that finds the probe covering an address.

kmmio.c keeps ``kmmio_probes`` as a list and walks it in ``get_kmmio_probe()`` (its own
comment calls this "a dynamic stabbing problem").  Probes here never overlap, so a sorted
list of start addresses answers the question with one binary search: O(log n).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kmmio.errors import ProbeError

#: ``pre_handler(probe, regs, addr)``: called before the faulting access runs.
PreHandler = Callable[["Probe", Any, int], None]
#: ``post_handler(probe, condition, regs)``: called after it ran.
PostHandler = Callable[["Probe", Any, Any], None]


@dataclass(eq=False)
class Probe:
    """A probed address range, ``struct kmmio_probe``.

    Probes compare by identity, as the kernel compares pointers: two probes over the same
    range are still two probes.  ``data`` is free for the owner (the tracer keeps its
    mapping record there).
    """

    addr: int
    length: int
    pre_handler: PreHandler | None = None
    post_handler: PostHandler | None = None
    data: Any = field(default=None, repr=False)
    #: The size of the pages behind the range (a hugetlbfs mapping's 2 MiB); 0: the
    #: engine's base page size.
    page_size: int = 0

    @property
    def end(self) -> int:
        return self.addr + self.length

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.addr <= addr < self.end


class ProbeRegistry:
    """Non-overlapping probes sorted by start address (``kmmio_probes``)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._probes: list[Probe] = []

    def __len__(self) -> int:
        return len(self._probes)

    def __iter__(self) -> Iterator[Probe]:
        return iter(list(self._probes))

    def get_probe(self, addr: int) -> Probe | None:
        """The probe whose range holds ``addr`` (``get_kmmio_probe``), in O(log n)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            probe = self._probes[i]
            if addr < probe.addr + probe.length:  # probe.end, without a property call
                return probe
        return None

    def overlapping(self, start: int, end: int) -> list[Probe]:
        """Every probe that shares at least one byte with ``[start, end)``."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        found = []
        while i < len(self._probes) and self._probes[i].addr < end:
            if self._probes[i].end > start:
                found.append(self._probes[i])
            i += 1
        return found

    def add(self, probe: Probe) -> None:
        if probe.length <= 0:
            raise ProbeError(f"probe at {probe.addr:#x} has no length ({probe.length})")
        if probe.addr < 0:
            raise ProbeError(f"probe address {probe.addr:#x} is negative")
        clash = self.overlapping(probe.addr, probe.end)
        if clash:
            other = clash[0]
            raise ProbeError(
                f"probe {probe.addr:#x}+{probe.length:#x} overlaps the probe "
                f"{other.addr:#x}+{other.length:#x}"
            )
        i = bisect.bisect_left(self._starts, probe.addr)
        self._starts.insert(i, probe.addr)
        self._probes.insert(i, probe)

    def remove(self, probe: Probe) -> None:
        i = bisect.bisect_left(self._starts, probe.addr)
        if i >= len(self._probes) or self._probes[i] is not probe:
            raise ProbeError(f"probe {probe.addr:#x}+{probe.length:#x} is not registered")
        del self._starts[i]
        del self._probes[i]
