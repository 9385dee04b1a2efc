"""``-m PATTERN[@OFFSET[+LENGTH]]``: which mappings, and which bytes of them, are traced
(pure; both backends match ``/proc/PID/maps`` entries with it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kmmio.backend.procmaps import MapEntry
from kmmio.errors import UsageError

if TYPE_CHECKING:
    from kmmio.devices import Place


@dataclass(frozen=True, slots=True)
class Pattern:
    """``-m PATTERN[@OFFSET[+LENGTH]]``: mappings whose path contains ``text``, and of them
    only the bytes at ``[offset, offset + length)`` of the mapped object (the file offset:
    for ``resourceN`` the offset in the BAR, for ``/dev/mem`` the physical address; the
    virtual address for anonymous memory), all of them without ``@``."""

    spec: str
    text: str
    offset: int = 0
    length: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Pattern:
        text, at, window = spec.rpartition("@")
        if not at or not text:
            return cls(spec, spec)
        start, plus, size = window.partition("+")
        try:
            offset = int(start, 0)
            length = int(size, 0) if plus else None
        except ValueError:
            return cls(spec, spec)  # an @ that is part of the path
        if offset < 0 or (length is not None and length <= 0):
            raise UsageError(f"-m {spec}: the offset must not be negative, the length must be positive")
        return cls(spec, text, offset, length)

    def window(self, entry: MapEntry, lo: int, hi: int, offset: int) -> tuple[int, int] | None:
        """The part of ``[lo, hi)`` of ``entry`` the pattern traces, or ``None``; ``offset``
        is the object offset of ``entry.start`` (see :meth:`Regions._new_mapping`)."""
        if self.offset == 0 and self.length is None:
            return lo, hi
        base = entry.start - offset  # object offset 0
        first = max(lo, base + self.offset)
        last = hi if self.length is None else min(hi, base + self.offset + self.length)
        return (first, last) if first < last else None


def object_offset(entry: MapEntry, place: Place | None) -> int:
    """The object offset of ``entry.start``: the file offset as the program gave it to
    ``mmap`` (a device's, from where it is placed: the kernel shows a device mapping's page
    frame in /proc/PID/maps), the virtual address for anonymous memory."""
    if place is not None and place.offset is not None:
        return place.offset
    return entry.start if entry.anonymous else entry.offset


def phys_and_info(
    entry: MapEntry, lo: int, place: Place | None, start_offset: int
) -> tuple[int, tuple[str, str, str]]:
    """The ``MAP`` line's physical start of the traced bytes from ``lo`` of ``entry``, and
    its ``MARK map`` description: where the device is (``place``: a PCI BAR, a UIO map, a
    VFIO region, ``/dev/mem``), else the file offset, or the virtual address if anonymous."""
    if place is not None:
        return place.phys + (lo - entry.start), (place.kind, place.device, place.region)
    return start_offset + (lo - entry.start), ("anon" if entry.anonymous else "file", "", "")


def match(patterns: Sequence[Pattern], entry: MapEntry, matched: set[str]) -> Pattern | None:
    """The pattern a data mapping (not executable) matches, its path containing it; the
    patterns that matched something are kept in ``matched``."""
    if not entry.path or "x" in entry.perms:
        return None
    for pat in patterns:
        if pat.text in entry.path:
            matched.add(pat.spec)
            return pat
    return None
