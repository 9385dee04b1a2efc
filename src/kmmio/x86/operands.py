"""Operands shared by the decoder and the emulator: access kinds, accesses, register
slices, and the masks that say which bytes of a masked vector access are touched."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import iced_x86 as iced

from kmmio.x86.regs import Registers


class AccessKind(enum.Enum):
    READ = "R"
    WRITE = "W"


@dataclass(frozen=True, slots=True)
class MemAccess:
    """One access to memory: kind, first byte, width in bytes."""

    kind: AccessKind
    addr: int
    width: int

    @property
    def end(self) -> int:
        return self.addr + self.width


@dataclass(frozen=True, slots=True)
class RegSlice:
    """Where an iced register lives inside ``Registers``: field, bit shift, bit width."""

    field: str
    shift: int
    bits: int

    def value(self, regs: Registers) -> int:
        return (regs.get(self.field) >> self.shift) & ((1 << self.bits) - 1)


_GPR64 = {
    iced.Register.RAX: "rax", iced.Register.RCX: "rcx", iced.Register.RDX: "rdx",
    iced.Register.RBX: "rbx", iced.Register.RSP: "rsp", iced.Register.RBP: "rbp",
    iced.Register.RSI: "rsi", iced.Register.RDI: "rdi", iced.Register.R8: "r8",
    iced.Register.R9: "r9", iced.Register.R10: "r10", iced.Register.R11: "r11",
    iced.Register.R12: "r12", iced.Register.R13: "r13", iced.Register.R14: "r14",
    iced.Register.R15: "r15", iced.Register.RIP: "rip",
}  # fmt: skip
_HIGH_BYTE = {iced.Register.AH, iced.Register.BH, iced.Register.CH, iced.Register.DH}


@cache
def reg_slice(reg: int) -> RegSlice | None:
    """The ``Registers`` field behind a general-purpose iced register (any width)."""
    info = iced.RegisterInfo(reg)  # type: ignore[arg-type]
    name = _GPR64.get(info.full_register)
    if name is None:
        return None
    if reg in _HIGH_BYTE:
        return RegSlice(name, 8, 8)
    return RegSlice(name, 0, info.size * 8)


def vector_number(reg: int) -> int:
    """The number (0-31) of an iced xmm, ymm or zmm register; -1 for any other register."""
    for first in (iced.Register.XMM0, iced.Register.YMM0, iced.Register.ZMM0):
        if first <= reg <= first + 31:
            return int(reg - first)
    return -1


class MaskState(Protocol):
    """What decides a masked access's bytes: the thread's opmask registers (k0-k7) and
    vector registers (zmm0-31, as 512-bit unsigned numbers; xmm/ymm are their low bits)."""

    def opmask(self, index: int) -> int: ...
    def read(self, index: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Mask:
    """The mask of a masked memory operand: its source and its element layout.

    Element ``i`` of the operand (``element`` bytes at offset ``i * element``) is touched
    when bit ``i`` of opmask register k``opmask`` is set (AVX-512 ``{k}``), or when the
    sign bit of element ``i`` of vector register ``vector`` is set (``vmaskmov``,
    ``vpmaskmov``, ``maskmovdqu``: one of the two is -1).  ``compress`` (``vpcompress``,
    ``vpexpand``): the first popcount(mask) elements are touched, contiguous, whichever
    bits are set.
    """

    opmask: int
    vector: int
    element: int
    count: int
    compress: bool = False

    def enabled(self, state: MaskState) -> int:
        """The enabled bytes as a bit mask (bit ``j``: byte ``j`` of the operand)."""
        e, n = self.element, self.count
        if self.opmask >= 0:
            bits = state.opmask(self.opmask) & ((1 << n) - 1)
        else:
            v, top = state.read(self.vector), e * 8 - 1
            bits = sum(1 << i for i in range(n) if v >> (i * e * 8 + top) & 1)
        if self.compress:
            return (1 << (bits.bit_count() * e)) - 1
        one = (1 << e) - 1
        out = 0
        while bits:
            low = bits & -bits
            out |= one << ((low.bit_length() - 1) * e)
            bits ^= low
        return out


def runs(enabled: int) -> list[tuple[int, int]]:
    """The contiguous runs of set bits in ``enabled``: (first bit, length), lowest first."""
    out = []
    at = 0
    while enabled:
        skip = (enabled & -enabled).bit_length() - 1
        enabled >>= skip
        at += skip
        length = ((enabled ^ (enabled + 1)) >> 1).bit_length()
        out.append((at, length))
        enabled >>= length
        at += length
    return out
