"""Masked vector accesses touch only the bytes their mask enables; unmasked AVX-512 moves
are emulated with what they zero of the register."""

from __future__ import annotations

import pytest

from kmmio.x86 import AccessKind, Registers, decode, emulate
from kmmio.x86.emulate import Op
from kmmio.x86.operands import Mask, runs

R, W = AccessKind.READ, AccessKind.WRITE
BASE = 0x7000_0000
REGS = Registers(rax=BASE, rdi=BASE + 0x100, rip=0x40_0000)
ALL = (1 << 64) - 1
ALTERNATE = 0x5555_5555_5555_5555


class FakeState:
    """Opmask registers k0-k7 and vector registers zmm0-31 of a thread."""

    def __init__(self, k: dict[int, int] | None = None, v: dict[int, int] | None = None) -> None:
        self.k = k or {}
        self.v = v or {}

    def opmask(self, index: int) -> int:
        return self.k.get(index, 0)

    def read(self, index: int) -> int:
        return self.v.get(index, 0)


def elements(size: int, *values: int) -> int:
    """A vector register holding ``values`` as elements of ``size`` bytes, lowest first."""
    return sum(v << (i * size * 8) for i, v in enumerate(values))


def accesses(hexbytes: str, state: FakeState | None) -> list[tuple[AccessKind, int, int]]:
    form = decode(bytes.fromhex(hexbytes), REGS.rip)
    assert form.known and form.plan is None, form.text
    return [(a.kind, a.addr - BASE, a.width) for a in form.accesses(REGS, state)]


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        (0, []),
        (ALL, [(0, 64)]),
        (ALTERNATE, [(i, 1) for i in range(0, 64, 2)]),
        (1 << 17, [(17, 1)]),
        (0b111 << 4 | 0b11111 << 20, [(4, 3), (20, 5)]),
        (1 << 63 | 1, [(0, 1), (63, 1)]),
    ],
)
def test_runs_of_enabled_bytes(enabled: int, expected: list[tuple[int, int]]) -> None:
    assert runs(enabled) == expected


@pytest.mark.parametrize(
    ("element", "count", "bits", "enabled"),
    [
        (1, 64, 0b1011, 0b1011),
        (2, 32, 0b1011, 0b1100_1111),
        (4, 16, 0b101, 0xF0F),
        (8, 8, 0b10, 0xFF00),
        (8, 8, 0xFF00, 0),  # bits beyond the element count do not count
    ],
)
def test_opmask_bits_enable_whole_elements(element: int, count: int, bits: int, enabled: int) -> None:
    mask = Mask(opmask=1, vector=-1, element=element, count=count)
    assert mask.enabled(FakeState({1: bits})) == enabled


@pytest.mark.parametrize(
    ("k3", "expected"),
    [
        (0, []),
        (ALL, [(W, 0, 64)]),
        (ALTERNATE, [(W, i, 1) for i in range(0, 64, 2)]),
        (1 << 17, [(W, 17, 1)]),
        (0b111 << 4 | 0b11111 << 20, [(W, 4, 3), (W, 20, 5)]),
        (0xFFFF_0100_0000_7C0E, [(W, 1, 3), (W, 10, 5), (W, 40, 1), (W, 48, 16)]),
    ],
)
def test_vmovdqu8_store_logs_each_run_of_enabled_bytes(
    k3: int, expected: list[tuple[AccessKind, int, int]]
) -> None:
    assert accesses("62f17f4b7f00", FakeState({3: k3})) == expected  # vmovdqu8 [rax]{k3},zmm0


