"""x86-64 instruction semantics for faulting accesses (pure: bytes and registers in)."""

from kmmio.x86.decode import (
    AccessKind,
    InstructionForm,
    MemAccess,
    MemOperand,
    decode,
)
from kmmio.x86.regs import EFLAGS_DF, EFLAGS_TF, USER_REGS_FIELDS, Registers

__all__ = [
    "EFLAGS_DF",
    "EFLAGS_TF",
    "USER_REGS_FIELDS",
    "AccessKind",
    "InstructionForm",
    "MemAccess",
    "MemOperand",
    "Registers",
    "decode",
]
