"""The emulator without a process: a dict is the memory, a set says what may be touched."""

from __future__ import annotations

import pytest

from kmmio.x86 import AccessKind, Registers, decode, emulate
from kmmio.x86.emulate import AF, CF, OF, PF, SF, ZF, alu

R, W = AccessKind.READ, AccessKind.WRITE
BASE = 0x10000


class FakeBus:
    def __init__(self, allowed: range = range(BASE, BASE + 0x1000)) -> None:
        self.mem: dict[int, int] = {}
        self.allowed = allowed
        self.log: list[tuple[str, int, int]] = []

    def can(self, kind: AccessKind, addr: int, width: int) -> bool:
        return addr in self.allowed and addr + width - 1 in self.allowed

    def load(self, addr: int, width: int) -> int:
        self.log.append(("R", addr, width))
        return sum(self.mem.get(addr + i, 0) << (8 * i) for i in range(width))

    def store(self, addr: int, width: int, value: int) -> None:
        self.log.append(("W", addr, width))
        for i in range(width):
            self.mem[addr + i] = (value >> (8 * i)) & 0xFF


def run(hexbytes: str, regs: Registers, bus: FakeBus):  # type: ignore[no-untyped-def]
    form = decode(bytes.fromhex(hexbytes), regs.rip)
    assert form.plan is not None, form.text
    return emulate(form.plan, form.operands[0].address(regs), regs, bus)


REGS = Registers(
    rax=BASE, rbx=0x1122334455667788, rcx=0, rsi=BASE, rdi=BASE + 0x100, rsp=0x7000, rip=0x400000
)


def test_store_and_loads_write_registers_as_the_cpu() -> None:
    bus = FakeBus()
    out = run("891800", REGS, bus)  # mov [rax],ebx
    assert bus.log == [("W", BASE, 4)] and out.regs.rip == 0x400002
    assert bus.load(BASE, 4) == 0x55667788
    out = run("8a38", REGS.replace(rdi=0xAAAAAAAAAAAAAAAA), bus)  # mov bh,[rax]
    assert out.regs.rbx == (REGS.rbx & ~0xFF00) | 0x8800
    out = run("8b08", REGS.replace(rcx=0xFFFFFFFFFFFFFFFF), bus)  # mov ecx,[rax]: clears the upper half
    assert out.regs.rcx == 0x55667788
    out = run("0fbe08", REGS, bus)  # movsx ecx,byte [rax]
    assert out.regs.rcx == 0xFFFFFF88
    out = run("486308", REGS, bus)  # movsxd rcx,[rax]
    assert out.regs.rcx == 0x55667788
    out = run("660fb608", REGS.replace(rcx=0xFFFF0000), bus)  # movzx cx,byte [rax]
    assert out.regs.rcx == 0xFFFF0088


def test_push_and_pop_move_the_stack() -> None:
    bus = FakeBus(range(0x6000, BASE + 0x1000))
    bus.store(BASE, 8, 0xABCDEF)
    out = run("ff30", REGS, bus)  # push qword [rax]
    assert decode(bytes.fromhex("f20f1100"), 0).plan.op.value == "vstore"  # type: ignore[union-attr]
    assert out.regs.rsp == 0x7000 - 8 and bus.load(0x7000 - 8, 8) == 0xABCDEF
    out = run("8f4008", out.regs, bus)  # pop qword [rax+8]
    assert out.regs.rsp == 0x7000 and bus.load(BASE + 8, 8) == 0xABCDEF


def test_rep_stos_makes_partial_progress_and_stops_where_refused() -> None:
    bus = FakeBus(range(BASE, BASE + 0x10))
    out = run("f3ab", REGS.replace(rdi=BASE + 8, rcx=5, rax=0x01020304), bus)  # rep stosd
    assert [a.addr for a, _ in out.accesses] == [BASE + 8, BASE + 12]
    assert out.regs.rcx == 3 and out.regs.rdi == BASE + 16 and out.regs.rip == REGS.rip  # not done yet


def test_rep_movs_backwards_finishes() -> None:
    bus = FakeBus()
    for i in range(4):
        bus.store(BASE + i, 1, 0x41 + i)
    regs = REGS.replace(rsi=BASE + 3, rdi=BASE + 0x103, rcx=4, eflags=0x400)  # DF set
    out = run("f3a4", regs, bus)
    assert out.regs.rcx == 0 and out.regs.rip == REGS.rip + 2
    assert [bus.load(BASE + 0x100 + i, 1) for i in range(4)] == [0x41, 0x42, 0x43, 0x44]
    assert [k.kind for k, _ in out.accesses] == [R, W] * 4


