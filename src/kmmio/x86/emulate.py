"""Performing a faulting instruction in the tracer instead of the CPU (pure).

The tracer keeps the page armed and does the instruction's memory accesses itself, one
access of the exact width each (device registers must see exactly what the program does),
then gives the thread the registers, flags and instruction pointer the CPU would have left.

Only what can be reproduced exactly is emulated: the ``mov`` family (loads, stores,
immediates, ``movzx``/``movsx``/``movsxd``, ``movnti``), ``push``/``pop`` with a memory
operand, ``stos``/``lods``/``movs`` (with ``rep``, either direction, and partial progress),
and, without ``lock``, ``add``/``sub``/``and``/``or``/``xor``/``cmp``/``test``/``inc``/``dec``/
``neg``/``not`` with their flags bit for bit; and vector moves between a register and
memory: SSE, AVX and unmasked AVX-512 (``movdqu``... ``vmovdqu8/16/32/64``,
``vmovdqa32/64``, ``vmovups``... of xmm/ymm/zmm 0-31, 4 to 64 bytes).  Anything else
(atomics, bit tests, masked moves...) returns ``None`` and goes the kmmio way.

The caller supplies a :class:`Bus`: ``can`` says whether an access may be performed (every
access of an element is checked before any is made, so a refused element leaves no side
effect), ``load``/``store`` perform it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import iced_x86 as iced

from kmmio.x86.operands import AccessKind, MemAccess, RegSlice, reg_slice, vector_number
from kmmio.x86.regs import EFLAGS_DF, Registers

CF, PF, AF, ZF, SF, OF = 1 << 0, 1 << 2, 1 << 4, 1 << 6, 1 << 7, 1 << 11
ARITH_FLAGS = CF | PF | AF | ZF | SF | OF

#: Most elements of a ``rep`` string instruction emulated in one stop.
MAX_ELEMENTS = 4096


class Op(enum.Enum):
    LOAD = "load"
    STORE = "store"
    MOVZX = "movzx"
    MOVSX = "movsx"
    PUSH = "push"
    POP = "pop"
    STOS = "stos"
    LODS = "lods"
    MOVS = "movs"
    ALU = "alu"
    VLOAD = "vload"
    VSTORE = "vstore"


@dataclass(frozen=True, slots=True)
class EmuPlan:
    """What an emulatable instruction does, fixed at decode time."""

    op: Op
    width: int
    next_ip: int
    reg: RegSlice | None = None
    imm: int | None = None
    alu: str = ""
    mem_is_dest: bool = True
    rep: bool = False
    #: Vector moves: the xmm/ymm/zmm register number, whether the rest of the register is
    #: zeroed up to bit 511 (VEX and EVEX loads) rather than kept (legacy SSE loads keep
    #: bits 128-511), and the alignment the instruction demands.
    vreg: int = -1
    zero_upper: bool = False
    align: int = 0


@dataclass(frozen=True, slots=True)
class Emulated:
    """The outcome: the registers to give the thread and the accesses made, with values."""

    regs: Registers
    accesses: tuple[tuple[MemAccess, int], ...]


class Vectors(Protocol):
    """The thread's vector registers zmm0-31 (xmm/ymm are their low bits), as 512-bit
    unsigned numbers."""

    def read(self, index: int) -> int: ...

    def write(self, index: int, value: int, keep_upper: bool) -> None:
        """Set bits 0-127 (all 512 when ``keep_upper`` is false: ``value`` zero-extended)."""


class Bus(Protocol):
    def can(self, kind: AccessKind, addr: int, width: int) -> bool: ...
    def load(self, addr: int, width: int) -> int: ...
    def store(self, addr: int, width: int, value: int) -> None: ...


_ALU = {
    iced.Mnemonic.ADD: "add", iced.Mnemonic.SUB: "sub", iced.Mnemonic.AND: "and",
    iced.Mnemonic.OR: "or", iced.Mnemonic.XOR: "xor", iced.Mnemonic.CMP: "cmp",
    iced.Mnemonic.TEST: "test", iced.Mnemonic.INC: "inc", iced.Mnemonic.DEC: "dec",
    iced.Mnemonic.NEG: "neg", iced.Mnemonic.NOT: "not",
}  # fmt: skip
_STRINGS = {iced.Mnemonic.STOSB, iced.Mnemonic.STOSW, iced.Mnemonic.STOSD, iced.Mnemonic.STOSQ}
_LODS = {iced.Mnemonic.LODSB, iced.Mnemonic.LODSW, iced.Mnemonic.LODSD, iced.Mnemonic.LODSQ}
_MOVS = {iced.Mnemonic.MOVSB, iced.Mnemonic.MOVSW, iced.Mnemonic.MOVSD, iced.Mnemonic.MOVSQ}
_ACCUMULATOR = {1: iced.Register.AL, 2: iced.Register.AX, 4: iced.Register.EAX, 8: iced.Register.RAX}
_IMM_KINDS = {
    iced.OpKind.IMMEDIATE8, iced.OpKind.IMMEDIATE16, iced.OpKind.IMMEDIATE32,
    iced.OpKind.IMMEDIATE64, iced.OpKind.IMMEDIATE8TO16, iced.OpKind.IMMEDIATE8TO32,
    iced.OpKind.IMMEDIATE8TO64, iced.OpKind.IMMEDIATE32TO64,
}  # fmt: skip


def plan(insn: iced.Instruction, width: int, address_bits: int) -> EmuPlan | None:
    """The emulation plan of a decoded instruction, or ``None`` if it goes the kmmio way."""
    if insn.mnemonic in _VECTOR_MOVES and not insn.is_string_instruction:
        return _vector_plan(insn, width)
    if insn.has_lock_prefix or insn.has_repne_prefix or width not in (1, 2, 4, 8):
        return None
    m = insn.mnemonic
    kinds = [insn.op_kind(i) for i in range(insn.op_count)]
    mem = iced.OpKind.MEMORY
    nxt = insn.next_ip

    def reg(i: int) -> RegSlice | None:
        return reg_slice(insn.op_register(i)) if kinds[i] == iced.OpKind.REGISTER else None

    if m in (iced.Mnemonic.MOV, iced.Mnemonic.MOVNTI) and len(kinds) == 2:
        if kinds[0] == mem:
            if kinds[1] in _IMM_KINDS:
                return EmuPlan(Op.STORE, width, nxt, imm=insn.immediate(1) & _mask(width))
            r = reg(1)
            return EmuPlan(Op.STORE, width, nxt, reg=r) if r is not None and r.bits == width * 8 else None
        r = reg(0)
        return EmuPlan(Op.LOAD, width, nxt, reg=r) if r is not None and r.bits == width * 8 else None
    if m in (iced.Mnemonic.MOVZX, iced.Mnemonic.MOVSX, iced.Mnemonic.MOVSXD) and kinds[1] == mem:
        r = reg(0)
        if r is None or r.shift:
            return None
        return EmuPlan(Op.MOVZX if m == iced.Mnemonic.MOVZX else Op.MOVSX, width, nxt, reg=r)
    if m in (iced.Mnemonic.PUSH, iced.Mnemonic.POP) and kinds == [mem] and width == 8:
        if insn.memory_base in (iced.Register.RSP, iced.Register.ESP):
            return None  # pop [rsp+x] addresses with the popped rsp
        return EmuPlan(Op.PUSH if m == iced.Mnemonic.PUSH else Op.POP, width, nxt)
    if insn.is_string_instruction and m in _STRINGS | _LODS | _MOVS:
        if address_bits != 64 or insn.segment_prefix != iced.Register.NONE:
            return None
        op = Op.STOS if m in _STRINGS else Op.LODS if m in _LODS else Op.MOVS
        r = reg_slice(
            {1: iced.Register.AL, 2: iced.Register.AX, 4: iced.Register.EAX, 8: iced.Register.RAX}[width]
        )
        return EmuPlan(op, width, nxt, reg=r, rep=insn.has_rep_prefix)
    if m in _ALU and mem in kinds:
        name = _ALU[m]
        if name in ("inc", "dec", "neg", "not"):
            return EmuPlan(Op.ALU, width, nxt, alu=name)
        if len(kinds) != 2:
            return None
        if kinds[0] == mem:
            if kinds[1] in _IMM_KINDS:
                return EmuPlan(Op.ALU, width, nxt, imm=insn.immediate(1) & _mask(width), alu=name)
            r = reg(1)
            ok = r is not None and r.bits == width * 8
            return EmuPlan(Op.ALU, width, nxt, reg=r, alu=name) if ok else None
        r = reg(0)
        if r is None or r.bits != width * 8:
            return None
        return EmuPlan(Op.ALU, width, nxt, reg=r, alu=name, mem_is_dest=False)
    return None


_ALIGNED = {
    iced.Mnemonic.MOVDQA, iced.Mnemonic.MOVAPS, iced.Mnemonic.MOVAPD,
    iced.Mnemonic.VMOVDQA, iced.Mnemonic.VMOVAPS, iced.Mnemonic.VMOVAPD,
    iced.Mnemonic.VMOVDQA32, iced.Mnemonic.VMOVDQA64,
}  # fmt: skip
_VECTOR_MOVES = _ALIGNED | {
    iced.Mnemonic.MOVDQU, iced.Mnemonic.MOVUPS, iced.Mnemonic.MOVUPD, iced.Mnemonic.MOVQ,
    iced.Mnemonic.MOVD, iced.Mnemonic.MOVSS, iced.Mnemonic.MOVSD, iced.Mnemonic.VMOVDQU,
    iced.Mnemonic.VMOVUPS, iced.Mnemonic.VMOVUPD, iced.Mnemonic.VMOVQ, iced.Mnemonic.VMOVD,
    iced.Mnemonic.VMOVSS, iced.Mnemonic.VMOVSD, iced.Mnemonic.VMOVDQU8, iced.Mnemonic.VMOVDQU16,
    iced.Mnemonic.VMOVDQU32, iced.Mnemonic.VMOVDQU64,
}  # fmt: skip
_ENCODINGS = {iced.EncodingKind.LEGACY, iced.EncodingKind.VEX, iced.EncodingKind.EVEX}


def _vector_plan(insn: iced.Instruction, width: int) -> EmuPlan | None:
    """``movdqu``/``vmovdqa``/``movq``/``movss``/``vmovdqu64``... between an xmm/ymm/zmm
    register and memory, without a mask (a masked move touches only some of its bytes and
    merges or zeroes the others: it is single-stepped)."""
    if insn.encoding not in _ENCODINGS or insn.op_mask != iced.Register.NONE:
        return None
    if insn.op_count != 2 or width not in (4, 8, 16, 32, 64):
        return None
    kinds = (insn.op_kind(0), insn.op_kind(1))
    mem = iced.OpKind.MEMORY
    vreg = vector_number(insn.op_register(1 if kinds[0] == mem else 0))  # 16-31: EVEX only
    if vreg < 0:
        return None  # mmx, or a general register (movq rax, xmm0 has no memory)
    align = width if insn.mnemonic in _ALIGNED else 0
    legacy = insn.encoding == iced.EncodingKind.LEGACY
    if kinds == (mem, iced.OpKind.REGISTER):
        return EmuPlan(Op.VSTORE, width, insn.next_ip, vreg=vreg, align=align)
    if kinds == (iced.OpKind.REGISTER, mem):
        return EmuPlan(Op.VLOAD, width, insn.next_ip, vreg=vreg, zero_upper=not legacy, align=align)
    return None


def _mask(width: int) -> int:
    return (1 << (width * 8)) - 1


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _parity(value: int) -> int:
    return PF if bin(value & 0xFF).count("1") % 2 == 0 else 0


def alu(name: str, a: int, b: int, width: int, flags: int) -> tuple[int, int]:
    """``a OP b`` at ``width`` bytes: the result and the new EFLAGS, bit for bit."""
    bits = width * 8
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    keep = flags & ~ARITH_FLAGS
    if name == "not":
        return ~a & mask, flags
    if name in ("add", "inc"):
        b = 1 if name == "inc" else b
        r = (a + b) & mask
        cf = CF if a + b > mask else 0
        of = OF if (~(a ^ b) & (a ^ r)) & sign else 0
        af = AF if (a ^ b ^ r) & 0x10 else 0
    elif name in ("sub", "cmp", "dec", "neg"):
        if name == "neg":
            a, b = 0, a
        b = 1 if name == "dec" else b
        r = (a - b) & mask
        cf = CF if a < b else 0
        of = OF if ((a ^ b) & (a ^ r)) & sign else 0
        af = AF if (a ^ b ^ r) & 0x10 else 0
    else:  # and, or, xor, test
        r = a & b if name in ("and", "test") else a | b if name == "or" else a ^ b
        cf = of = af = 0
    if name in ("inc", "dec"):
        cf = flags & CF
    new = keep | cf | of | af | _parity(r) | (ZF if r == 0 else 0) | (SF if r & sign else 0)
    return r, new


def _write_reg(changes: dict[str, int], regs: Registers, r: RegSlice, value: int) -> None:
    """Write ``value`` to a register slice as the CPU does, into ``changes``."""
    if r.bits == 32:
        changes[r.field] = value & 0xFFFFFFFF  # a 32-bit write clears the upper half
    elif r.bits == 64:
        changes[r.field] = value & (1 << 64) - 1
    else:
        mask = ((1 << r.bits) - 1) << r.shift
        old = changes.get(r.field, regs.get(r.field))
        changes[r.field] = (old & ~mask) | ((value << r.shift) & mask)


def emulate(
    p: EmuPlan,
    addr: int,
    regs: Registers,
    bus: Bus,
    vectors: Vectors | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> Emulated | None:
    """Run the planned instruction whose explicit memory operand is at ``addr``.

    Returns ``None``, having touched nothing, when an access is refused by the bus (or a
    vector move finds no ``vectors``, or a misaligned address the CPU would refuse).
    """
    if p.op in (Op.STOS, Op.LODS, Op.MOVS):
        return _string(p, regs, bus, max_elements)
    if p.op in (Op.VLOAD, Op.VSTORE):
        return _vector(p, addr, regs, bus, vectors)
    r: dict[str, int] = {"rip": p.next_ip}
    R, W = AccessKind.READ, AccessKind.WRITE
    w = p.width
    done: list[tuple[MemAccess, int]] = []
    if p.op is Op.STORE:
        if not bus.can(W, addr, w):
            return None
        value = p.imm if p.imm is not None else p.reg.value(regs)  # type: ignore[union-attr]
        bus.store(addr, w, value)
        done.append((MemAccess(W, addr, w), value))
    elif p.op in (Op.LOAD, Op.MOVZX, Op.MOVSX):
        if not bus.can(R, addr, w):
            return None
        value = bus.load(addr, w)
        done.append((MemAccess(R, addr, w), value))
        assert p.reg is not None
        out = _signed(value, w * 8) if p.op is Op.MOVSX else value
        _write_reg(r, regs, p.reg, out & ((1 << p.reg.bits) - 1))
    elif p.op is Op.PUSH:
        sp = (regs.rsp - 8) & (1 << 64) - 1
        if not (bus.can(R, addr, 8) and bus.can(W, sp, 8)):
            return None
        value = bus.load(addr, 8)
        bus.store(sp, 8, value)
        done += [(MemAccess(R, addr, 8), value), (MemAccess(W, sp, 8), value)]
        r["rsp"] = sp
    elif p.op is Op.POP:
        # pop [m] computes the address with rsp already incremented: the fault address is it
        if not (bus.can(R, regs.rsp, 8) and bus.can(W, addr, 8)):
            return None
        value = bus.load(regs.rsp, 8)
        bus.store(addr, 8, value)
        done += [(MemAccess(R, regs.rsp, 8), value), (MemAccess(W, addr, 8), value)]
        r["rsp"] = (regs.rsp + 8) & (1 << 64) - 1
    else:  # ALU
        writes = p.mem_is_dest and p.alu not in ("cmp", "test")
        if not bus.can(R, addr, w) or (writes and not bus.can(W, addr, w)):
            return None
        old = bus.load(addr, w)
        done.append((MemAccess(R, addr, w), old))
        other = p.imm if p.imm is not None else p.reg.value(regs) if p.reg is not None else 0
        a, b = (old, other) if p.mem_is_dest else (other, old)
        result, r["eflags"] = alu(p.alu, a, b, w, regs.eflags)
        if writes:
            bus.store(addr, w, result)
            done.append((MemAccess(W, addr, w), result))
        elif not p.mem_is_dest and p.alu not in ("cmp", "test"):
            assert p.reg is not None
            _write_reg(r, regs, p.reg, result)
    return Emulated(regs.replace(**r), tuple(done))


def _vector(p: EmuPlan, addr: int, regs: Registers, bus: Bus, vectors: Vectors | None) -> Emulated | None:
    kind = AccessKind.READ if p.op is Op.VLOAD else AccessKind.WRITE
    if vectors is None or (p.align and addr % p.align) or not bus.can(kind, addr, p.width):
        return None
    if p.op is Op.VLOAD:
        value = bus.load(addr, p.width)
        vectors.write(p.vreg, value, keep_upper=not p.zero_upper)
    else:
        value = vectors.read(p.vreg) & _mask(p.width)
        bus.store(addr, p.width, value)
    return Emulated(regs.replace(rip=p.next_ip), ((MemAccess(kind, addr, p.width), value),))


def _string(p: EmuPlan, regs: Registers, bus: Bus, max_elements: int) -> Emulated | None:
    R, W = AccessKind.READ, AccessKind.WRITE
    w = p.width
    step = -w if regs.eflags & EFLAGS_DF else w
    m64 = (1 << 64) - 1
    rsi, rdi, rcx = regs.rsi, regs.rdi, regs.rcx
    r: dict[str, int] = {}
    assert p.reg is not None
    acc = p.reg.value(regs)
    done: list[tuple[MemAccess, int]] = []
    elements = 0
    while (not p.rep or rcx) and elements < max_elements:
        if p.op is Op.STOS:
            if not bus.can(W, rdi, w):
                break
            bus.store(rdi, w, acc)
            done.append((MemAccess(W, rdi, w), acc))
            rdi = (rdi + step) & m64
        elif p.op is Op.LODS:
            if not bus.can(R, rsi, w):
                break
            acc = bus.load(rsi, w)
            done.append((MemAccess(R, rsi, w), acc))
            rsi = (rsi + step) & m64
        else:
            if not (bus.can(R, rsi, w) and bus.can(W, rdi, w)):
                break
            value = bus.load(rsi, w)
            bus.store(rdi, w, value)
            done += [(MemAccess(R, rsi, w), value), (MemAccess(W, rdi, w), value)]
            rsi, rdi = (rsi + step) & m64, (rdi + step) & m64
        elements += 1
        if p.rep:
            rcx -= 1
        else:
            break
    if not elements:
        return None
    if p.op is Op.LODS:
        _write_reg(r, regs, p.reg, acc)
    finished = not p.rep or rcx == 0
    out = regs.replace(rsi=rsi, rdi=rdi, rcx=rcx, rip=p.next_ip if finished else regs.rip, **r)
    return Emulated(out, tuple(done))
