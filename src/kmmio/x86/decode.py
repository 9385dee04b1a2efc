"""Which memory an x86-64 instruction touches, from iced-x86 (the job of the kernel's pf_in.c).

pf_in.c knows a dozen ``mov`` opcodes.  Here the decoder library tells, for any instruction,
every memory operand with its size and access kind (read, write, read-modify-write,
conditional), and :meth:`InstructionForm.accesses` turns them into concrete accesses for a
register snapshot, in the order the program means them: every read before every write,
so a read-modify-write gives the old value, then the new one.

A masked vector access (AVX-512 ``{k}`` moves, ``vmaskmov``/``vpmaskmov``/``maskmovdqu``)
touches only the bytes its mask enables: its operand carries a :class:`Mask`, and given the
thread's mask and vector registers :meth:`InstructionForm.accesses` yields one access per
contiguous run of enabled bytes, of the run's length (1 to 64 bytes).

Decoding depends only on the bytes and the address, so a form can be cached per PC.
"""

from __future__ import annotations

from dataclasses import dataclass

import iced_x86 as iced

from kmmio.x86.emulate import EmuPlan, plan
from kmmio.x86.operands import (
    AccessKind,
    Mask,
    MaskState,
    MemAccess,
    RegSlice,
    reg_slice,
    runs,
    vector_number,
)
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
    #: For a masked vector access: which of its bytes the instruction touches.
    mask: Mask | None = None

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

    @property
    def masked(self) -> bool:
        """Whether which bytes it touches depends on mask or vector registers."""
        return any(op.mask is not None for op in self.operands)

    def accesses(self, regs: Registers, vectors: MaskState | None = None) -> list[MemAccess]:
        """Concrete accesses for a register snapshot: every read, then every write.

        A masked operand gives one access per run of the bytes its mask enables (none if
        it enables none) when ``vectors`` holds the thread's mask and vector registers;
        without them, one access of its full width.
        """
        reads = []
        writes = []
        for op in self.operands:
            addr = op.address(regs)
            if op.mask is None or vectors is None:
                spans = [(addr, op.width)]
            else:
                spans = [((addr + at) & _MASK64, n) for at, n in runs(op.mask.enabled(vectors))]
            for at, width in spans:
                if op.reads:
                    reads.append(MemAccess(AccessKind.READ, at, width))
                if op.writes:
                    writes.append(MemAccess(AccessKind.WRITE, at, width))
        return reads + writes


_factory = iced.InstructionInfoFactory()

_M = iced.Mnemonic
#: AVX-512 instructions whose element ``i`` of memory is touched only if bit ``i`` of the
#: opmask is set: the masked loads and stores (moves, up- and down-converting moves,
#: extracts).  Other instructions with a ``{k}`` (arithmetic, shuffles, broadcasts...)
#: keep the full width of their memory operand.
_OPMASK_MOVES = {
    _M.VMOVDQU8, _M.VMOVDQU16, _M.VMOVDQU32, _M.VMOVDQU64, _M.VMOVDQA32, _M.VMOVDQA64,
    _M.VMOVUPS, _M.VMOVUPD, _M.VMOVAPS, _M.VMOVAPD, _M.VMOVSS, _M.VMOVSD, _M.VMOVSH,
    _M.VPMOVQB, _M.VPMOVSQB, _M.VPMOVUSQB, _M.VPMOVQW, _M.VPMOVSQW, _M.VPMOVUSQW,
    _M.VPMOVQD, _M.VPMOVSQD, _M.VPMOVUSQD, _M.VPMOVDB, _M.VPMOVSDB, _M.VPMOVUSDB,
    _M.VPMOVDW, _M.VPMOVSDW, _M.VPMOVUSDW, _M.VPMOVWB, _M.VPMOVSWB, _M.VPMOVUSWB,
    _M.VPMOVZXBW, _M.VPMOVZXBD, _M.VPMOVZXBQ, _M.VPMOVZXWD, _M.VPMOVZXWQ, _M.VPMOVZXDQ,
    _M.VPMOVSXBW, _M.VPMOVSXBD, _M.VPMOVSXBQ, _M.VPMOVSXWD, _M.VPMOVSXWQ, _M.VPMOVSXDQ,
    _M.VEXTRACTF32X4, _M.VEXTRACTF64X2, _M.VEXTRACTF32X8, _M.VEXTRACTF64X4,
    _M.VEXTRACTI32X4, _M.VEXTRACTI64X2, _M.VEXTRACTI32X8, _M.VEXTRACTI64X4, _M.VCVTPS2PH,
}  # fmt: skip
#: The first popcount(k) elements of memory, contiguous.
_COMPRESS = {
    _M.VPCOMPRESSB, _M.VPCOMPRESSW, _M.VPCOMPRESSD, _M.VPCOMPRESSQ, _M.VCOMPRESSPS,
    _M.VCOMPRESSPD, _M.VPEXPANDB, _M.VPEXPANDW, _M.VPEXPANDD, _M.VPEXPANDQ, _M.VEXPANDPS,
    _M.VEXPANDPD,
}  # fmt: skip
#: Masked by the sign bits of the elements of a vector register: the second operand
#: (``vpmaskmovd ymm0, ymm1, [m]``, ``vpmaskmovd [m], ymm1, ymm0``), or for ``maskmovdqu``
#: (implicit ``[rdi]``) the last, byte by byte.
_SIGN_MASKED = {_M.VMASKMOVPS, _M.VMASKMOVPD, _M.VPMASKMOVD, _M.VPMASKMOVQ}
_BYTE_MASKED = {_M.MASKMOVDQU, _M.VMASKMOVDQU}


def _mask(insn: iced.Instruction, memory_size: int, width: int) -> Mask | None:
    """The mask of the memory operand of a masked load or store, if it is one."""
    e = iced.MemorySizeExt.element_size(memory_size)  # type: ignore[arg-type]
    n = iced.MemorySizeExt.element_count(memory_size)  # type: ignore[arg-type]
    if e * n != width or insn.is_broadcast:
        return None
    m = insn.mnemonic
    if insn.op_mask != iced.Register.NONE and (m in _OPMASK_MOVES or m in _COMPRESS):
        return Mask(insn.op_mask - iced.Register.K0, -1, e, n, compress=m in _COMPRESS)
    if m in _BYTE_MASKED:
        e, n, source = 1, width, insn.op_count - 1
    elif m in _SIGN_MASKED:
        source = 1
    else:
        return None
    vector = vector_number(insn.op_register(source)) if insn.op_kind(source) == iced.OpKind.REGISTER else -1
    return Mask(-1, vector, e, n) if vector >= 0 else None


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
                mask=_mask(insn, used.memory_size, width),
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
