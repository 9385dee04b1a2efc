"""What the agent runs for one faulting instruction (pure: instruction, registers, ranges in;
descriptor words or a relocated copy out).

Plain loads and stores become the words of a :class:`kmmio.x86.quick.QuickOp` (the same
currency as the ptrace backend's compiled loop), which the agent performs itself on every
later fault at that address.  Anything else is *relocated*: re-encoded (with iced-x86's
encoder) so that its memory operand reaches the same bytes through the agent's alias of the
mapping, to run in the faulting thread's trampoline:

* an explicit memory operand ``[base + index*scale + disp]`` becomes ``[scratch +
  index*scale]``, ``scratch`` a general register the instruction does not use, set to
  ``base + disp + segment base + delta`` (``delta``: alias minus mapping) and given back its
  value afterwards.  A ``lock`` operation through the alias is the same atomic operation:
  the alias maps the same physical pages.
* a string instruction keeps its bytes: ``rsi``/``rdi`` move by the delta of the mapping
  each points into (and back afterwards); ``rep movs/stos/lods`` run as many elements as
  stay inside the mappings, ``repe/repne cmps/scas`` one element per fault, as a single
  step would.

Where no single alias covers the accesses (private mappings, which ``mremap`` cannot alias,
or an access running past the traced mapping), the bytes are copied into the thread's
scratch area and back (not atomic against other threads: said in the README).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import iced_x86 as iced

from kmmio.x86.cache import Decoded
from kmmio.x86.decode import InstructionForm
from kmmio.x86.operands import Mask
from kmmio.x86.quick import QuickOp
from kmmio.x86.regs import EFLAGS_DF, USER_REGS_FIELDS, Registers

_MASK64 = (1 << 64) - 1
#: Descriptor kinds (``_agent.c``'s ``D_*``).
NONE, QUICK, RELOC = 0, 1, 2
#: Bytes of a trampoline page given to code (the rest is the scratch area).
TRAMP_CODE = 2048
SCRATCH = 2048

_WORD = {name: i for i, name in enumerate(USER_REGS_FIELDS)}
_R = iced.Register
#: Scratch candidates, least likely used first.
_SCRATCH = [_R.R11, _R.R10, _R.R9, _R.R8, _R.R15, _R.R14, _R.R13, _R.R12, _R.RBX, _R.RDX, _R.RCX, _R.RAX,
            _R.RSI, _R.RDI, _R.RBP]  # fmt: skip
_NAME = {
    _R.RAX: "rax", _R.RBX: "rbx", _R.RCX: "rcx", _R.RDX: "rdx", _R.RSI: "rsi", _R.RDI: "rdi",
    _R.RBP: "rbp", _R.RSP: "rsp", _R.R8: "r8", _R.R9: "r9", _R.R10: "r10", _R.R11: "r11",
    _R.R12: "r12", _R.R13: "r13", _R.R14: "r14", _R.R15: "r15",
}  # fmt: skip
_M = iced.Mnemonic
_MOVS = {_M.MOVSB, _M.MOVSW, _M.MOVSD, _M.MOVSQ}
_CONDITIONAL = {_M.CMPSB, _M.CMPSW, _M.CMPSD, _M.CMPSQ, _M.SCASB, _M.SCASW, _M.SCASD, _M.SCASQ}
_ZF = 1 << 6


def descriptor(decoded: Decoded, quick_ok: bool, cacheable: bool) -> list[int]:
    """The 20 words answering a decode request: kind, cacheable, then the quick op's fields
    (``_agent.c``'s ``struct desc`` after its pc)."""
    op: QuickOp | None = decoded.quick if quick_ok else None
    if op is None:
        return [RELOC, int(cacheable)] + [0] * 18
    base_i, base_shift, base_mask = op.base
    index_i, index_shift, index_mask = op.index
    reg_i, reg_shift, reg_mask = op.reg
    words = [
        QUICK, int(cacheable), int(op.write), op.width,
        base_i, base_shift, base_mask, index_i, index_shift, index_mask, op.scale,
        op.displacement, op.segment, reg_i, reg_shift, reg_mask,
        int(op.imm is not None), op.imm or 0, op.sign_bit, op.next_ip,
    ]  # fmt: skip
    return [w & _MASK64 for w in words]


@dataclass(frozen=True, slots=True)
class Traced:
    """A traced range as the planner sees it: ``alias`` is where the agent sees the same
    pages (0: none, a private mapping)."""

    lo: int
    hi: int
    alias: int


@dataclass(frozen=True, slots=True)
class Relocation:
    """How one fault runs: ``code`` (ending where the trampoline's ``hlt`` goes) with the
    registers ``sets`` (word index, value); ``copy_in`` (from, to, length) done before and
    ``copy_out`` after, through the tracer's access to the program's memory."""

    code: bytes
    sets: tuple[tuple[int, int], ...]
    #: Registers to give back afterwards: (name, value) set outright, or moved by a delta.
    restore: tuple[tuple[str, int], ...]
    shift_back: tuple[tuple[str, int], ...]
    copy_in: tuple[tuple[int, int, int], ...]
    copy_out: tuple[tuple[int, int, int], ...]
    #: String instructions: elements asked for (``rcx`` set to it for ``rep``), the
    #: program's count, and whether the prefix was taken off (one element per fault).
    string: bool = False
    elements: int = 1
    count: int = 0
    rep: bool = False
    stripped: int = 0  # the mnemonic's condition: 1 repe, 2 repne

    def after(self, regs: Registers, after: Registers, next_ip: int) -> tuple[dict[str, int], int]:
        """The registers to give the thread once the copy ran (``after``), and how many
        string elements it did (1 for other instructions)."""
        out: dict[str, int] = dict(self.restore)
        for name, delta in self.shift_back:
            out[name] = (after.get(name) - delta) & _MASK64
        done, again = 1, False
        if self.string and self.rep:
            left = after.rcx
            done = self.elements - left
            out["rcx"] = (self.count - done) & _MASK64
            again = self.count - done > 0
        elif self.string and self.stripped:
            out["rcx"] = (self.count - 1) & _MASK64
            zf = bool(after.eflags & _ZF)
            again = self.count - 1 > 0 and zf == (self.stripped == 1)
        out["rip"] = regs.rip if again else next_ip
        return out, done


def template(
    insn: iced.Instruction,
    reloc: Relocation,
    regs: Registers,
    traced: Sequence[tuple[bool, int, int]],
    mask: Mask | None = None,
) -> list[int]:
    """The words with which the agent keeps a relocation for this instruction address
    and runs it without asking again (``_agent.c``'s ``D_TEMPLATE``), or ``[0]``.

    Only a copy that does not depend on the run: an explicit operand reached through the
    alias (no copy to the scratch area), a fixed list of accesses (``traced``: write?,
    address, width), at most four, at fixed offsets from the effective address, whose
    code does not depend on where it runs.  A masked operand (``mask``, an opmask one)
    is one entry, its whole width: the agent finds the bytes from the opmask register."""
    if mask is not None and (mask.opmask < 0 or len(traced) != 1):
        return [0]
    if reloc.string or reloc.copy_in or not traced or len(traced) > 4:
        return [0]
    base, index = insn.memory_base, insn.memory_index
    if (base != _R.NONE and base not in _NAME) or (index != _R.NONE and index not in _NAME):
        return [0]
    enc = iced.Encoder(64)
    moved = iced.Decoder(64, reloc.code, ip=0x1000).decode()
    enc.encode(moved, 0x7000_0000)
    if bytes(enc.take_buffer()) != reloc.code or len(reloc.code) > 32:
        return [0]  # position-dependent
    seg = insn.memory_segment
    seg_i = _WORD["fs_base"] if seg == _R.FS else _WORD["gs_base"] if seg == _R.GS else -1
    ea = insn.memory_displacement
    if base != _R.NONE:
        ea += regs.get(_NAME[base])
    if index != _R.NONE:
        ea += regs.get(_NAME[index]) * insn.memory_index_scale
    if seg_i >= 0:
        ea += regs[seg_i]
    ea &= _MASK64
    ((scratch_word, _),) = reloc.sets
    code = reloc.code + bytes(32 - len(reloc.code))
    words = [
        1,
        _WORD[_NAME[base]] if base != _R.NONE else -1,
        _WORD[_NAME[index]] if index != _R.NONE else -1,
        insn.memory_index_scale,
        insn.memory_displacement,
        seg_i,
        insn.next_ip,
        scratch_word,
        len(reloc.code),
        *struct.unpack("<4Q", code),
        len(traced),
    ]
    for write, addr, width in traced:
        words += [int(write), (addr - ea) & _MASK64, width]
    if mask is None:
        words += [-1, 0, 0, 0]
    else:
        words += [mask.opmask, mask.element, mask.count, int(mask.compress)]
    return [w & _MASK64 for w in words]


class Unsupported(Exception):
    """The instruction cannot run against an alias (said to the user, the fault given to
    the program)."""


def _find(spans: Sequence[Traced], addr: int) -> Traced | None:
    return next((s for s in spans if s.lo <= addr < s.hi), None)


def relocate(
    insn: iced.Instruction,
    form: InstructionForm,
    regs: Registers,
    spans: Sequence[Traced],
    tramp: int,
    accesses: Sequence[tuple[int, int]],
    fault: int,
) -> Relocation:
    """Plan the run of ``insn`` (decoded at ``regs.rip``) in the trampoline at ``tramp``;
    ``accesses`` are its (address, width) as the decoder sees them (empty if unknown),
    ``fault`` the address that faulted."""
    if insn.flow_control != iced.FlowControl.NEXT and not insn.is_string_instruction:
        raise Unsupported(f"{form.text}: a branch through traced memory")
    f = _Fault(insn, form, regs, spans, tramp, accesses, fault)
    return _string(f) if insn.is_string_instruction else _explicit(f)


@dataclass(frozen=True, slots=True)
class _Fault:
    """One relocation's inputs (see :func:`relocate`)."""

    insn: iced.Instruction
    form: InstructionForm
    regs: Registers
    spans: Sequence[Traced]
    tramp: int
    accesses: Sequence[tuple[int, int]]
    fault: int


def _explicit(f: _Fault) -> Relocation:
    insn, form, regs, spans, tramp, accesses, fault = (
        f.insn, f.form, f.regs, f.spans, f.tramp, f.accesses, f.fault
    )  # fmt: skip
    mem = next((i for i in range(insn.op_count) if insn.op_kind(i) == iced.OpKind.MEMORY), None)
    if mem is None and any(insn.op_kind(i) == iced.OpKind.MEMORY_SEG_RDI for i in range(insn.op_count)):
        return _implicit_rdi(f)
    if (
        mem is None
        or insn.memory_base in (_R.EIP, _R.ESP)
        or (insn.memory_base != _R.NONE and insn.memory_base not in _NAME and insn.memory_base != _R.RIP)
    ):
        raise Unsupported(f"{form.text}: no 64-bit memory operand")
    used = {
        iced.RegisterExt.full_register(u.register)
        for u in iced.InstructionInfoFactory().info(insn).used_registers()
    }
    scratch = next((r for r in _SCRATCH if r not in used), None)
    if scratch is None:
        raise Unsupported(f"{form.text}: no free register")
    if insn.memory_base == _R.RIP:
        start = insn.memory_displacement & _MASK64  # iced gives rip-relative targets whole
    else:
        start = insn.memory_displacement
        if insn.memory_base != _R.NONE:
            start += regs.get(_NAME[insn.memory_base])
        seg = insn.memory_segment
        if seg == _R.FS:
            start += regs.fs_base
        elif seg == _R.GS:
            start += regs.gs_base
        start &= _MASK64
    # The explicit operand's accesses are the traced ones (a push's stack is not traced).
    mine = [(a, w) for a, w in accesses if any(s.lo < a + w and a < s.hi for s in spans)]
    lo = min((a for a, _ in mine), default=None)
    hi = max((a + w for a, w in mine), default=None)
    span = _find(spans, lo if lo is not None else fault)
    copy_in: tuple[tuple[int, int, int], ...] = ()
    if span is not None and span.alias and (hi is None or hi <= span.hi):
        # (Accesses unknown, a gather say: all of them taken to be in the faulting mapping.)
        delta = span.alias - span.lo
    elif lo is not None and hi is not None and hi - lo <= SCRATCH:
        delta = tramp + TRAMP_CODE - lo  # the bytes, copied to the scratch area and back
        copy_in = ((lo, tramp + TRAMP_CODE, hi - lo),)
    else:
        raise Unsupported(f"{form.text}: its accesses are not in one traced mapping")
    moved = insn.copy()
    moved.memory_base = scratch
    moved.memory_displacement = 0
    moved.memory_displ_size = 0
    moved.segment_prefix = _R.NONE
    enc = iced.Encoder(64)
    try:
        enc.encode(moved, tramp)
    except ValueError as exc:
        raise Unsupported(f"{form.text}: cannot re-encode ({exc})") from None
    code = bytes(enc.take_buffer())
    name = _NAME[scratch]
    return Relocation(
        code=code,
        sets=((_WORD[name], (start + delta) & _MASK64),),
        restore=((name, regs.get(name)),),
        shift_back=(),
        copy_in=copy_in,
        copy_out=tuple((b, a, n) for a, b, n in copy_in),
    )


def _implicit_rdi(f: _Fault) -> Relocation:
    """``maskmovdqu``/``vmaskmovdqu``: its operand is ``[rdi]``, implicit: ``rdi`` moves by
    the mapping's delta and back."""
    insn, form, regs, spans, tramp, accesses, fault = (
        f.insn, f.form, f.regs, f.spans, f.tramp, f.accesses, f.fault
    )  # fmt: skip
    span = _find(spans, regs.rdi if accesses else fault)
    hi = max((a + w for a, w in accesses), default=regs.rdi + 16)
    if span is None or not span.alias or hi > span.hi or insn.has_segment_prefix:
        raise Unsupported(f"{form.text}: its accesses are not in one traced mapping")
    delta = span.alias - span.lo
    enc = iced.Encoder(64)
    enc.encode(insn, tramp)
    return Relocation(
        code=bytes(enc.take_buffer()),
        sets=((_WORD["rdi"], (regs.rdi + delta) & _MASK64),),
        restore=(),
        shift_back=(("rdi", delta),),
        copy_in=(),
        copy_out=(),
    )


def _string(f: _Fault) -> Relocation:
    insn, form, regs, spans, tramp = f.insn, f.form, f.regs, f.spans, f.tramp
    if insn.memory_size == iced.MemorySize.UNKNOWN or any(
        insn.op_kind(i) in (iced.OpKind.MEMORY_SEG_ESI, iced.OpKind.MEMORY_SEG_EDI, iced.OpKind.MEMORY_ESDI)
        for i in range(insn.op_count)
    ):
        raise Unsupported(f"{form.text}: 32-bit string addressing")
    if insn.has_segment_prefix:
        raise Unsupported(f"{form.text}: a segment prefix")
    size = form.operands[0].width if form.operands else 1
    down = bool(regs.eflags & EFLAGS_DF)
    rep = insn.has_rep_prefix or insn.has_repe_prefix or insn.has_repne_prefix
    conditional = insn.mnemonic in _CONDITIONAL
    count = regs.rcx if rep else 1
    names = []
    for i in range(insn.op_count):
        kind = insn.op_kind(i)
        if kind == iced.OpKind.MEMORY_SEG_RSI:
            names.append("rsi")
        elif kind == iced.OpKind.MEMORY_ESRDI:
            names.append("rdi")
    sets, back = [], []
    room = count
    for name in names:
        addr = regs.get(name)
        span = _find(spans, addr)
        if span is None:
            # Untraced: it runs in place, up to the next traced range.
            if down:
                edge = max((s.hi for s in spans if s.hi <= addr), default=0)
                room = min(room, (addr - edge) // size + 1 if addr >= edge else room)
            else:
                edge = min((s.lo for s in spans if s.lo > addr), default=1 << 64)
                room = min(room, (edge - addr) // size)
            continue
        if not span.alias:
            raise Unsupported(f"{form.text}: a string instruction on a private mapping")
        fits = (addr - span.lo) // size + 1 if down else (span.hi - addr) // size
        room = min(room, fits)
        delta = span.alias - span.lo
        sets.append((_WORD[name], (addr + delta) & _MASK64))
        back.append((name, delta))
    if room <= 0:
        raise Unsupported(f"{form.text}: an element straddles the end of a traced mapping")
    moved = insn.copy()
    stripped = 0
    if rep and conditional:
        stripped = 1 if insn.has_repe_prefix else 2
        moved.has_repe_prefix = False
        moved.has_repne_prefix = False
        moved.has_rep_prefix = False
        elements = 1
    else:
        elements = room if rep else 1
        if rep:
            sets.append((_WORD["rcx"], elements))
    enc = iced.Encoder(64)
    enc.encode(moved, tramp)
    return Relocation(
        code=bytes(enc.take_buffer()),
        sets=tuple(sets),
        restore=(),
        shift_back=tuple(back),
        copy_in=(),
        copy_out=(),
        string=True,
        elements=elements,
        count=count,
        rep=rep and not conditional,
        stripped=stripped,
    )


def string_regs(regs: Registers, form: InstructionForm, k: int) -> Registers:
    """The registers a string instruction's element ``k`` sees (``rsi``/``rdi`` moved on)."""
    size = form.operands[0].width if form.operands else 1
    step = -size if regs.eflags & EFLAGS_DF else size
    return regs.replace(rsi=(regs.rsi + k * step) & _MASK64, rdi=(regs.rdi + k * step) & _MASK64)


def is_movs(insn: iced.Instruction) -> bool:
    return insn.mnemonic in _MOVS
