"""A small assembler for classic BPF, the language of seccomp filters (pure).

Programs are written with labels; conditional jumps whose target lies more than 255
instructions away (classic BPF keeps ``jt``/``jf`` in a byte) are relaxed into a short
conditional jump over one or two unconditional ones (``ja`` takes 32 bits).  The result is
the bytes of a ``struct sock_filter`` array, ready for ``seccomp(SECCOMP_SET_MODE_FILTER)``.

Only what seccomp accepts is offered: word loads from ``struct seccomp_data``, the scratch
memory, the accumulator's ALU operations, jumps and returns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# struct seccomp_data: nr (int), arch (u32), instruction_pointer (u64), args[6] (u64).
NR = 0
ARCH = 4
IP = 8


def arg_lo(i: int) -> int:
    """Offset of the low 32 bits of syscall argument ``i`` in ``seccomp_data``."""
    return 16 + 8 * i


def arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


_LD_ABS = 0x20
_LD_IMM = 0x00
_LD_MEM = 0x60
_LDX_MEM = 0x61
_ST = 0x02
_ADD_K, _ADD_X, _MUL_K = 0x04, 0x0C, 0x24
_TAX = 0x07
_JA = 0x05
_JEQ_K, _JGT_K, _JGE_K, _JGE_X = 0x15, 0x25, 0x35, 0x3D
_RET_K = 0x06

#: ``struct sock_filter`` is 8 bytes: code, jt, jf, k.
_INSN = struct.Struct("<HBBI")
#: The kernel's limit on one program (``BPF_MAXINSNS``).
MAX_INSNS = 4096


@dataclass(frozen=True, slots=True)
class _Op:
    code: int
    k: int = 0


@dataclass(frozen=True, slots=True)
class _Jump:
    """A conditional jump; a target of ``None`` falls through to the next instruction."""

    code: int
    k: int
    jt: str | None
    jf: str | None


@dataclass(frozen=True, slots=True)
class _Goto:
    target: str


@dataclass(frozen=True, slots=True)
class _Label:
    name: str


_Item = _Op | _Jump | _Goto | _Label


class Program:
    """A classic BPF program under construction."""

    def __init__(self) -> None:
        self._items: list[_Item] = []
        self._next = 0

    def label(self, hint: str = "L") -> str:
        """A fresh label name (place it with :meth:`place`)."""
        self._next += 1
        return f"{hint}{self._next}"

    def place(self, name: str) -> None:
        self._items.append(_Label(name))

    # -- instructions -------------------------------------------------------------------

    def load(self, offset: int) -> None:
        """``A = seccomp_data[offset]`` (a 32-bit word)."""
        self._items.append(_Op(_LD_ABS, offset))

    def load_imm(self, k: int) -> None:
        self._items.append(_Op(_LD_IMM, k & 0xFFFFFFFF))

    def load_mem(self, slot: int) -> None:
        self._items.append(_Op(_LD_MEM, slot))

    def loadx_mem(self, slot: int) -> None:
        self._items.append(_Op(_LDX_MEM, slot))

    def store(self, slot: int) -> None:
        """``M[slot] = A``."""
        self._items.append(_Op(_ST, slot))

    def add(self, k: int) -> None:
        self._items.append(_Op(_ADD_K, k & 0xFFFFFFFF))

    def add_x(self) -> None:
        self._items.append(_Op(_ADD_X))

    def mul(self, k: int) -> None:
        self._items.append(_Op(_MUL_K, k & 0xFFFFFFFF))

    def tax(self) -> None:
        self._items.append(_Op(_TAX))

    def ret(self, value: int) -> None:
        self._items.append(_Op(_RET_K, value))

    def goto(self, target: str) -> None:
        self._items.append(_Goto(target))

    def jeq(self, k: int, jt: str | None, jf: str | None = None) -> None:
        self._items.append(_Jump(_JEQ_K, k & 0xFFFFFFFF, jt, jf))

    def jgt(self, k: int, jt: str | None, jf: str | None = None) -> None:
        self._items.append(_Jump(_JGT_K, k & 0xFFFFFFFF, jt, jf))

    def jge(self, k: int, jt: str | None, jf: str | None = None) -> None:
        self._items.append(_Jump(_JGE_K, k & 0xFFFFFFFF, jt, jf))

    def jge_x(self, jt: str | None, jf: str | None = None) -> None:
        self._items.append(_Jump(_JGE_X, 0, jt, jf))

    # -- assembly -----------------------------------------------------------------------

    def assemble(self) -> bytes:
        """The program's bytes; ``ValueError`` if a label is missing or it is too long."""
        items = self._items
        # How many instructions each item takes: conditional jumps grow while far.
        sizes = [0 if isinstance(it, _Label) else 1 for it in items]
        while True:
            where, labels = self._layout(sizes)
            changed = False
            for i, it in enumerate(items):
                if isinstance(it, _Jump):
                    need = 1 + sum(
                        1 for t in (it.jt, it.jf) if t is not None and labels[t] - (where[i] + 1) > 255
                    )
                    if need != sizes[i]:
                        sizes[i] = max(need, sizes[i])
                        changed = True
            if not changed:
                break
        out = bytearray()
        for i, it in enumerate(items):
            pos = where[i]
            if isinstance(it, _Op):
                out += _INSN.pack(it.code, 0, 0, it.k)
            elif isinstance(it, _Goto):
                out += _INSN.pack(_JA, 0, 0, self._distance(labels, it.target, pos))
            elif isinstance(it, _Jump):
                out += self._jump(it, pos, sizes[i], labels)
        if len(out) // 8 > MAX_INSNS:
            raise ValueError(f"BPF program of {len(out) // 8} instructions is too long")
        return bytes(out)

    def _layout(self, sizes: list[int]) -> tuple[list[int], dict[str, int]]:
        where, labels, pos = [], {}, 0
        for it, size in zip(self._items, sizes, strict=True):
            where.append(pos)
            if isinstance(it, _Label):
                labels[it.name] = pos
            pos += size
        return where, labels

    @staticmethod
    def _distance(labels: dict[str, int], target: str, pos: int) -> int:
        if target not in labels:
            raise ValueError(f"BPF label {target!r} is never placed")
        d = labels[target] - (pos + 1)
        if d < 0:
            raise ValueError(f"BPF jump to {target!r} goes backwards")
        return d

    def _jump(self, it: _Jump, pos: int, size: int, labels: dict[str, int]) -> bytes:
        if size == 1:
            jt = self._distance(labels, it.jt, pos) if it.jt is not None else 0
            jf = self._distance(labels, it.jf, pos) if it.jf is not None else 0
            return _INSN.pack(it.code, jt, jf, it.k)
        # Far: the conditional jump lands on one of the ``ja`` that follow it.
        out = bytearray()
        far = [t for t in (it.jt, it.jf) if t is not None and labels[t] - (pos + 1) > 255]
        slots = {t: n for n, t in enumerate(far)}  # ja number n sits at pos + 1 + n
        after = len(far)  # falling through skips the ja instructions

        def short(t: str | None) -> int:
            if t is None:
                return after
            if t in slots:
                return slots[t]
            return labels[t] - (pos + 1)

        jt, jf = short(it.jt), short(it.jf)
        if max(jt, jf) > 255:
            raise ValueError("BPF jump relaxation failed")
        out += _INSN.pack(it.code, jt, jf, it.k)
        for n, t in enumerate(far):
            out += _INSN.pack(_JA, 0, 0, labels[t] - (pos + 1 + n + 1))
        return bytes(out)


