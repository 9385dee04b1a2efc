"""A thread's general registers as a plain value (``struct user_regs_struct`` on x86-64)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

#: Field order of ``struct user_regs_struct`` (``sys/user.h``), which ptrace fills.
USER_REGS_FIELDS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp",
    "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)  # fmt: skip

#: ``EFLAGS.TF`` and ``EFLAGS.DF``.
EFLAGS_TF = 1 << 8
EFLAGS_DF = 1 << 10


class Registers(NamedTuple):
    """General registers of one thread, ``regs.tid`` naming the thread they belong to.

    A named tuple: built from the kernel's words and read field by field at C speed, on the
    path every traced access takes.
    """

    r15: int = 0
    r14: int = 0
    r13: int = 0
    r12: int = 0
    rbp: int = 0
    rbx: int = 0
    r11: int = 0
    r10: int = 0
    r9: int = 0
    r8: int = 0
    rax: int = 0
    rcx: int = 0
    rdx: int = 0
    rsi: int = 0
    rdi: int = 0
    orig_rax: int = 0
    rip: int = 0
    cs: int = 0
    eflags: int = 0
    rsp: int = 0
    ss: int = 0
    fs_base: int = 0
    gs_base: int = 0
    ds: int = 0
    es: int = 0
    fs: int = 0
    gs: int = 0
    tid: int = 0

    @classmethod
    def from_words(cls, words: Iterable[int], tid: int = 0) -> Registers:
        """Build from the 27 words of ``user_regs_struct`` in kernel order."""
        return cls._make((*words, tid))

    def to_words(self) -> tuple[int, ...]:
        return self[:27]

    def replace(self, **changes: int) -> Registers:
        words = list(self)
        for name, value in changes.items():
            words[_INDEX[name]] = value
        return tuple.__new__(Registers, words)

    def get(self, name: str) -> int:
        return int(getattr(self, name))


assert Registers._fields[:-1] == USER_REGS_FIELDS
_INDEX = {name: i for i, name in enumerate(Registers._fields)}
