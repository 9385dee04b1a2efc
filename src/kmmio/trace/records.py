"""The records of an mmiotrace log (format ``VERSION 20070824``), as frozen values.

Timestamps are whole microseconds of a monotonic clock; the text form prints them as
``seconds.micros``.  ``pc`` and ``pid`` are what the kernel prints as ``0x0`` and ``0``; a
process tracer fills them with the instruction pointer and the thread id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MMIOTRACE_VERSION = "20070824"


class Kind(enum.Enum):
    READ = "R"
    WRITE = "W"


@dataclass(frozen=True, slots=True)
class Version:
    version: str = MMIOTRACE_VERSION


@dataclass(frozen=True, slots=True)
class PciDev:
    """``PCIDEV``: a PCI device, with its 7 BAR starts (flags OR-ed in) and sizes."""

    devfn: int
    vendor_device: int
    irq: int
    starts: tuple[int, ...]
    sizes: tuple[int, ...]
    driver: str = ""


@dataclass(frozen=True, slots=True)
class Map:
    """``MAP``: a traced mapping appears (``ioremap``/``mmap``)."""

    ts: int
    map_id: int
    phys: int
    virt: int
    length: int
    pc: int = 0
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Unmap:
    """``UNMAP``: a traced mapping is gone; ``map_id`` is -1 when no mapping matched."""

    ts: int
    map_id: int
    pc: int = 0
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Access:
    """``R``/``W``: one access of ``width`` bytes moving ``value`` (little-endian, unsigned)."""

    kind: Kind
    width: int
    ts: int
    map_id: int
    phys: int
    value: int
    pc: int = 0
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Unknown:
    """``UNKNOWN``: a fault the decoder could not account for; ``code`` holds its first bytes."""

    ts: int
    map_id: int
    phys: int
    code: bytes
    pc: int = 0
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Mark:
    """``MARK``: free text (markers, and ``Lost N events.``)."""

    ts: int
    text: str


@dataclass(frozen=True, slots=True)
class KernelAccess:
    """The kernel reached traced memory for a syscall of thread ``tid``: a ``MARK`` line.

    ``MARK <ts> syscall <name> <direction> map <id> <phys>+<length> tid <tid>``, where
    ``direction`` is ``reads``, ``writes``, ``updates`` (both) or ``accesses`` (not known,
    or an address the kernel keeps), and ``+<length>`` is left out when the length is not
    known.  A reader that knows only ``MARK`` lines reads it as free text.
    """

    ts: int
    syscall: str
    direction: str
    map_id: int
    phys: int
    length: int | None
    tid: int

    @property
    def text(self) -> str:
        where = f"{self.phys:#x}" if self.length is None else f"{self.phys:#x}+{self.length:#x}"
        return f"syscall {self.syscall} {self.direction} map {self.map_id} {where} tid {self.tid}"


Record = Version | PciDev | Map | Unmap | Access | Unknown | Mark | KernelAccess