def test_refused_access_has_no_side_effect() -> None:
    bus = FakeBus(range(0))
    assert run("ff30", REGS, bus) is None and bus.log == []
    assert run("800801", REGS, bus) is None  # or byte [rax],1


class FakeVectors:
    def __init__(self) -> None:
        self.regs = [(1 << 256) - 1 - i for i in range(16)]

    def read(self, index: int) -> int:
        return self.regs[index]

    def write(self, index: int, value: int, keep_upper: bool) -> None:
        upper = self.regs[index] >> 128 << 128 if keep_upper else 0
        self.regs[index] = upper | value


ONES = (1 << 256) - 1


@pytest.mark.parametrize(
    ("hexbytes", "addr", "expect"),
    [
        ("f30f6f08", BASE + 1, (ONES >> 128 << 128) | 0x77),  # movdqu xmm1,[rax]: upper ymm kept
        ("c5fa6f08", BASE + 1, 0x77),  # vmovdqu xmm1,[rax]: the rest zeroed
        ("c5fe6f08", BASE + 1, 0x77),  # vmovdqu ymm1,[rax]
        ("f30f7e08", BASE + 1, (ONES >> 128 << 128) | 0x77),  # movq xmm1,[rax]: bits 64-127 zeroed
    ],
)
def test_vector_loads(hexbytes: str, addr: int, expect: int) -> None:
    bus, vec = FakeBus(), FakeVectors()
    bus.store(addr, 1, 0x77)
    form = decode(bytes.fromhex(hexbytes), 0)
    assert form.plan is not None
    out = emulate(form.plan, addr, REGS, bus, vec)
    assert out is not None and vec.regs[1] == expect


def test_vector_store_and_alignment() -> None:
    bus, vec = FakeBus(), FakeVectors()
    vec.regs[2] = int.from_bytes(bytes(range(32)), "little")
    store = decode(bytes.fromhex("c5fe7f10"), 0)  # vmovdqu [rax],ymm2
    assert store.plan is not None and emulate(store.plan, BASE, REGS, bus, vec) is not None
    assert bus.load(BASE, 32) == vec.regs[2]
    aligned = decode(bytes.fromhex("660f6f08"), 0)  # movdqa xmm1,[rax]: misaligned faults on the CPU
    assert aligned.plan is not None and emulate(aligned.plan, BASE + 8, REGS, bus, vec) is None
    assert emulate(aligned.plan, BASE + 16, REGS, bus, None) is None  # no registers given


@pytest.mark.parametrize("hexbytes", ["f00108", "8708", "0fc108", "0fab08", "a6", "f2ae", "0f6f00"])
def test_atomics_mmx_bits_and_compares_of_strings_go_the_kmmio_way(hexbytes: str) -> None:
    assert decode(bytes.fromhex(hexbytes), 0).plan is None


@pytest.mark.parametrize(
    ("name", "a", "b", "width", "flags_in", "result", "flags"),
    [
        ("add", 0x7F, 1, 1, 0, 0x80, SF | OF | AF),
        ("add", 0xFF, 1, 1, 0, 0, CF | ZF | PF | AF),
        ("sub", 0, 1, 4, 0, 0xFFFFFFFF, CF | SF | PF | AF),
        ("cmp", 0x80000000, 1, 4, 0, 0x7FFFFFFF, OF | AF | PF),
        ("and", 0xF0, 0x0F, 1, CF | OF, 0, ZF | PF),
        ("inc", 0xFFFF, 0, 2, CF, 0, ZF | PF | AF | CF),
        ("dec", 0, 0, 8, 0, (1 << 64) - 1, SF | PF | AF),
        ("neg", 0x80, 0, 1, 0, 0x80, CF | OF | SF),
        ("not", 0x0F, 0, 1, ZF | 2, 0xF0, ZF | 2),
    ],
)
def test_alu_flags(name: str, a: int, b: int, width: int, flags_in: int, result: int, flags: int) -> None:
    assert alu(name, a, b, width, flags_in) == (result, flags)