def test_masked_moves_of_every_element_size() -> None:
    # vmovdqu16 [rax+0x10]{k2},xmm5: 8 words, bits 1, 2, 4
    assert accesses("62f1ff0a7f6801", FakeState({2: 0b1_0110})) == [(W, 0x12, 4), (W, 0x18, 2)]
    # vmovdqu32 ymm1{k1}{z},[rax]: 8 dwords, bits above 7 ignored
    assert accesses("62f17ea96f08", FakeState({1: 0xFF81})) == [(R, 0, 4), (R, 28, 4)]
    # vmovdqa32 zmm0{k1}{z},[rax]: dwords 1, 2 and 15
    assert accesses("62f17dc96f00", FakeState({1: 0x8006})) == [(R, 4, 8), (R, 60, 4)]
    # vmovdqu64 [rax]{k7},zmm1: qwords 0 and 2
    assert accesses("62f1fe4f7f08", FakeState({7: 0b101})) == [(W, 0, 8), (W, 16, 8)]
    # vmovdqu8 xmm17{k4},[rax]: 16 bytes, a run of 3
    assert accesses("62e17f0c6f08", FakeState({4: 0x1_0000_0E00})) == [(R, 9, 3)]
    # vmovss xmm0{k1},[rax]: one element
    assert accesses("62f17e091000", FakeState({1: 0})) == []
    assert accesses("62f17e091000", FakeState({1: 1})) == [(R, 0, 4)]
    # vpmovdb [rax]{k3},zmm0: 16 dwords stored as 16 bytes, one per mask bit
    assert accesses("62f27e4b3100", FakeState({3: 0b1110_0000_0000_0111})) == [(W, 0, 3), (W, 13, 3)]


def test_compress_and_expand_touch_the_first_popcount_elements() -> None:
    # vpcompressd [rax]{k1},zmm0: three dwords set, wherever they are
    assert accesses("62f27d498b00", FakeState({1: 0b1010_0000_0000_0001})) == [(W, 0, 12)]
    # vpexpandq zmm2{k2},[rax]
    assert accesses("62f2fd4a8910", FakeState({2: 0b1100_0000})) == [(R, 0, 16)]
    assert accesses("62f2fd4a8910", FakeState({2: 0})) == []


def test_vpmaskmov_takes_its_mask_from_sign_bits() -> None:
    signs = elements(4, 0x8000_0000, 0x7FFF_FFFF, 0xFFFF_FFFF, 0, 0x8000_0001, 0x8000_0000, 0, 0x1234_5678)
    # vpmaskmovd [rax],ymm1,ymm0: the mask is ymm1
    assert accesses("c4e2758e00", FakeState(v={1: signs, 0: ALL})) == [(W, 0, 4), (W, 8, 4), (W, 16, 8)]
    # vpmaskmovq xmm3,xmm2,[rax]: two qwords, the second's sign set
    halves = elements(8, 0x7FFF_FFFF_FFFF_FFFF, 1 << 63)
    assert accesses("c4e2e98c18", FakeState(v={2: halves})) == [(R, 8, 8)]
    # vmaskmovps [rax],xmm1,xmm0: all four
    assert accesses("c4e2712e00", FakeState(v={1: elements(4, *[1 << 31] * 4)})) == [(W, 0, 16)]


def test_maskmovdqu_stores_the_bytes_whose_sign_is_set() -> None:
    # maskmovdqu xmm0,xmm1: [rdi], mask bytes in xmm1
    state = FakeState(v={1: elements(1, 0x80, 0xFF, 0x80, 0, 0x7F, 0, 0, 0x80) | 0xF0 << 120})
    assert accesses("660ff7c1", state) == [(W, 0x100, 3), (W, 0x107, 1), (W, 0x10F, 1)]


def test_other_masked_instructions_and_missing_registers_keep_the_full_width() -> None:
    state = FakeState({1: 1})
    assert accesses("62f17549fe00", state) == [(R, 0, 64)]  # vpaddd zmm0{k1},zmm1,[rax]
    assert accesses("62f27d495800", state) == [(R, 0, 4)]  # vpbroadcastd zmm0{k1},[rax]
    assert not decode(bytes.fromhex("62f17549fe00"), 0).masked
    form = decode(bytes.fromhex("62f17f4b7f00"), 0)
    assert form.masked
    assert [(a.addr, a.width) for a in form.accesses(REGS)] == [(BASE, 64)]  # no registers given