def run(code: bytes, data: bytes) -> int:
    """Interpret a program on a ``seccomp_data`` (64 bytes): its return value.

    The tests' reference: the kernel runs the same bytes.
    """
    insns = [_INSN.unpack_from(code, i) for i in range(0, len(code), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        op, jt, jf, k = insns[pc]
        pc += 1
        if op == _LD_ABS:
            a = struct.unpack_from("<I", data, k)[0]
        elif op == _LD_IMM:
            a = k
        elif op == _LD_MEM:
            a = mem[k]
        elif op == _LDX_MEM:
            x = mem[k]
        elif op == _ST:
            mem[k] = a
        elif op == _ADD_K:
            a = (a + k) & 0xFFFFFFFF
        elif op == _ADD_X:
            a = (a + x) & 0xFFFFFFFF
        elif op == _MUL_K:
            a = (a * k) & 0xFFFFFFFF
        elif op == _TAX:
            x = a
        elif op == _RET_K:
            return int(k)
        elif op == _JA:
            pc += k
        elif op in (_JEQ_K, _JGT_K, _JGE_K, _JGE_X):
            b = x if op == _JGE_X else k
            cond = a == b if op == _JEQ_K else a > b if op == _JGT_K else a >= b
            pc += jt if cond else jf
        else:
            raise ValueError(f"unknown BPF opcode {op:#x}")
