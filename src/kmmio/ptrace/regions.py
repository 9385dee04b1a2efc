"""Which mappings are traced: ``-m PATTERN`` against ``/proc/PID/maps``, kept right across
``mmap``, ``munmap``, ``mremap``, ``mprotect``, ``shmat``/``shmdt``, fork and exec.

This is the process-tracer counterpart of mmiotrace's ``ioremap``/``iounmap`` hooks: a
mapping that appears and matches gets a map id, a ``MAP`` record and a probe over its
pages; one that goes gets ``UNMAP`` and its probe unregistered.  The program's own
``mprotect`` of traced pages keeps working: the new protection becomes what the pages
are restored to, and they stay armed.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from kmmio.backend import _ptrace as pt
from kmmio.backend.procmaps import MapEntry, kernel_page_size, read_maps
from kmmio.engine import Probe
from kmmio.errors import TraceeError
from kmmio.mmiotrace import Mapping, MmioTrace
from kmmio.patterns import Pattern, match, object_offset, phys_and_info
from kmmio.ptrace import sigsegv
from kmmio.ptrace.process import Process, Thread
from kmmio.ptrace.syscall_path import SyscallPath
from kmmio.syscalls.async_io import IORING_OFF_SQES
from kmmio.syscalls.i386 import RESCAN

if TYPE_CHECKING:
    from kmmio.devices import Place

_WATCHED_EXIT = {
    pt.SYS_MMAP, pt.SYS_MUNMAP, pt.SYS_MREMAP, pt.SYS_MPROTECT, pt.SYS_PKEY_MPROTECT,
    pt.SYS_SHMAT, pt.SYS_SHMDT, pt.SYS_REMAP_FILE_PAGES,
}  # fmt: skip


_RESCAN = RESCAN

_MAP_FIXED = 0x10
_MAP_FIXED_NOREPLACE = 0x100000


def _lookup(saved: dict[int, int], default: int) -> Callable[[int], int]:
    return lambda page: saved.get(page, default)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


class Regions:
    """Keeps each process's traced mappings and their probes in step with its address space."""

    def __init__(
        self,
        patterns: list[str],
        log: MmioTrace,
        on_map: Callable[[Mapping], None] | None = None,
        probes_for: Callable[[Mapping], list[Probe]] | None = None,
        syscalls: SyscallPath | None = None,
    ) -> None:
        self.patterns = [Pattern.parse(p) for p in patterns]
        #: Where a mapped device's bytes are (:func:`kmmio.devices.place`), or ``None``.
        self.place: Callable[[str, int, int, int | None], Place | None] = lambda *a: None
        self.syscalls = syscalls if syscalls is not None else SyscallPath(log)
        self.log = log
        self.on_map = on_map
        self.probes_for = probes_for
        self.matched: set[str] = set()

    def matches(self, entry: MapEntry) -> Pattern | None:
        """The pattern a data mapping (not executable) matches: its path contains it."""
        return match(self.patterns, entry, self.matched)

    # -- syscalls -------------------------------------------------------------------------

    def entry(self, thread: Thread, nr: int, args: tuple[int, ...]) -> None:
        """A syscall about to run: note it if it changes mappings (its exit reconciles them)
        or the SIGSEGV action.  ``nr`` and ``args`` are the x86-64 ones (see
        :func:`kmmio.syscalls.i386.as_x86_64` for a 32-bit call)."""
        wanted = (
            nr in _WATCHED_EXIT or nr == _RESCAN or (nr == pt.SYS_RT_SIGACTION and args[0] == signal.SIGSEGV)
        )
        thread.syscall = nr if wanted else None
        thread.syscall_args = args
        if wanted:
            self._hold_if_needed(thread)

    def _hold_if_needed(self, thread: Thread) -> None:
        """Stop the other threads while this syscall changes traced pages.

        Between the kernel changing the protection (``mprotect``) or replacing the pages
        (``mmap`` with ``MAP_FIXED``) and the tracer arming them again at the syscall's
        exit, another thread could touch them untraced: it is held until then.
        """
        proc = thread.proc
        nr, args = thread.syscall, thread.syscall_args
        if len(proc.threads) < 2 or proc.world_stopped:
            return
        if nr in (pt.SYS_MPROTECT, pt.SYS_PKEY_MPROTECT):
            pass
        elif not (nr == pt.SYS_MMAP and args[3] & (_MAP_FIXED | _MAP_FIXED_NOREPLACE)):
            return
        page = proc.engine.page_size
        if not proc.engine.probes.overlapping(args[0], args[0] + ((args[1] + page - 1) & ~(page - 1))):
            return
        proc.stop_others(thread.tid, proc.queue.append)
        proc.syscall_holder = thread.tid

    def release_hold(self, thread: Thread) -> None:
        proc = thread.proc
        if proc.syscall_holder == thread.tid:
            proc.syscall_holder = None
            proc.resume_others()
            thread.released_others = True

    def syscall_exit(self, thread: Thread) -> None:
        try:
            self._syscall_done(thread)
        finally:
            self.release_hold(thread)

    def _syscall_done(self, thread: Thread) -> None:
        nr = thread.syscall
        args = thread.syscall_args
        thread.syscall = None
        if nr == pt.SYS_RT_SIGACTION:
            sigsegv.sigaction_done(thread, args, _signed(pt.get_rax(thread.tid)))
            return
        if nr == _RESCAN:
            thread.proc.bus.invalidate()
            self.map_range(thread.proc, 0, 1 << 64, thread, 0)
            return
        if nr not in _WATCHED_EXIT:
            return
        regs = pt.get_regs(thread.tid)
        ret = _signed(regs.rax)
        proc = thread.proc
        page = proc.engine.page_size

        def span(n: int) -> int:
            return (n + page - 1) & ~(page - 1)

        # What changed: the copies of the maps and of the code elsewhere still hold.
        if nr in (pt.SYS_MPROTECT, pt.SYS_PKEY_MPROTECT, pt.SYS_MUNMAP, pt.SYS_REMAP_FILE_PAGES):
            proc.bus.invalidate(args[0], args[0] + span(args[1]))
        elif nr == pt.SYS_MMAP and ret >= 0:
            proc.bus.invalidate(ret, ret + span(args[1]))
        elif nr == pt.SYS_MREMAP and ret >= 0:
            proc.bus.invalidate(args[0], args[0] + span(args[1]))
            proc.bus.invalidate(ret, ret + span(args[2]))
        else:
            proc.bus.invalidate()
        if ret < 0:
            return

        forget = self.syscalls.forget_aliases_in
        if nr == pt.SYS_MMAP:
            forget(proc, ret, ret + span(args[1]))
            if args[5] == IORING_OFF_SQES and pt.fd_target(proc.pid, args[4]) == "anon_inode:[io_uring]":
                proc.uring_sqes[ret] = args[1]
            self.unmap_range(proc, ret, ret + span(args[1]), thread, regs.rip)
            fd = args[4] if args[4] < 1 << 31 else None
            self.map_range(proc, ret, ret + span(args[1]), thread, regs.rip, fd=fd)
        elif nr == pt.SYS_MUNMAP:
            forget(proc, args[0], args[0] + span(args[1]))
            for sqes in [a for a in proc.uring_sqes if args[0] <= a < args[0] + span(args[1])]:
                del proc.uring_sqes[sqes]
            self.unmap_range(proc, args[0], args[0] + span(args[1]), thread, regs.rip)
        elif nr == pt.SYS_MREMAP:
            old, old_len, new_len = args[0], span(args[1]), span(args[2])
            forget(proc, ret, ret + new_len)
            saved = self.unmap_range(proc, old, old + old_len, thread, regs.rip)
            moved = {ret + (p - old): prot for p, prot in saved.items()}
            self.map_range(proc, ret, ret + new_len, thread, regs.rip, moved)
        elif nr == pt.SYS_REMAP_FILE_PAGES:
            # Emulated by the kernel with new mappings of the same file: traced anew.
            start, end = args[0], args[0] + span(args[1])
            saved = self.unmap_range(proc, start, end, thread, regs.rip)
            self.map_range(proc, start, end, thread, regs.rip, saved)
        elif nr in (pt.SYS_MPROTECT, pt.SYS_PKEY_MPROTECT):
            start, end = args[0], args[0] + span(args[1])
            effects = proc.engine.set_saved_prot(start, end, args[2] & 7)
            proc.apply(thread, effects)
            self.syscalls.protect_aliases(thread, start, end, args[2] & 7)
        elif nr == pt.SYS_SHMAT:
            end = next((e.end for e in read_maps(proc.pid) if e.start == ret), ret)
            self.map_range(proc, ret, end, thread, regs.rip)
        elif nr == pt.SYS_SHMDT:
            for m in list(proc.mappings):
                if m.virt == args[0]:
                    self.unmap_range(proc, m.virt, m.end, thread, regs.rip)

    # -- mappings ---------------------------------------------------------------------------

    def scan(self, proc: Process, thread: Thread) -> None:
        """Trace every matching mapping that exists now (start of tracing, after exec)."""
        self.map_range(proc, 0, 1 << 64, thread, 0)

    def map_range(
        self,
        proc: Process,
        start: int,
        end: int,
        thread: Thread,
        pc: int,
        inherited: dict[int, int] | None = None,
        fd: int | None = None,
    ) -> None:
        """Trace the matching mappings inside ``[start, end)`` (``fd``: the descriptor
        the program mapped, when known: a VFIO region is found through it)."""
        try:
            entries = read_maps(proc.pid)
        except OSError:
            return
        added = False
        for e in entries:
            lo, hi = max(e.start, start), min(e.end, end)
            pat = self.matches(e) if lo < hi and e.start not in proc.alias_ranges else None
            if pat is None:
                continue
            place = self.place(e.path, e.offset, proc.pid, fd) if not e.anonymous else None
            offset = object_offset(e, place)
            window = pat.window(e, lo, hi, offset)
            if window is None:
                continue
            lo, hi = window
            if any(p for m in proc.mappings for p in m.probes if p.addr < hi and p.end > lo):
                continue
            mapping = self._new_mapping(proc, e, lo, hi, thread, pc, place, offset)
            proc.mappings.append(mapping)
            prot_of = _lookup(inherited or {}, e.prot)
            if self.probes_for is None:
                self._add_probe(proc, mapping, self.log.make_probe(mapping, lo, hi), thread, prot_of)
            else:
                for probe in self.probes_for(mapping):
                    self._add_probe(proc, mapping, self.log.logged(probe, mapping), thread, prot_of)
            if self.on_map is not None:
                self.on_map(mapping)
            added = True
        if added:
            self.syscalls.cover(thread)

    def _new_mapping(
        self,
        proc: Process,
        e: MapEntry,
        lo: int,
        hi: int,
        thread: Thread,
        pc: int,
        place: Place | None,
        start_offset: int,
    ) -> Mapping:
        """The ``MAP`` (and its ``MARK map`` line) of the traced bytes ``[lo, hi)`` of ``e``:
        its physical address where the device is known (``place``: a PCI BAR, a UIO map, a
        VFIO region, ``/dev/mem``), else the file offset, or the virtual address if
        anonymous.  ``start_offset`` is the object offset of ``e.start``: the file offset as
        the program gave it to ``mmap`` (the kernel shows a device mapping's page frame in
        its place in /proc/PID/maps), the virtual address for anonymous memory."""
        offset = start_offset + (lo - e.start)
        phys, info = phys_and_info(e, lo, place, start_offset)
        size = self._page_size(proc, e)
        mapping = self.log.new_mapping(proc, e.path, lo, phys, hi - lo, e.prot, pc, thread.tid, size, info)
        mapping.inode, mapping.offset = e.inode, offset
        return mapping

    @staticmethod
    def _page_size(proc: Process, entry: MapEntry) -> int:
        base = proc.engine.page_size
        if not entry.path.startswith("/") and entry.path != "":
            return base  # [heap], [stack]...: never hugetlbfs
        try:
            return max(kernel_page_size(proc.pid, entry.start), base)
        except (OSError, ValueError):
            return base

    def unmap_range(self, proc: Process, start: int, end: int, thread: Thread, pc: int) -> dict[int, int]:
        """Forget the traced pages in ``[start, end)``; returns their saved protections.

        On huge-page mappings the range widens to whole huge pages, as the kernel's does.
        """
        engine = proc.engine
        removed: dict[int, int] = {}
        whole = (start, end)
        for mapping in list(proc.mappings):
            huge = mapping.page_size - 1
            start, end = whole[0] & ~huge, (whole[1] + huge) & ~huge
            if mapping.end <= start or mapping.virt >= end:
                continue
            for probe in list(mapping.probes):
                if probe.end <= start or probe.addr >= end:
                    continue
                saved = {}
                for page in engine.pages_of(probe):
                    rec = engine.pages.get(page)
                    if rec is not None:
                        saved[page] = rec.saved_prot
                engine.unregister_probe(probe, unmapped=True)
                mapping.probes.remove(probe)
                for page, prot in saved.items():
                    if start <= page < end:
                        removed[page] = prot
                if probe.pre_handler != self.log.pre_handler:
                    continue  # a probe of the API's user: it goes with its pages
                for lo, hi in (
                    (probe.addr, min(start, probe.end)),
                    (max(end, probe.addr), probe.end),
                ):
                    if lo < hi:
                        survivor = self.log.make_probe(mapping, lo, hi)
                        self._add_probe(
                            proc,
                            mapping,
                            survivor,
                            thread,
                            _lookup(saved, mapping.prot),
                        )
            if not mapping.probes:
                proc.mappings.remove(mapping)
                self.syscalls.drop_alias(thread, mapping)
                self._end(mapping, pc, thread.tid)
        return removed

    def _add_probe(
        self,
        proc: Process,
        mapping: Mapping,
        probe: Probe,
        thread: Thread,
        prot_of: Callable[[int], int],
    ) -> None:
        if not probe.page_size:
            probe.page_size = mapping.page_size  # a probe of the API's user
        effects = proc.engine.register_probe(probe, prot_of)
        mapping.probes.append(probe)
        proc.apply(thread, effects)

    def drop_all(self, proc: Process, tid: int) -> None:
        """The address space is gone (exec, exit): every mapping ends, aliases with them."""
        for mapping in proc.mappings:
            self._end(mapping, 0, tid)
        proc.mappings = []
        proc.aliases.clear()
        proc.alias_ranges.clear()
        proc.no_alias.clear()

    def _end(self, mapping: Mapping, pc: int, tid: int) -> None:
        if mapping.view is not None:
            mapping.view.close()
            mapping.view = None
        self.log.end_mapping(mapping, pc, tid)

    def inherit(self, parent: Process, child: Process, twins: dict[Probe, Probe], thread: Thread) -> None:
        """A forked child has the parent's traced mappings, armed: give them their own ids.

        Mappings the child did not get (``MADV_DONTFORK``) are dropped from its engine (one
        it got in part, after ``MADV_DONTFORK`` over some of its pages, stays whole).
        """
        try:
            child.attach_image()
            present = [(e.start, e.end) for e in read_maps(child.pid)]
        except (TraceeError, OSError):
            present = [(m.virt, m.end) for m in parent.mappings]
        # The filters are inherited, and the aliases (shared mappings) too.
        child.covered = list(parent.covered)
        child.range_filters, child.covers_all = parent.range_filters, parent.covers_all
        child.alias_ranges = {
            a: e for a, e in parent.alias_ranges.items() if any(lo <= a < hi for lo, hi in present)
        }
        for mapping in parent.mappings:
            if not any(lo < mapping.end and mapping.virt < hi for lo, hi in present):
                for probe in mapping.probes:
                    child.engine.unregister_probe(twins[probe], unmapped=True)
                continue
            copy = self.log.new_mapping(
                child,
                mapping.path,
                mapping.virt,
                mapping.phys,
                mapping.length,
                mapping.prot,
                0,
                child.pid,
                mapping.page_size,
                mapping.info,
            )
            copy.inode, copy.offset = mapping.inode, mapping.offset
            for probe in mapping.probes:
                twin = twins[probe]
                twin.data = copy
                copy.probes.append(twin)
            child.mappings.append(copy)
            alias = parent.aliases.get(mapping.map_id)
            if alias is not None and any(lo <= alias < hi for lo, hi in child.alias_ranges.items()):
                child.aliases[copy.map_id] = alias
            if mapping.map_id in parent.no_alias:
                child.no_alias.add(copy.map_id)
