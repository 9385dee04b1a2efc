"""A table of decoder cases: bytes and registers → accesses (kind, address, width)."""

from __future__ import annotations

import pytest

from kmmio.x86 import AccessKind, Registers, decode

R, W = AccessKind.READ, AccessKind.WRITE
BASE = 0x7000_0000
REGS = Registers(
    rax=BASE,
    rbx=BASE + 0x100,
    rcx=3,
    rsi=BASE + 0x10,
    rdi=BASE + 0x20,
    rsp=0x7FFF_0000,
    fs_base=0x5000_0000,
    rip=0x40_0000,
)

CASES = [
    # bytes, description, [(kind, offset from BASE or absolute, width)]
    ("8808", "mov [rax],cl", [(W, BASE, 1)]),
    ("668908", "mov [rax],cx", [(W, BASE, 2)]),
    ("8908", "mov [rax],ecx", [(W, BASE, 4)]),
    ("488908", "mov [rax],rcx", [(W, BASE, 8)]),
    ("c60001", "mov byte [rax],1", [(W, BASE, 1)]),
    ("48c7400801000000", "mov qword [rax+8],1 (REX.W C7: width 8)", [(W, BASE + 8, 8)]),
    (
        "c7448b1078563412",
        "mov dword [rbx+rcx*4+0x10],imm (SIB)",
        [(W, BASE + 0x100 + 12 + 0x10, 4)],
    ),
    ("8a08", "mov cl,[rax]", [(R, BASE, 1)]),
    ("0fb608", "movzx ecx,byte [rax]", [(R, BASE, 1)]),
    ("0fbf08", "movsx ecx,word [rax]", [(R, BASE, 2)]),
    ("486308", "movsxd rcx,dword [rax]", [(R, BASE, 4)]),
    ("f30f6f00", "movdqu xmm0,[rax]", [(R, BASE, 16)]),
    ("c5fe7f00", "vmovdqu [rax],ymm0", [(W, BASE, 32)]),
    ("0f2b00", "movntps [rax],xmm0", [(W, BASE, 16)]),
    ("0fc308", "movnti [rax],ecx", [(W, BASE, 4)]),
    ("800801", "or byte [rax],1", [(R, BASE, 1), (W, BASE, 1)]),
    ("0108", "add [rax],ecx", [(R, BASE, 4), (W, BASE, 4)]),
    ("8708", "xchg [rax],ecx", [(R, BASE, 4), (W, BASE, 4)]),
    ("f00fc108", "lock xadd [rax],ecx", [(R, BASE, 4), (W, BASE, 4)]),
    ("f0480fb10b", "lock cmpxchg [rbx],rcx", [(R, BASE + 0x100, 8), (W, BASE + 0x100, 8)]),
    ("ff00", "inc dword [rax]", [(R, BASE, 4), (W, BASE, 4)]),
    ("0fab08", "bts [rax],ecx (ecx=3: same dword)", [(R, BASE, 4), (W, BASE, 4)]),
    ("480fba2805", "bts qword [rax],5", [(R, BASE, 8), (W, BASE, 8)]),
    ("8508", "test [rax],ecx", [(R, BASE, 4)]),
    ("66833807", "cmp word [rax],7", [(R, BASE, 2)]),
    ("ff30", "push qword [rax]", [(R, BASE, 8), (W, 0x7FFF_0000 - 8, 8)]),
    ("8f00", "pop qword [rax]", [(R, 0x7FFF_0000, 8), (W, BASE, 8)]),
    ("a4", "movsb", [(R, BASE + 0x10, 1), (W, BASE + 0x20, 1)]),
    ("f3a5", "rep movsd (one element per step)", [(R, BASE + 0x10, 4), (W, BASE + 0x20, 4)]),
    ("48ab", "stosq", [(W, BASE + 0x20, 8)]),
    ("f3aa", "rep stosb", [(W, BASE + 0x20, 1)]),
    ("66ad", "lodsw", [(R, BASE + 0x10, 2)]),
    ("a6", "cmpsb", [(R, BASE + 0x10, 1), (R, BASE + 0x20, 1)]),
    ("f3ae", "repe scasb", [(R, BASE + 0x20, 1)]),
    ("648b042510000000", "mov eax,fs:[0x10]", [(R, 0x5000_0010, 4)]),
    ("8b0510000000", "mov eax,[rip+0x10]", [(R, 0x40_0006 + 0x10, 4)]),
    ("678b00", "mov eax,[eax] (32-bit address)", [(R, BASE & 0xFFFFFFFF, 4)]),
    ("0f1800", "prefetchnta [rax]: no access", []),
    ("488d00", "lea rax,[rax]: no access", []),
]


@pytest.mark.parametrize(("hexbytes", "desc", "expected"), CASES, ids=[c[1] for c in CASES])
def test_decode_table(hexbytes: str, desc: str, expected: list[tuple[AccessKind, int, int]]) -> None:
    form = decode(bytes.fromhex(hexbytes), REGS.rip)
    assert form.known, desc
    got = [(a.kind, a.addr, a.width) for a in form.accesses(REGS)]
    assert got == expected


def test_bit_offset_register_reaches_beyond_the_operand() -> None:
    form = decode(bytes.fromhex("0fab08"), 0)  # bts [rax],ecx
    assert [a.addr for a in form.accesses(REGS.replace(rcx=40))] == [BASE + 4, BASE + 4]
    assert [a.addr for a in form.accesses(REGS.replace(rcx=(1 << 64) - 1))] == [BASE - 4] * 2


def test_vsib_gather_and_invalid_bytes_are_unknown() -> None:
    assert not decode(bytes.fromhex("c4e26990048a"), 0).known  # vpgatherdd
    bad = decode(bytes.fromhex("0f0b0f0b")[:0] + b"\x06", 0)
    assert not bad.known