class Zmm:
    """zmm0-31 as 512-bit numbers, as :class:`kmmio.x86.emulate.Vectors` wants them."""

    def __init__(self) -> None:
        self.regs = [ALL << 448 | (1 << 448) - 1 - i for i in range(32)]

    def read(self, index: int) -> int:
        return self.regs[index]

    def write(self, index: int, value: int, keep_upper: bool) -> None:
        upper = self.regs[index] >> 128 << 128 if keep_upper else 0
        self.regs[index] = upper | value


class Memory:
    def __init__(self) -> None:
        self.mem = bytearray(range(256)) * 2
        self.log: list[tuple[str, int, int]] = []

    def can(self, kind: AccessKind, addr: int, width: int) -> bool:
        return addr >= BASE and addr - BASE + width <= len(self.mem)

    def load(self, addr: int, width: int) -> int:
        self.log.append(("R", addr - BASE, width))
        return int.from_bytes(self.mem[addr - BASE : addr - BASE + width], "little")

    def store(self, addr: int, width: int, value: int) -> None:
        self.log.append(("W", addr - BASE, width))
        self.mem[addr - BASE : addr - BASE + width] = value.to_bytes(width, "little")


def _emulate(hexbytes: str, addr: int, zmm: Zmm, memory: Memory) -> bool:
    form = decode(bytes.fromhex(hexbytes), 0)
    assert form.plan is not None, form.text
    return emulate(form.plan, addr, REGS, memory, zmm) is not None


@pytest.mark.parametrize(
    ("hexbytes", "reg", "width", "upper"),
    [
        ("62f17d486f08", 1, 64, "zero"),  # vmovdqa32 zmm1,[rax]
        ("62e17f086f08", 17, 16, "zero"),  # vmovdqu8 xmm17,[rax]: bits 128-511 zeroed
        ("62e1fd086e20", 20, 8, "zero"),  # vmovq xmm20,[rax]
        ("c5fe6f08", 1, 32, "zero"),  # vmovdqu ymm1,[rax] (VEX): bits 256-511 zeroed too
        ("f30f6f08", 1, 16, "keep"),  # movdqu xmm1,[rax] (SSE): bits 128-511 kept
    ],
)
def test_unmasked_vector_loads_set_the_register_as_the_cpu(
    hexbytes: str, reg: int, width: int, upper: str
) -> None:
    zmm, memory = Zmm(), Memory()
    before = zmm.regs[reg]
    assert _emulate(hexbytes, BASE + 64, zmm, memory)
    loaded = int.from_bytes(memory.mem[64 : 64 + width], "little")
    kept = before >> 128 << 128 if upper == "keep" else 0
    assert memory.log == [("R", 64, width)] and zmm.regs[reg] == kept | loaded


def test_unmasked_zmm_stores_and_alignment() -> None:
    zmm, memory = Zmm(), Memory()
    assert _emulate("62e1fe487f30", BASE + 3, zmm, memory)  # vmovdqu64 [rax],zmm22
    assert memory.log == [("W", 3, 64)] and memory.load(BASE + 3, 64) == zmm.regs[22]
    assert _emulate("62617c281130", BASE + 1, zmm, memory)  # vmovups [rax],ymm30
    assert memory.load(BASE + 1, 32) == zmm.regs[30] & (1 << 256) - 1
    aligned = decode(bytes.fromhex("62f1fd487f5801"), 0)  # vmovdqa64 [rax+0x40],zmm3
    assert aligned.plan is not None and aligned.plan.align == 64 and aligned.plan.op is Op.VSTORE
    assert emulate(aligned.plan, BASE + 0x20, REGS, memory, zmm) is None  # misaligned: the CPU faults
    assert emulate(aligned.plan, BASE + 0x40, REGS, memory, zmm) is not None


@pytest.mark.parametrize(
    "hexbytes", ["62f17f4b7f00", "62f17dc96f00", "62e17f0c6f08", "c4e2758e00", "62f17e091000"]
)
def test_masked_moves_are_single_stepped(hexbytes: str) -> None:
    assert decode(bytes.fromhex(hexbytes), 0).plan is None
