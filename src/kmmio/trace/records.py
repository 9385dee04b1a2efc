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


def escape(path: str) -> str:
    """A path as one word: whitespace and backslashes as octal escapes (as /proc/mounts)."""
    return "".join(f"\\{ord(c):03o}" if c.isspace() or c == "\\" else c for c in path)


def unescape(word: str) -> str:
    """The path a :class:`MapInfo` line's word stands for."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "\\" and word[i + 1 : i + 4].isdigit() and len(word[i + 1 : i + 4]) == 3:
            out.append(chr(int(word[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What a traced mapping is: a ``MARK`` line right after its ``MAP``.

    ``MARK <ts> map <id> <path> <kind>[ <device>[ <region>]]``: the path as the program's
    maps show it (whitespace and backslashes escaped as ``\\ooo``), ``kind`` one of
    ``pci``, ``uio``, ``vfio``, ``mem`` (``/dev/mem``), ``file`` (a file or shared memory
    object), ``anon`` (anonymous shared memory); a device (``0000:03:00.0``, ``uio0``) and
    its region (``bar 0``, ``map 1``) where there is one.  A reader that knows only ``MARK``
    lines reads it as free text.
    """

    ts: int
    map_id: int
    path: str
    kind: str
    device: str = ""
    region: str = ""

    @property
    def text(self) -> str:
        tail = " ".join(w for w in (self.kind, self.device, self.region) if w)
        return f"map {self.map_id} {escape(self.path)} {tail}"


#: The kinds a :class:`MapInfo` names.
MAP_KINDS = ("pci", "uio", "vfio", "mem", "file", "anon")


Record = Version | PciDev | Map | Unmap | Access | Unknown | Mark | KernelAccess | MapInfo
