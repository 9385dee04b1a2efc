"""What the agent runs for a faulting instruction (kmmio.agent.plan): descriptors, relocated
copies, kept templates; pure, checked by decoding what it produces."""

from __future__ import annotations

import iced_x86 as iced
import pytest

from kmmio.agent.plan import (
    QUICK,
    RELOC,
    SCRATCH,
    TRAMP_CODE,
    Traced,
    Unsupported,
    descriptor,
    relocate,
    string_regs,
    template,
)
from kmmio.x86.cache import Decoder
from kmmio.x86.regs import EFLAGS_DF, USER_REGS_FIELDS, Registers

LO, HI, ALIAS = 0x7F0000000000, 0x7F0000002000, 0x7E0000000000
SPANS = [Traced(LO, HI, ALIAS)]
TRAMP = 0x6000000000
IP = 0x401000
WORD = {name: i for i, name in enumerate(USER_REGS_FIELDS)}


def _decode(hex_code: str) -> tuple[iced.Instruction, object]:
    code = bytes.fromhex(hex_code)
    decoded = Decoder().decode(IP, code)
    return iced.Decoder(64, code, ip=IP).decode(), decoded


def _plan(hex_code: str, regs: Registers, spans: list[Traced] = SPANS):  # type: ignore[no-untyped-def]
    insn, decoded = _decode(hex_code)
    form = decoded.form  # type: ignore[attr-defined]
    accesses = [(a.addr, a.width) for a in form.accesses(regs)] if form.known else []
    return insn, form, relocate(insn, form, regs, spans, TRAMP, accesses, accesses[0][0] if accesses else LO)


def test_a_plain_load_is_a_quick_descriptor_and_an_atomic_is_relocated() -> None:
    _, load = _decode("8b08")  # mov ecx, [rax]
    words = descriptor(load, quick_ok=True, cacheable=True)  # type: ignore[arg-type]
    assert len(words) == 20 and words[:4] == [QUICK, 1, 0, 4]
    _, xadd = _decode("f00fc101")  # lock xadd [rcx], eax
    assert descriptor(xadd, quick_ok=True, cacheable=False)[:2] == [RELOC, 0]  # type: ignore[arg-type]
    assert descriptor(load, quick_ok=False, cacheable=True)[0] == RELOC  # type: ignore[arg-type]


def test_an_explicit_operand_is_moved_to_the_alias_through_a_free_register() -> None:
    regs = Registers(rcx=LO + 0x100, rax=5, rip=IP)
    _insn, form, reloc = _plan("f00fc101", regs)  # lock xadd [rcx], eax
    moved = iced.Decoder(64, reloc.code, ip=TRAMP).decode()
    assert moved.mnemonic == iced.Mnemonic.XADD and moved.has_lock_prefix
    scratch = moved.memory_base
    assert scratch not in (iced.Register.RCX, iced.Register.RAX, iced.Register.NONE)
    assert moved.memory_displacement == 0 and moved.memory_index == iced.Register.NONE
    ((word, value),) = reloc.sets
    assert value == ALIAS + 0x100  # the same byte, through the alias
    name = USER_REGS_FIELDS[word]
    after = regs.replace(**{name: value, "rax": 7})
    out, done = reloc.after(regs, after, IP + form.length)
    assert done == 1 and out == {name: regs.get(name), "rip": IP + form.length}


def test_displacement_and_segment_are_folded_into_the_scratch_register_the_index_kept() -> None:
    regs = Registers(rbx=LO, rsi=3, fs_base=0x10, rip=IP)
    _, _, reloc = _plan("64814cb32000010000", regs)  # or dword ptr fs:[rbx+rsi*4+0x20], 0x100
    moved = iced.Decoder(64, reloc.code, ip=TRAMP).decode()
    assert moved.memory_index == iced.Register.RSI and moved.memory_index_scale == 4
    assert moved.segment_prefix == iced.Register.NONE and moved.memory_displacement == 0
    ((_, value),) = reloc.sets
    assert value == ALIAS + 0x20 + 0x10  # base, displacement and fs base; the index stays
    assert value + 3 * 4 == ALIAS + (LO + 0x10 + 0x20 + 12 - LO)  # the very byte, aliased


