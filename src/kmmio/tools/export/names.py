"""What an access touched, as the exports name it: registers (with a map) or addresses.

Every export and the plot speak of *variables*: a register of the map, or, without a map
(and for bytes no register covers), an address.  :class:`Namer` answers, per access,
which variables it set and which bits of each (:class:`Slot`), the label a timeline shows
(``tdev.CTRL``, ``tdev.CTRL[23:8]``, ``0xf7c00010``) and the register column of a table;
answers are remembered per ``(kind, phys, width)``, which a log repeats endlessly.

A variable's value (:class:`Values`) follows the accesses:

* a register holds its bits: an access that covers part of it sets only those bits (a
  byte write to ``CTRL + 1`` changes bits 15..8); bits never seen are 0;
* an address holds the last value read or written there, whatever the width (without a
  map, accesses are told apart by their start address only).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kmmio.errors import UsageError
from kmmio.maps import RegisterMap
from kmmio.maps.format import register_column

#: The kind column of a batch: 0 read, 1 write.
KINDS = ("R", "W")


@dataclass(frozen=True, slots=True)
class Var:
    """A register (``size`` > 0: its size in bytes) or an address (``size`` 0) at
    ``address``; ``name`` is the register's path (``path@0xADDRESS`` when the maps hold
    the same path at several addresses) or the address in hex."""

    name: str
    address: int
    size: int = 0

    @property
    def is_register(self) -> bool:
        return self.size > 0


@dataclass(frozen=True, slots=True)
class Slot:
    """``nbits`` bits of an access's value, from bit ``offset`` of it, landing at bit
    ``lsb`` of ``var``."""

    var: Var
    lsb: int
    nbits: int
    offset: int

    def apply(self, old: int | None, value: int) -> int:
        """``var``'s value after an access moving ``value`` (``old``: its value before,
        ``None`` when not seen yet)."""
        mask = (1 << self.nbits) - 1
        part = (value >> self.offset) & mask
        if not self.var.is_register or old is None:
            return part << self.lsb
        return (old & ~(mask << self.lsb)) | (part << self.lsb)


@dataclass(frozen=True, slots=True)
class Naming:
    """What one ``(kind, phys, width)`` touched: its slots (by address), its label, and the
    first register's path (``None`` when it hit no register, or without a map)."""

    slots: tuple[Slot, ...]
    label: str
    register: str | None


def address_var(address: int) -> Var:
    return Var(f"{address:#x}", address)


class Namer:
    """Names accesses against ``regmap`` (or by address when it is ``None``), remembering
    the answers; the memory is emptied when it reaches ``cache_size`` entries."""

    def __init__(self, regmap: RegisterMap | None, cache_size: int = 1 << 16) -> None:
        self.regmap = regmap
        self.cache_size = cache_size
        self._cache: dict[tuple[int, int, int], Naming] = {}
        seen: dict[str, set[int]] = {}
        for reg in regmap.registers if regmap is not None else ():
            seen.setdefault(reg.path, set()).add(reg.address)
        self._ambiguous = {path for path, where in seen.items() if len(where) > 1}

    def naming(self, kind: int, phys: int, width: int) -> Naming:
        """The naming of an access of ``kind`` (0 read, 1 write), ``width`` bytes at ``phys``."""
        key = (kind, phys, width)
        got = self._cache.get(key)
        if got is None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            got = self._cache[key] = self._name(kind, phys, width)
        return got

    def slots(self, kind: int, phys: int, width: int) -> tuple[Slot, ...]:
        return self.naming(kind, phys, width).slots

    def _name(self, kind: int, phys: int, width: int) -> Naming:
        if self.regmap is None:
            return Naming((Slot(address_var(phys), 0, 8 * width, 0),), f"{phys:#x}", None)
        d = self.regmap.decode(phys, width, 0, KINDS[kind])
        slots: list[Slot] = []
        for rv in d.registers:
            h = rv.hit
            var = self.register_var(h.register.path, h.register.address, h.register.size)
            slots.append(Slot(var, h.lsb, 8 * (h.end - h.start), 8 * (h.start - phys)))
        for addr, length in d.unmapped:
            slots.append(Slot(address_var(addr), 0, 8 * length, 8 * (addr - phys)))
        slots.sort(key=lambda s: s.offset)
        return Naming(tuple(slots), register_column(d), d.register)

    def register_var(self, path: str, address: int, size: int) -> Var:
        name = f"{path}@{address:#x}" if path in self._ambiguous else path
        return Var(name, address, size)

    def find(self, spec: str) -> Var:
        """The variable ``spec`` names: a register's path or last name (``tdev.CTRL``,
        ``CTRL``, with a map), or an address (``0xf7c00000``: the register starting there,
        else the address).  Anything else raises :class:`~kmmio.errors.UsageError`."""
        text = spec.strip()
        address = _number(text)
        if address is not None:
            if self.regmap is not None:
                at = [r for r in self.regmap.registers if r.address == address]
                if at:
                    return self.register_var(at[0].path, at[0].address, at[0].size)
            return address_var(address)
        if self.regmap is None:
            raise UsageError(
                f"{text!r} is a register name: naming registers needs --map (or give an address)"
            )
        regs = self.regmap.registers
        found = [r for r in regs if r.path == text] or [
            r for r in regs if r.path.endswith("." + text) or r.path == text
        ]
        if not found:
            raise UsageError(f"no register {text!r} in the map")
        if len({(r.path, r.address) for r in found}) > 1:
            some = ", ".join(f"{r.path}@{r.address:#x}" for r in found[:4])
            raise UsageError(f"{text!r} names several registers ({some}): give its address or full path")
        r = found[0]
        return self.register_var(r.path, r.address, r.size)


