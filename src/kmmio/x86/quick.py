"""The common case, compiled: a plain load or store between one register and memory (pure).

Drivers mostly do ``mov reg, [mmio]`` and ``mov [mmio], reg/imm`` (``readl``/``writel``).
For those, :func:`compile_quick` turns the decoded form into a :class:`QuickOp` that works
directly on the 27 raw words of ``struct user_regs_struct`` (a ctypes array or a list),
so the tracer's hot path builds no register snapshot, no plan walk and no access list:
compute the address, do one access of the exact width, patch one or two words.

A quick op does exactly what :func:`kmmio.x86.emulate.emulate` does for the same plan; the
tests hold the two to that on random registers.  Everything else (``push``/``pop``, string,
vector and ALU instructions, 16- or 32-bit addressing) has no quick op and takes the general
path.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass

from kmmio.x86.decode import InstructionForm, segment_base_field
from kmmio.x86.emulate import Op
from kmmio.x86.operands import RegSlice
from kmmio.x86.regs import USER_REGS_FIELDS

_MASK64 = (1 << 64) - 1
RIP = USER_REGS_FIELDS.index("rip")
_NO_REG = (-1, 0, 0)


def _where(r: RegSlice | None) -> tuple[int, int, int]:
    """(word index, shift, mask) of a register slice; index -1 for none."""
    if r is None:
        return _NO_REG
    return USER_REGS_FIELDS.index(r.field), r.shift, (1 << r.bits) - 1


@dataclass(frozen=True, slots=True)
class QuickOp:
    """A load or store of ``width`` bytes between memory and a register (or an immediate)."""

    write: bool
    width: int
    next_ip: int
    #: Address: displacement + base + index * scale (+ fs/gs base), as word indexes.
    displacement: int
    base: tuple[int, int, int]
    index: tuple[int, int, int]
    scale: int
    segment: int
    #: The register: word index, shift (8 for ah..dh), mask of its bits; or an immediate.
    reg: tuple[int, int, int]
    imm: int | None
    #: Loads: 0 for mov/movzx, the sign bit of the loaded value for movsx/movsxd.
    sign_bit: int

    def address(self, words: Sequence[int]) -> int:
        ea = self.displacement
        i, shift, mask = self.base
        if i >= 0:
            ea += (words[i] >> shift) & mask
        i, shift, mask = self.index
        if i >= 0:
            ea += ((words[i] >> shift) & mask) * self.scale
        if self.segment >= 0:
            ea += words[self.segment]
        return ea & _MASK64

    def value(self, words: Sequence[int]) -> int:
        """The value a store writes."""
        if self.imm is not None:
            return self.imm
        i, shift, mask = self.reg
        return (words[i] >> shift) & mask

    def complete(self, words: MutableSequence[int], loaded: int = 0) -> None:
        """Leave ``words`` as the CPU would after the instruction (``loaded``: what a load read)."""
        if not self.write:
            i, shift, mask = self.reg
            if self.sign_bit and loaded & self.sign_bit:
                loaded -= self.sign_bit << 1
            loaded &= mask
            if mask == 0xFFFFFFFF or mask == _MASK64:
                words[i] = loaded  # a 32-bit write clears the upper half
            else:
                old = words[i] & _MASK64
                words[i] = (old & ~(mask << shift)) | (loaded << shift)
        words[RIP] = self.next_ip


def compile_quick(form: InstructionForm) -> QuickOp | None:
    """The quick op of a decoded instruction, or ``None`` if it needs the general path."""
    p = form.plan
    if p is None or len(form.operands) != 1 or p.op not in _QUICK:
        return None
    mem = form.operands[0]
    if mem.address_bits != 64 or mem.bit_offset is not None or p.width > 8:
        return None
    if p.imm is None and p.reg is None:
        return None
    seg = segment_base_field(mem.segment)
    return QuickOp(
        write=p.op is Op.STORE,
        width=p.width,
        next_ip=p.next_ip,
        displacement=mem.displacement,
        base=_where(mem.base),
        index=_where(mem.index),
        scale=mem.scale,
        segment=-1 if seg is None else USER_REGS_FIELDS.index(seg),
        reg=_where(p.reg),
        imm=p.imm,
        sign_bit=1 << (p.width * 8 - 1) if p.op is Op.MOVSX else 0,
    )


_QUICK = {Op.LOAD, Op.STORE, Op.MOVZX, Op.MOVSX}
