"""The register model alone (no library, no file): lookup, decoding, formatting."""

from __future__ import annotations

import random

import pytest

from kmmio.maps import EnumValue, Field, Register, RegisterMap
from kmmio.maps.format import field_number, register_column
from kmmio.maps.model import combine_access

CTRL = Register(
    "dev.CTRL",
    0x100,
    4,
    (
        Field("EN", 0, 1),
        Field("MODE", 2, 2, enums=(EnumValue("SLOW", 0), EnumValue("FAST", 2))),
        Field("MASK", 8, 8),
        Field("DIV", 16, 16),
    ),
)
SHORT = Register("dev.SHORT", 0x104, 2, (Field("LEN", 0, 10), Field("POL", 15, 1)))
WIDE = Register("dev.WIDE", 0x110, 8, (Field("LO", 0, 32), Field("HI", 32, 32)))
MAP = RegisterMap((WIDE, SHORT, CTRL))  # out of order on purpose


def test_registers_are_sorted_by_address() -> None:
    assert [r.path for r in MAP.registers] == ["dev.CTRL", "dev.SHORT", "dev.WIDE"]


def test_lookup_whole_partial_straddling_and_gap() -> None:
    assert [(h.register.path, h.start, h.end, h.whole) for h in MAP.lookup(0x100, 4)] == [
        ("dev.CTRL", 0x100, 0x104, True)
    ]
    (h,) = MAP.lookup(0x101, 1)
    assert (h.lsb, h.msb, h.whole) == (8, 15, False)
    assert [(h.register.path, h.lsb, h.msb) for h in MAP.lookup(0x102, 4)] == [
        ("dev.CTRL", 16, 31),
        ("dev.SHORT", 0, 15),
    ]
    assert MAP.lookup(0x106, 4) == []
    assert MAP.lookup(0x0FF, 1) == [] and MAP.lookup(0x118, 8) == []
    # the last byte of a wide register is found from far below its end
    assert [h.register.path for h in MAP.lookup(0x117, 1)] == ["dev.WIDE"]


def test_lookup_agrees_with_a_scan_of_every_register() -> None:
    rng = random.Random(7)
    regs = []
    for i in range(200):
        size = rng.choice([1, 2, 4, 8, 16])
        regs.append(Register(f"m.R{i}", rng.randrange(0, 0x1000) & ~(size - 1), size))
    regmap = RegisterMap(tuple(regs))
    for _ in range(2000):
        phys, width = rng.randrange(0, 0x1010), rng.choice([1, 2, 4, 8, 16, 32, 64])
        want = sorted(r.path for r in regs if r.address < phys + width and r.end > phys)
        assert sorted(h.register.path for h in regmap.lookup(phys, width)) == want


def test_decode_whole_register_with_enum() -> None:
    d = MAP.decode(0x100, 4, 0x1234_5609)
    assert d.paths == ("dev.CTRL",) and d.register == "dev.CTRL" and d.unmapped == ()
    values = {fv.field.name: (fv.value, fv.enum) for fv in d.registers[0].fields}
    assert values == {"EN": (1, None), "MODE": (2, "FAST"), "MASK": (0x56, None), "DIV": (0x1234, None)}


def test_decode_narrow_access_keeps_the_fields_inside_and_marks_the_cut_ones_partial() -> None:
    d = MAP.decode(0x101, 2, 0xBEEF)  # bits 8..23: MASK whole, DIV cut
    (rv,) = d.registers
    assert rv.value == 0xBEEF << 8
    assert [(fv.field.name, fv.value) for fv in rv.fields] == [("MASK", 0xEF), ("DIV", None)]


def test_decode_straddling_access_and_bytes_no_register_covers() -> None:
    d = MAP.decode(0x102, 8, 0x1122_3344_5566_7788)
    assert d.paths == ("dev.CTRL", "dev.SHORT")
    assert d.unmapped == ((0x106, 4),)
    ctrl, short = d.registers
    assert [(fv.field.name, fv.value) for fv in ctrl.fields] == [("DIV", 0x7788)]
    assert [(fv.field.name, fv.value) for fv in short.fields] == [("LEN", 0x166), ("POL", 0)]  # 0x5566
    assert register_column(d) == "dev.CTRL[31:16],dev.SHORT,?@0x106"


def test_decode_unmapped() -> None:
    d = MAP.decode(0x200, 4, 5)
    assert d.registers == () and d.register is None and d.unmapped == ((0x200, 4),)
    assert register_column(d) == "?@0x200"


def test_overlapping_registers_are_chosen_by_the_kind_of_access() -> None:
    ro = Register("dev.RX", 0x0, 4, (Field("DATA", 0, 32, "r"),), "r")
    wo = Register("dev.TX", 0x0, 4, (Field("DATA", 0, 32, "w"),), "w")
    regmap = RegisterMap((ro, wo))
    assert regmap.decode(0, 4, 1).paths == ("dev.RX", "dev.TX")
    assert regmap.decode(0, 4, 1, "R").paths == ("dev.RX",)
    assert regmap.decode(0, 4, 1, "W").paths == ("dev.TX",)


def test_rebased_and_union() -> None:
    moved = MAP.rebased(0xF000_0000)
    assert moved.decode(0xF000_0100, 4, 0).paths == ("dev.CTRL",)
    assert moved.decode(0x100, 4, 0).paths == ()
    assert MAP.rebased(0) is MAP
    both = RegisterMap.union([MAP, moved])
    assert len(both.registers) == 6
    assert both.decode(0x104, 2, 0).paths == both.decode(0xF000_0104, 2, 0).paths == ("dev.SHORT",)


def test_model_is_frozen() -> None:
    with pytest.raises(AttributeError):
        CTRL.address = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("width", "value", "text"),
    [(1, 1, "1"), (3, 5, "5"), (4, 5, "0x5"), (8, 0, "0x00"), (10, 0x12, "0x012"), (32, 0xABC, "0x00000abc")],
)
def test_field_numbers(width: int, value: int, text: str) -> None:
    assert field_number(width, value) == text


def test_combine_access() -> None:
    assert combine_access(["r", "r"]) == "r"
    assert combine_access(["r", "w"]) == "rw"
    assert combine_access(["w1"]) == "w"
    assert combine_access(["na"]) == "na"
