"""Operands shared by the decoder and the emulator: access kinds, accesses, register slices."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache

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