def _number(text: str) -> int | None:
    if text.lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            raise UsageError(f"{text!r} is not an address") from None
    return None


def parse_selection(text: str) -> list[str]:
    """``R1,R2`` (commas and/or spaces) to its items, refusing an empty list."""
    items = [t for part in text.split(",") for t in part.split()]
    if not items:
        raise UsageError("--registers needs at least one register name or 0x address")
    return items


class Values:
    """The variables' current values (see the module docstring).

    Registers (as many as the map has) are kept by :class:`Var`; addresses (as many as a
    log touches: up to millions) by their address alone, in a ``dict`` of ``int`` to
    ``int``, so an address costs about 100 bytes, not a :class:`Var` and its name.  With
    ``keep_addresses`` false, addresses are not kept at all (an address's new value does
    not depend on its old one): every value set at an address then counts as a change."""

    def __init__(self, keep_addresses: bool = True) -> None:
        self.registers: dict[Var, int] = {}
        self.addresses: dict[int, int] = {}
        self.keep_addresses = keep_addresses

    def __len__(self) -> int:
        """The variables holding a value."""
        return len(self.registers) + len(self.addresses)

    def get(self, var: Var) -> int | None:
        """``var``'s value, ``None`` when not seen (or not kept)."""
        return self.registers.get(var) if var.is_register else self.addresses.get(var.address)

    def apply(self, slots: Sequence[Slot], value: int) -> Iterator[tuple[Var, int, bool]]:
        """Each slot's variable, its new value, and whether that value changed (a first
        value counts as a change)."""
        regs, addrs, keep = self.registers, self.addresses, self.keep_addresses
        for s in slots:
            var = s.var
            if var.is_register:
                old = regs.get(var)
                new = regs[var] = s.apply(old, value)
            else:
                new = s.apply(None, value)
                if not keep:
                    yield var, new, True
                    continue
                old = addrs.get(var.address)
                addrs[var.address] = new
            yield var, new, new != old


def sort_vars(vs: Iterable[Var]) -> list[Var]:
    """Variables by address, registers before the addresses at the same place."""
    return sorted(vs, key=lambda v: (v.address, not v.is_register, v.name))


def distinct(np: Any, kind: Any, phys: Any, width: Any) -> tuple[list[tuple[int, int, int]], Any]:
    """The distinct ``(kind, phys, width)`` of a batch's columns (numpy arrays), and for
    each row the index of its own among them: a batch is named once per distinct access
    instead of once per row."""
    uphys, inv = np.unique(phys, return_inverse=True)
    combo = inv.astype(np.int64) * 512 + width.astype(np.int64) * 2 + (kind.astype(np.int64) & 1)
    ucombo, cinv = np.unique(combo, return_inverse=True)
    keys = [(c & 1, int(uphys[c // 512]), (c % 512) // 2) for c in ucombo.tolist()]
    return keys, cinv
