"""One address space running the agent, as the agent backend's tracer keeps it: its socket,
its traced pieces and their aliases, the instructions it asked about, what is in flight;
and the program's memory, reached through ``/proc/PID/mem`` (traced bytes through the
agent's aliases)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import iced_x86 as iced

from kmmio.agent.plan import Relocation, Traced
from kmmio.backend.xstate import ThreadVectors
from kmmio.mmiotrace import Mapping
from kmmio.syscalls.plan import Plan, Span, Spans
from kmmio.x86.cache import Decoded
from kmmio.x86.decode import InstructionForm
from kmmio.x86.operands import MemAccess
from kmmio.x86.regs import Registers


def words(data: bytes, offset: int = 0, count: int | None = None) -> list[int]:
    n = (len(data) - offset) // 8 if count is None else count
    return list(struct.unpack_from(f"<{n}Q", data, offset))


def pack(words: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(words)}Q", *(w & 0xFFFFFFFFFFFFFFFF for w in words))


class FrameVectors(ThreadVectors):
    """The vector and opmask registers saved in a signal frame (XSAVE standard layout, as
    ``NT_X86_XSTATE`` gives them): what a masked access's mask is read from."""

    def __init__(self, data: bytes) -> None:
        super().__init__(0)
        self._data = bytearray(data)

    def flush(self) -> None:  # read only
        pass


@dataclass
class AgentMapping:
    """A traced mapping in one session, with where the agent aliased it."""

    mapping: Mapping
    #: The bytes traced (a pattern's window may start or end inside a page).
    lo: int
    hi: int
    #: Where the agent aliased the armed pages, ``[base, end)``, the window's whole pages.
    alias: int = 0

    @property
    def base(self) -> int:
        return self.lo & ~0xFFF

    @property
    def end(self) -> int:
        return (self.hi + 0xFFF) & ~0xFFF


@dataclass
class Pending:
    reloc: Relocation
    form: InstructionForm
    insn: iced.Instruction
    regs: Registers
    reads: list[int]
    accesses: list[tuple[MemAccess, AgentMapping]]
    addr: int


@dataclass
class Session:
    """One address space running the agent."""

    pid: int
    sock: socket.socket
    #: The traced pieces (a mapping partly unmapped or replaced keeps its id in its pieces).
    mappings: list[AgentMapping] = field(default_factory=list)
    forms: dict[int, Decoded] = field(default_factory=dict)
    #: Whether the code at an address cannot change (not in a writable mapping).
    cacheable: dict[int, bool] = field(default_factory=dict)
    pending: dict[int, Pending] = field(default_factory=dict)
    #: Syscalls run for a thread, waiting for their result.
    syscalls: dict[int, tuple[str, Plan]] = field(default_factory=dict)
    mem: int = -1
    #: What the agent's seccomp filters in the process look at (they outlive exec).
    covered: list[tuple[int, int]] = field(default_factory=list)
    filters: int = 0
    covers_all: bool = False

    def syscall_spans(self) -> Spans:
        return Spans(
            [
                Span(
                    m.lo,
                    m.hi,
                    m.mapping.map_id,
                    m.mapping.phys,
                    m.alias + (m.lo - m.base) if m.alias else None,
                    aliasable=bool(m.alias),
                )
                for m in self.mappings
            ]
        )

    def spans(self) -> list[Traced]:
        return [Traced(m.base, m.end, m.alias) for m in self.mappings]

    def mapping_at(self, addr: int, width: int = 1) -> AgentMapping | None:
        for m in self.mappings:
            if m.lo < addr + width and addr < m.hi:
                return m
        return None

    def _pieces(self, addr: int, n: int) -> list[tuple[int, int, int]]:
        """``[addr, addr + n)`` as (offset, length, where to reach it): traced bytes through
        the agent's alias (their pages are PROT_NONE; the kernel writes no shared page
        through ``/proc/PID/mem`` without write permission), the rest where they are."""
        out = []
        at = addr
        while at < addr + n:
            m = next((m for m in self.mappings if m.alias and m.base <= at < m.end), None)
            if m is None:
                nxt = min((m.base for m in self.mappings if m.alias and m.base > at), default=addr + n)
                end = min(addr + n, nxt)
                out.append((at - addr, end - at, at))
            else:
                end = min(addr + n, m.end)
                out.append((at - addr, end - at, m.alias + (at - m.base)))
            at = end
        return out

    def read(self, addr: int, n: int) -> bytes:
        data = bytearray(n)
        for off, length, where in self._pieces(addr, n):
            with contextlib.suppress(OSError):
                data[off : off + length] = os.pread(self.mem, length, where).ljust(length, b"\0")
        return bytes(data)

    def write(self, addr: int, data: bytes) -> None:
        for off, length, where in self._pieces(addr, len(data)):
            with contextlib.suppress(OSError):
                os.pwrite(self.mem, data[off : off + length], where)


class Pages:
    """The program's memory read a page at a time and kept for one relocated run (a
    ``rep`` string instruction's elements are read from one ``pread`` a page)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.pages: dict[int, bytes] = {}

    def read(self, addr: int, n: int) -> int:
        out = bytearray()
        while n:
            base = addr & ~0xFFF
            page = self.pages.get(base)
            if page is None:
                page = self.pages[base] = self.s.read(base, 0x1000)
            take = min(n, base + 0x1000 - addr)
            out += page[addr - base : addr - base + take]
            addr, n = addr + take, n - take
        return int.from_bytes(out, "little")
