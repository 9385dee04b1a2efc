"""x86-64 instruction semantics for faulting accesses (pure: bytes and registers in)."""

from kmmio.x86.decode import InstructionForm, MemOperand, decode
from kmmio.x86.emulate import Bus, Emulated, EmuPlan, emulate
from kmmio.x86.operands import AccessKind, MemAccess
from kmmio.x86.regs import EFLAGS_DF, EFLAGS_TF, USER_REGS_FIELDS, Registers

__all__ = [
    "EFLAGS_DF",
    "EFLAGS_TF",
    "USER_REGS_FIELDS",
    "AccessKind",
    "Bus",
    "EmuPlan",
    "Emulated",
    "InstructionForm",
    "MemAccess",
    "MemOperand",
    "Registers",
    "decode",
    "emulate",
]
