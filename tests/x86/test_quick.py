"""Quick ops against the general emulator: same address, same access, same registers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmmio.x86 import AccessKind, Registers, decode, emulate
from kmmio.x86.quick import QuickOp, compile_quick

MASK64 = (1 << 64) - 1


class DictBus:
    """Memory that allows everything and remembers every access."""

    def __init__(self, fill: int) -> None:
        self.fill = fill
        self.log: list[tuple[str, int, int, int]] = []

    def can(self, kind: AccessKind, addr: int, width: int) -> bool:
        return True

    def load(self, addr: int, width: int) -> int:
        value = (self.fill * 0x0101010101010101 + addr) & ((1 << (8 * width)) - 1)
        self.log.append(("R", addr, width, value))
        return value

    def store(self, addr: int, width: int, value: int) -> None:
        self.log.append(("W", addr, width, value))


# Opcodes with a ModRM memory operand that compile to a quick op (mov, mov imm, movzx,
# movsx, movsxd, movnti), and the legacy prefixes they keep it with.  (``66 0f c3`` is no
# instruction; with an ``f2`` prefix they take the general path, and with 32-bit
# addressing, as the test after checks.)  Every case generated is compared.
OPCODES = ["88", "89", "8a", "8b", "c6", "c7", "0fb6", "0fb7", "0fbe", "0fbf", "63", "0fc3"]
PREFIXES = ["", "66", "64", "65", "6465"]
QUICK_FORMS = [(p, op) for p in PREFIXES for op in OPCODES if (p, op) != ("66", "0fc3")]


def _encode(prefix: str, rex: list[int], op: str, modrm: int, tail: bytes) -> bytes:
    """The instruction, its ModRM made to name memory (mod 0 to 2; /0 for ``mov r/m, imm``)."""
    modrm = modrm if modrm < 0xC0 else modrm & 0x3F
    if op in ("c6", "c7"):
        modrm &= 0xC7
    return bytes.fromhex(prefix) + bytes(rex) + bytes.fromhex(op) + bytes([modrm]) + tail


rex_prefix = st.lists(st.integers(0x40, 0x4F), max_size=1)
instructions = st.builds(
    lambda form, rex, modrm, tail: _encode(form[0], rex, form[1], modrm, tail),
    st.sampled_from(QUICK_FORMS),
    rex_prefix,
    st.integers(0, 255),
    st.binary(min_size=9, max_size=9),
)
registers = st.lists(st.integers(0, MASK64), min_size=27, max_size=27)


def quick_run(op: QuickOp, words: list[int], bus: DictBus) -> list[int]:
    out = list(words)
    addr = op.address(out)
    if op.write:
        bus.store(addr, op.width, op.value(out))
        op.complete(out)
    else:
        op.complete(out, bus.load(addr, op.width))
    return out


@settings(max_examples=3000, deadline=None)
@given(instructions, registers, st.integers(0, 255))
def test_a_quick_op_does_what_the_emulator_does(code: bytes, words: list[int], fill: int) -> None:
    """Every generated instruction compiles to a quick op, and every one is compared."""
    rip = 0x400000
    words[16] = rip
    form = decode(code, rip)
    op = compile_quick(form)
    assert op is not None, form.text
    regs = Registers.from_words(words, 7)
    general, quick = DictBus(fill), DictBus(fill)
    assert form.plan is not None
    done = emulate(form.plan, form.operands[0].address(regs), regs, general)
    assert done is not None
    after = quick_run(op, words, quick)
    assert quick.log == general.log, form.text
    assert after == list(done.regs.to_words()), form.text


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["67", "6667", "6467"]),
    rex_prefix,
    st.sampled_from(OPCODES),
    st.integers(0, 255),
    st.binary(min_size=9, max_size=9),
)
def test_32_bit_addressing_takes_the_general_path(
    prefix: str, rex: list[int], op: str, modrm: int, tail: bytes
) -> None:
    assert compile_quick(decode(_encode(prefix, rex, op, modrm, tail), 0x400000)) is None


def test_the_common_driver_forms_are_quick() -> None:
    for hexcode in (
        "8b07",  # mov eax,[rdi]
        "8907",  # mov [rdi],eax
        "c7471000000080",  # mov dword [rdi+0x10],0x80000000
        "488b448810",  # mov rax,[rax+rcx*4+0x10]
        "0fb64701",  # movzx eax,byte [rdi+1]
        "8a6701",  # mov ah,[rdi+1]
        "648b042510000000",  # mov eax,fs:[0x10]
        "8b0510000000",  # mov eax,[rip+0x10]
        "66894702",  # mov [rdi+2],ax
    ):
        assert compile_quick(decode(bytes.fromhex(hexcode), 0x1000)) is not None, hexcode


def test_everything_else_takes_the_general_path() -> None:
    for hexcode in (
        "ff37",  # push qword [rdi]
        "f3ab",  # rep stosd
        "0107",  # add [rdi],eax
        "c5fe6f07",  # vmovdqu ymm0,[rdi]
        "678b07",  # mov eax,[edi]: 32-bit addressing
        "f00fb10f",  # lock cmpxchg
    ):
        assert compile_quick(decode(bytes.fromhex(hexcode), 0x1000)) is None, hexcode
