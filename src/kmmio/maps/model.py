"""The one register model every map format is read into, and decoding against it.

SystemRDL, IP-XACT and CMSIS-SVD files all become a :class:`RegisterMap`: registers with
an absolute address, a size in bytes, a dotted path and fields (lsb, width, access, enum
values).  Decoding an access works on this model only, so every format decodes alike,
and the tracer can decode live with it later: :meth:`RegisterMap.lookup` and
:meth:`RegisterMap.decode` are pure (no I/O) and cheap (registers sorted by address,
found by bisection).

Values are little-endian, as the log records them: byte ``i`` of an access is
``(value >> 8 * i) & 0xff``, and a register's bit 0 is the lowest bit of its first byte.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Software access of a field or register, in SystemRDL's words: read-write, read-only,
#: write-only, read-write once, write once, no access.
ACCESS_TYPES = ("rw", "r", "w", "rw1", "w1", "na")


def readable(access: str) -> bool:
    """Whether software may read something of this access type."""
    return access in ("rw", "r", "rw1")


def writable(access: str) -> bool:
    """Whether software may write something of this access type."""
    return access in ("rw", "w", "rw1", "w1")


def combine_access(accesses: Iterable[str]) -> str:
    """The access of a register from its fields': readable if one is, writable if one is."""
    items = list(accesses)
    r = any(readable(a) for a in items)
    w = any(writable(a) for a in items)
    return "rw" if r and w else "r" if r else "w" if w else "na"


@dataclass(frozen=True, slots=True)
class EnumValue:
    """One named value of an enum-encoded field (SystemRDL ``encode``, SVD/IP-XACT
    ``enumeratedValue``)."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Field:
    """Bits ``lsb`` .. ``lsb + width - 1`` of a register."""

    name: str
    lsb: int
    width: int
    access: str = "rw"
    enums: tuple[EnumValue, ...] = ()

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    def enum_name(self, value: int) -> str | None:
        """The enum's name for ``value``, ``None`` when the map names none."""
        for e in self.enums:
            if e.value == value:
                return e.name
        return None


@dataclass(frozen=True, slots=True)
class Register:
    """A register of ``size`` bytes at absolute ``address``; ``path`` is its full dotted
    name (``tdev.QUEUE[1]``), ``fields`` in the map's order."""

    path: str
    address: int
    size: int
    fields: tuple[Field, ...] = ()
    access: str = "rw"

    @property
    def name(self) -> str:
        """The last element of the path (``QUEUE[1]``)."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def end(self) -> int:
        """One past the register's last byte."""
        return self.address + self.size


@dataclass(frozen=True, slots=True)
class Hit:
    """The bytes ``start`` .. ``end - 1`` (absolute) of ``register`` that an access touched."""

    register: Register
    start: int
    end: int

    @property
    def lsb(self) -> int:
        """The register's lowest bit touched."""
        return (self.start - self.register.address) * 8

    @property
    def msb(self) -> int:
        """The register's highest bit touched."""
        return (self.end - self.register.address) * 8 - 1

    @property
    def whole(self) -> bool:
        """Whether the access covered every byte of the register."""
        return self.start == self.register.address and self.end == self.register.end


@dataclass(frozen=True, slots=True)
class FieldValue:
    """A field an access touched: its value, or ``None`` (*partial*) when the access
    covered only some of its bits."""

    field: Field
    value: int | None

    @property
    def enum(self) -> str | None:
        """The enum's name for the value, where the map has one."""
        return None if self.value is None else self.field.enum_name(self.value)


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """What an access did to one register: ``value`` holds the bits touched in their
    place in the register (the others are 0), ``fields`` the fields touched, in the map's
    order (those the access did not reach are left out)."""

    hit: Hit
    value: int
    fields: tuple[FieldValue, ...]

    @property
    def register(self) -> Register:
        return self.hit.register


