"""Decoded instructions, computed once and kept (pure: bytes in, values out).

What to do for one faulting instruction (its accesses, widths, registers, and, for a plain
load or store, the compiled :class:`~kmmio.x86.quick.QuickOp` a backend executes) depends
only on its bytes and address: :class:`Decoder` computes it once per (address, bytes).
:class:`CodeCache` keeps one address space's instructions by address alone, for code the
driver knows cannot change without it seeing (a private read-only file mapping), so that
the hot path reads no code at all; the driver forgets ranges when they may have changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmmio.x86.decode import InstructionForm, decode
from kmmio.x86.quick import QuickOp, compile_quick


@dataclass(frozen=True, slots=True)
class Decoded:
    """One instruction: its form, and its quick op if it is a plain load or store."""

    form: InstructionForm
    quick: QuickOp | None


class Decoder:
    """Instructions by (address, bytes), decoded once; shared by every address space."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._known: dict[tuple[int, bytes], Decoded] = {}

    def decode(self, pc: int, code: bytes) -> Decoded:
        """The instruction whose bytes start ``code`` (up to 15 of them) at ``pc``."""
        key = (pc, bytes(code))
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= self.limit:
                self._known.clear()
            form = decode(code, pc)
            found = self._known[key] = Decoded(form, compile_quick(form))
        return found


class CodeCache:
    """One address space's instructions by address, while its code cannot change.

    ``epoch`` counts the times entries were forgotten: what was learned from them (a
    backend's copy of the quick ops) is stale when it moved.
    """

    def __init__(self) -> None:
        self._by_pc: dict[int, Decoded] = {}
        self.epoch = 0

    def get(self, pc: int) -> Decoded | None:
        return self._by_pc.get(pc)

    def keep(self, pc: int, decoded: Decoded) -> None:
        self._by_pc[pc] = decoded

    def forget(self, start: int = 0, end: int = 1 << 64) -> None:
        """The code in ``[start, end)`` may have changed (by default: all of it)."""
        if start == 0 and end == 1 << 64:
            stale = list(self._by_pc)
        else:
            stale = [pc for pc in self._by_pc if start <= pc < end]
        for pc in stale:
            del self._by_pc[pc]
        if stale:
            self.epoch += 1

    def __len__(self) -> int:
        return len(self._by_pc)