def test_accesses_outside_any_alias_go_through_the_scratch_copy() -> None:
    private = [Traced(LO, HI, 0)]
    regs = Registers(rax=LO + 0x40, rip=IP)
    _, _, reloc = _plan("0f1100", regs, private)  # movups [rax], xmm0
    assert reloc.copy_in == ((LO + 0x40, TRAMP + TRAMP_CODE, 16),)
    assert reloc.copy_out == ((TRAMP + TRAMP_CODE, LO + 0x40, 16),)
    assert reloc.sets[0][1] == TRAMP + TRAMP_CODE
    assert SCRATCH >= 64


def test_a_rep_string_runs_as_far_as_the_mapping_goes_and_comes_back_for_the_rest() -> None:
    regs = Registers(rdi=HI - 8, rcx=10, rax=0x3C, rip=IP)
    _, form, reloc = _plan("f3aa", regs)  # rep stosb
    assert reloc.string and reloc.rep and reloc.elements == 8 and reloc.count == 10
    assert dict(reloc.sets)[WORD["rdi"]] == ALIAS + (HI - 8 - LO)
    assert dict(reloc.sets)[WORD["rcx"]] == 8
    after = regs.replace(rdi=ALIAS + (HI - LO), rcx=0)
    out, done = reloc.after(regs, after, IP + form.length)
    assert done == 8 and out == {"rdi": HI, "rcx": 2, "rip": IP}  # again, for the last 2
    down = Registers(rsi=LO + 3, rdi=0x1000, rcx=100, eflags=EFLAGS_DF, rip=IP)
    _, _, back = _plan("f3a4", down)  # std; rep movsb from traced to untraced
    assert back.elements == 4  # LO+3 .. LO


def test_repe_scas_does_one_element_per_fault_as_a_single_step_would() -> None:
    regs = Registers(rdi=LO, rcx=5, rax=0x3C, rip=IP)
    _, form, reloc = _plan("f3ae", regs)  # repe scasb
    moved = iced.Decoder(64, reloc.code, ip=TRAMP).decode()
    assert not moved.has_repe_prefix and reloc.stripped == 1
    equal = regs.replace(rdi=ALIAS + 1, eflags=1 << 6)
    out, _done = reloc.after(regs, equal, IP + form.length)
    assert out["rcx"] == 4 and out["rip"] == IP and out["rdi"] == LO + 1
    differ = regs.replace(rdi=ALIAS + 1, eflags=0)
    assert reloc.after(regs, differ, IP + form.length)[0]["rip"] == IP + form.length
    assert string_regs(regs, form, 2).rdi == LO + 2


def test_branches_through_traced_memory_are_refused() -> None:
    with pytest.raises(Unsupported):
        _plan("ff10", Registers(rax=LO, rip=IP))  # call [rax]


def test_a_template_is_kept_only_when_the_copy_does_not_depend_on_the_run() -> None:
    regs = Registers(rcx=LO + 0x100, rax=5, rip=IP)
    insn, _form, reloc = _plan("f00fc101", regs)
    words = template(insn, reloc, regs, [(False, LO + 0x100, 4), (True, LO + 0x100, 4)])
    assert words[0] == 1 and words[13] == 2  # kept, two accesses
    assert words[14:20] == [0, 0, 4, 1, 0, 4]  # R then W, at the effective address
    assert words[-4:] == [(1 << 64) - 1, 0, 0, 0]  # no mask
    private = [Traced(LO, HI, 0)]
    insn2, _form2, copied = _plan("0f1100", Registers(rax=LO, rip=IP), private)
    assert template(insn2, copied, regs, [(True, LO, 16)]) == [0]  # a copy: asked each time
