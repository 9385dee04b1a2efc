"""Which memory an x86-64 instruction touches, from iced-x86 (the job of the kernel's pf_in.c).

pf_in.c knows a dozen ``mov`` opcodes.  Here the decoder library tells, for any instruction,
every memory operand with its size and access kind (read, write, read-modify-write,
conditional), and :meth:`InstructionForm.accesses` turns them into concrete accesses for a
register snapshot, in the order the program means them: every read before every write,
so a read-modify-write gives the old value, then the new one.

Decoding depends only on the bytes and the address, so a form can be cached per PC.
"""

from __future__ import annotations

from dataclasses import dataclass

import iced_x86 as iced

from kmmio.x86.emulate import EmuPlan, plan
from kmmio.x86.operands import AccessKind, MemAccess, RegSlice, reg_slice
from kmmio.x86.regs import Registers

_MASK64 = (1 << 64) - 1

#: Longest x86 instruction.
MAX_INSN_LEN = 15


_SEGMENT_BASES: dict[int, str] = {iced.Register.FS: "fs_base", iced.Register.GS: "gs_base"}


def segment_base_field(seg: int) -> str | None:
    """The register field holding the base of segment ``seg`` (only fs and gs have one)."""
    return _SEGMENT_BASES.get(seg)


def segment_base(seg: int, regs: Registers) -> int:
    name = segment_base_field(seg)
    return regs.get(name) if name is not None else 0


_READ_KINDS = {iced.OpAccess.READ, iced.OpAccess.COND_READ}
_WRITE_KINDS = {iced.OpAccess.WRITE, iced.OpAccess.COND_WRITE}
_RMW_KINDS = {iced.OpAccess.READ_WRITE, iced.OpAccess.READ_COND_WRITE}
_BIT_STRING = {iced.Mnemonic.BT, iced.Mnemonic.BTS, iced.Mnemonic.BTR, iced.Mnemonic.BTC}


@dataclass(frozen=True, slots=True)
class MemOperand:
    """A memory operand of a decoded instruction, before registers give it an address."""

    base: RegSlice | None
    index: RegSlice | None
    scale: int
    displacement: int
    segment: int
    address_bits: int
    width: int
    reads: bool
    writes: bool
    #: For ``bt``/``bts``/``btr``/``btc`` with a register bit offset: that register.
    bit_offset: RegSlice | None = None

    def address(self, regs: Registers) -> int:
        ea = self.displacement
        if self.base is not None:
            ea += self.base.value(regs)
        if self.index is not None:
            ea += self.index.value(regs) * self.scale
        if self.bit_offset is not None:
            bits = self.bit_offset.bits
            off = self.bit_offset.value(regs)
            if off >> (bits - 1):
                off -= 1 << bits
            ea += (off >> ((self.width * 8).bit_length() - 1)) * self.width
        ea &= (1 << self.address_bits) - 1
        return (ea + segment_base(self.segment, regs)) & _MASK64


@dataclass(frozen=True, slots=True)
class InstructionForm:
    """A decoded instruction: what it is and which memory operands it has.

    ``known`` is false when the decoder could not account for the instruction's memory
    accesses (invalid bytes, vector-indexed gathers and scatters, sizes no record can
    hold): such a fault is logged as ``UNKNOWN``, as the kernel does.
    """

    ip: int
    length: int
    code: bytes
    text: str
    operands: tuple[MemOperand, ...]
    known: bool
    #: How to perform it in the tracer, when that can be done exactly.
    plan: EmuPlan | None = None

    def accesses(self, regs: Registers) -> list[MemAccess]:
        """Concrete accesses for a register snapshot: every read, then every write."""
        reads = []
        writes = []
        for op in self.operands:
            addr = op.address(regs)
            if op.reads:
                reads.append(MemAccess(AccessKind.READ, addr, op.width))
            if op.writes:
                writes.append(MemAccess(AccessKind.WRITE, addr, op.width))
        return reads + writes


_factory = iced.InstructionInfoFactory()


def decode(code: bytes, ip: int) -> InstructionForm:
    """Decode the instruction in ``code`` (its first bytes) located at address ``ip``."""
    decoder = iced.Decoder(64, code[:MAX_INSN_LEN], ip=ip)
    insn = decoder.decode()
    if insn.is_invalid:
        return InstructionForm(ip, 0, bytes(code[:3]), "(bad)", (), False)
    operands = []
    known = True
    string = insn.is_string_instruction
    bit_reg = None
    if (
        insn.mnemonic in _BIT_STRING
        and insn.op_count == 2
        and insn.op0_kind == iced.OpKind.MEMORY
        and insn.op1_kind == iced.OpKind.REGISTER
    ):
        bit_reg = reg_slice(insn.op1_register)
    for used in _factory.info(insn).used_memory():
        access = used.access
        if access == iced.OpAccess.NO_MEM_ACCESS:
            continue
        width = iced.MemorySizeExt.size(used.memory_size)
        if width == 0 and string:
            width = iced.MemorySizeExt.size(insn.memory_size)
        if used.vsib_size or not 0 < width <= 64:
            known = False
            continue
        base = None if used.base == iced.Register.NONE else reg_slice(used.base)
        index = None if used.index == iced.Register.NONE else reg_slice(used.index)
        if (used.base != iced.Register.NONE and base is None) or (
            used.index != iced.Register.NONE and index is None
        ):
            known = False
            continue
        operands.append(
            MemOperand(
                base=base,
                index=index,
                scale=used.scale,
                displacement=used.displacement,
                segment=used.segment,
                address_bits={iced.CodeSize.CODE16: 16, iced.CodeSize.CODE32: 32}.get(used.address_size, 64),
                width=width,
                reads=access in _READ_KINDS or access in _RMW_KINDS,
                writes=access in _WRITE_KINDS or access in _RMW_KINDS,
                bit_offset=bit_reg,
            )
        )
    code_bytes = bytes(code[: insn.len])
    return InstructionForm(
        ip=ip,
        length=insn.len,
        code=code_bytes,
        text=str(insn),
        operands=tuple(operands),
        known=known,
        plan=plan(insn, operands[0].width, operands[0].address_bits) if known and operands else None,
    )
