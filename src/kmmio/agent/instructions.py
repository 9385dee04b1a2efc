"""Faulting instructions on the agent backend: what the agent is told to do with each new
one (a quick op's words, or relocation), and each relocated run it asks about: the copy
against the alias (:mod:`kmmio.agent.plan`), the values around it, the records."""

from __future__ import annotations

import sys
from collections.abc import Callable

import iced_x86 as iced

from kmmio.agent.plan import TRAMP_CODE, Unsupported, descriptor, is_movs, relocate, string_regs, template
from kmmio.agent.session import FrameVectors, Pages, Pending, Session, pack, words
from kmmio.backend.procmaps import read_maps
from kmmio.mmiotrace import MmioTrace, now_us
from kmmio.ptrace.faults import Mode, TraceStats
from kmmio.trace.records import Kind
from kmmio.x86.cache import Decoded, Decoder
from kmmio.x86.decode import MAX_INSN_LEN
from kmmio.x86.operands import AccessKind
from kmmio.x86.regs import USER_REGS_FIELDS, Registers

P_RUN, P_GENUINE = 1, 2
_NWORDS = 27
_WORD = {name: i for i, name in enumerate(USER_REGS_FIELDS)}


class InstructionDoor:
    """The tracer's side of faulting instructions; ``drain`` as for :class:`SyscallDoor`."""

    def __init__(self, log: MmioTrace, mode: Mode, stats: TraceStats, drain: Callable[[], int]) -> None:
        self.log = log
        self.mode = mode
        self.stats = stats
        self.drain = drain
        self.decoder = Decoder()
        self._said: set[str] = set()

    def decode(self, s: Session, pc: int, code: bytes) -> list[int]:
        decoded = self.decoder.decode(pc, code[:MAX_INSN_LEN])
        s.forms[pc] = decoded
        try:
            entry = next((e for e in read_maps(s.pid) if e.start <= pc < e.end), None)
        except OSError:
            entry = None
        cacheable = entry is not None and "w" not in entry.perms
        s.cacheable[pc] = cacheable
        return descriptor(decoded, self.mode is not Mode.STEP, cacheable)

    def form(self, s: Session, pc: int) -> Decoded:
        found = s.forms.get(pc)
        if found is None:
            found = s.forms[pc] = self.decoder.decode(pc, s.read(pc, MAX_INSN_LEN))
        return found

    def say(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self.log.note(f"kmmio: {text}")
            print(f"kmmio: {text}", file=sys.stderr)

    def pre(self, s: Session, data: bytes) -> bytes:
        _, tid, tramp, addr, xsize = words(data, 0, 5)
        regs = Registers.from_words(words(data, 40, _NWORDS), tid)
        xsave = data[40 + 8 * _NWORDS : 40 + 8 * _NWORDS + xsize]
        form = self.form(s, regs.rip).form
        vectors = FrameVectors(xsave) if form.masked and xsave else None
        found = form.accesses(regs, vectors) if form.known else []
        insn = iced.Decoder(64, form.code, ip=form.ip).decode()
        try:
            reloc = relocate(insn, form, regs, s.spans(), tramp, [(a.addr, a.width) for a in found], addr)
        except Unsupported as exc:
            self.say(f"cannot perform in the program: {exc} (the program gets the fault)")
            return pack([P_GENUINE, 0])
        for src, dst, n in reloc.copy_in:
            s.write(dst, s.read(src, n))
        traced = [(a, m) for a in found if (m := s.mapping_at(a.addr, a.width)) is not None]
        reads = [
            int.from_bytes(s.read(a.addr, a.width), "little") if a.kind is AccessKind.READ else 0
            for a, _ in traced
        ]
        s.pending[tid] = Pending(reloc, form, insn, regs, reads, traced, addr)
        code = reloc.code + bytes(-len(reloc.code) % 8)
        assert len(reloc.code) < TRAMP_CODE
        sets = [w for pair in reloc.sets for w in pair]
        keep = [0]
        if (
            s.cacheable.get(regs.rip)
            and self.mode is not Mode.STEP
            and form.known
            and all(op.bit_offset is None for op in form.operands)
        ):
            if not form.masked:
                listed = [(a.kind is AccessKind.WRITE, a.addr, a.width) for a, _ in traced]
                keep = template(insn, reloc, regs, listed)
            elif len(form.operands) == 1:
                op = form.operands[0]  # the masked operand, whole: the agent finds its bytes
                keep = template(insn, reloc, regs, [(op.writes, op.address(regs), op.width)], op.mask)
        return pack([P_RUN, len(reloc.sets), *sets, len(reloc.code)]) + code + pack(keep)

    def post(self, s: Session, data: bytes) -> bytes:
        _, tid = words(data, 0, 2)
        after = Registers.from_words(words(data, 16, _NWORDS), tid)
        p = s.pending.pop(tid)
        for src, dst, n in p.reloc.copy_out:
            s.write(dst, s.read(src, n))
        out, done = p.reloc.after(p.regs, after, p.form.ip + p.form.length)
        self.drain()
        self.stats.stepped += 1
        ts = now_us()
        pc = p.regs.rip
        if p.reloc.string:
            self.string_records(s, p, done, tid, ts)
        elif not p.accesses:
            m = s.mapping_at(p.addr)
            if m is not None:
                self.log.unknown(m.mapping, p.addr, p.form.code, pc, tid)
        else:
            for (a, m), before in zip(p.accesses, p.reads, strict=True):
                if a.kind is AccessKind.READ:
                    value = before
                else:
                    value = int.from_bytes(s.read(a.addr, a.width), "little")
                kind = Kind.READ if a.kind is AccessKind.READ else Kind.WRITE
                self.log.record(kind, a.width, a.addr, value, pc, tid, m.mapping, p.form, ts)
        sets = [w for name, value in out.items() for w in (_WORD[name], value)]
        return pack([len(out), *sets])

    def string_records(self, s: Session, p: Pending, done: int, tid: int, ts: int) -> None:
        """The records of ``done`` elements of a relocated string instruction, in program
        order: element ``k``'s accesses are the first element's moved on by ``k`` steps.
        Values are read after the run (a ``movs`` read is what it wrote)."""
        first = p.form.accesses(p.regs)
        step = string_regs(p.regs, p.form, 1).rsi - p.regs.rsi if done > 1 else 0
        dst = string_regs(p.regs, p.form, 0).rdi
        movs = is_movs(p.insn)
        pages = Pages(s)
        pc = p.regs.rip
        for k in range(done):
            shift = k * step
            for a in first:
                addr = (a.addr + shift) & 0xFFFFFFFFFFFFFFFF
                m = s.mapping_at(addr, a.width)
                if m is None:
                    continue
                if a.kind is AccessKind.READ and movs:
                    value = pages.read((dst + shift) & 0xFFFFFFFFFFFFFFFF, a.width)
                else:
                    value = pages.read(addr, a.width)
                kind = Kind.READ if a.kind is AccessKind.READ else Kind.WRITE
                self.log.record(kind, a.width, addr, value, pc, tid, m.mapping, p.form, ts)