@dataclass(frozen=True, slots=True)
class Decoded:
    """An access of ``width`` bytes at ``phys`` moving ``value``, against a map: every
    register whose bytes it touched (by address), and the byte ranges ``(address,
    length)`` of the access no register covers."""

    phys: int
    width: int
    value: int
    registers: tuple[RegisterValue, ...]
    unmapped: tuple[tuple[int, int], ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(rv.register.path for rv in self.registers)

    @property
    def register(self) -> str | None:
        """The first (lowest) register's path, ``None`` when the access hit none."""
        return self.registers[0].register.path if self.registers else None


def _prefer_kind(hits: list[Hit], kind: str | None) -> list[Hit]:
    """Where registers share the same bytes (a read-only and a write-only one at one
    address, as SystemRDL allows), keep those that ``kind`` (``"R"``/``"W"``) can reach."""
    if kind is None or len(hits) < 2:
        return hits
    allowed = readable if kind == "R" else writable
    groups: dict[tuple[int, int], list[Hit]] = {}
    for h in hits:
        groups.setdefault((h.register.address, h.register.size), []).append(h)
    keep: list[Hit] = []
    for group in groups.values():
        fit = [h for h in group if allowed(h.register.access)] if len(group) > 1 else group
        keep.extend(fit or group)
    return keep


def decode_hits(phys: int, width: int, value: int, hits: Sequence[Hit], kind: str | None = None) -> Decoded:
    """Decode an access against the registers :meth:`RegisterMap.lookup` found for it
    (a caller that caches lookups per address calls this directly)."""
    chosen = _prefer_kind(list(hits), kind)
    regs: list[RegisterValue] = []
    for h in chosen:
        nbytes = h.end - h.start
        part = (value >> (8 * (h.start - phys))) & ((1 << (8 * nbytes)) - 1)
        lsb, msb = h.lsb, h.msb
        in_place = part << lsb
        fvs: list[FieldValue] = []
        for f in h.register.fields:
            f_msb = f.lsb + f.width - 1
            if f_msb < lsb or f.lsb > msb:
                continue  # not touched
            if f.lsb >= lsb and f_msb <= msb:
                fvs.append(FieldValue(f, (in_place >> f.lsb) & ((1 << f.width) - 1)))
            else:
                fvs.append(FieldValue(f, None))
        regs.append(RegisterValue(h, in_place, tuple(fvs)))
    return Decoded(phys, width, value, tuple(regs), _gaps(phys, phys + width, chosen))


def _gaps(start: int, end: int, hits: Sequence[Hit]) -> tuple[tuple[int, int], ...]:
    """The ranges of ``start`` .. ``end - 1`` no hit covers, as ``(address, length)``."""
    gaps: list[tuple[int, int]] = []
    at = start
    for h in sorted(hits, key=lambda h: h.start):
        if h.start > at:
            gaps.append((at, h.start - at))
        at = max(at, h.end)
    if at < end:
        gaps.append((at, end - at))
    return tuple(gaps)


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """Registers by address.  Registers may overlap (alternate views of the same bytes);
    ``lookup`` finds every one an access touches."""

    registers: tuple[Register, ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _span: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regs = tuple(sorted(self.registers, key=lambda r: (r.address, r.size, r.path)))
        object.__setattr__(self, "registers", regs)
        object.__setattr__(self, "_starts", tuple(r.address for r in regs))
        object.__setattr__(self, "_span", max((r.size for r in regs), default=1))

    @classmethod
    def union(cls, maps: Iterable[RegisterMap]) -> RegisterMap:
        """One map holding the registers of all of ``maps``."""
        return cls(tuple(r for m in maps for r in m.registers))

    def rebased(self, base: int) -> RegisterMap:
        """The same registers ``base`` bytes higher (a BAR's or a UIO map's start)."""
        if not base:
            return self
        return RegisterMap(tuple(dataclasses.replace(r, address=r.address + base) for r in self.registers))

    def lookup(self, phys: int, width: int) -> list[Hit]:
        """Every register with a byte in ``phys`` .. ``phys + width - 1``, by address."""
        end = phys + width
        regs = self.registers
        hits: list[Hit] = []
        for i in range(bisect_left(self._starts, phys - self._span + 1), bisect_left(self._starts, end)):
            r = regs[i]
            r_end = r.address + r.size
            if r_end > phys:
                hits.append(Hit(r, max(phys, r.address), min(end, r_end)))
        return hits

    def decode(self, phys: int, width: int, value: int, kind: str | None = None) -> Decoded:
        """An access of ``width`` bytes at ``phys`` moving ``value``: the registers it
        touched and their fields.  ``kind`` (``"R"`` or ``"W"``), when given, chooses
        between registers that share the same bytes by their access."""
        return decode_hits(phys, width, value, self.lookup(phys, width), kind)
