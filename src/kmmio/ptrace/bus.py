"""Where emulated accesses go: traced pages through a view, other memory through /proc.

:class:`ProcessBus` is the :class:`~kmmio.x86.emulate.Bus` of one traced address space.
An access to traced pages is allowed when every page it touches is armed and its saved
protection (what the program asked for) permits it; it then goes through the mapping's
view (a shadow ``MAP_SHARED`` mapping, exact width).  Any other access (the stack of a
``push``, the RAM side of a ``movs``) goes through ``/proc/PID/mem`` when the program's own
mapping would allow it, judged from a copy of ``/proc/PID/maps`` that the tracer drops
whenever the program maps, unmaps or re-protects anything.
"""

from __future__ import annotations

import bisect
import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kmmio.backend.procmaps import MapEntry, read_maps
from kmmio.backend.shadow import ProcMemView, ShadowView, View
from kmmio.engine import PROT_READ, PROT_WRITE
from kmmio.errors import TraceeError
from kmmio.x86.cache import CodeCache
from kmmio.x86.operands import AccessKind

if TYPE_CHECKING:
    from kmmio.mmiotrace import Mapping
    from kmmio.ptrace.process import Process


def linear_offset(entry: MapEntry, mapping: Mapping) -> int:
    """The object offset of ``mapping.virt``, as the mapping was made (the VMA there now
    may be another part of the same file)."""
    if mapping.inode and entry.inode == mapping.inode:
        return mapping.offset
    return entry.offset + (mapping.virt - entry.start)


class ProcessBus:
    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self._maps: list[MapEntry] | None = None
        self._starts: list[int] = []
        #: Decoded instructions at :meth:`stable_code` addresses, forgotten on change.
        self.code_cache = CodeCache()
        #: Ranges changed since the copy of the maps was read.
        self._dirty: list[tuple[int, int]] = []
        #: Makes a traced mapping's view from the usual maker (:meth:`kmmio.serve.Serving.view`).
        self.serve: Callable[[Mapping, Callable[[Mapping], Any]], Any] | None = None
        #: With ``serve``: the thread and instruction of the access being served.
        self.current = (0, 0)
        #: A shared mapping's alias inside the program (made for the thread at a fault),
        #: the view where the tracer may not open ``/proc/PID/map_files`` (not root).
        self.alias_of: Callable[[Mapping], int | None] | None = None
        #: The thread at the fault being handled (stopped: calls can be made in it).
        self.thread: Any = None

    # -- the copy of /proc/PID/maps -------------------------------------------------------

    def invalidate(self, start: int = 0, end: int = 1 << 64) -> None:
        """The program mapped, unmapped or re-protected ``[start, end)`` (by default
        everything: exec).  What the copies said of other addresses still holds."""
        self.code_cache.forget(start, end)
        if start == 0 and end == 1 << 64:
            self._maps = None
            self._dirty.clear()
        else:
            self._dirty.append((start, end))

    def stable_code(self, pc: int) -> bool:
        """Whether the code at ``pc`` can only change through a syscall the tracer watches.

        True for a private, non-writable file mapping (programs and libraries): its bytes
        change only after ``mprotect``/``mmap``/``munmap``/``mremap`` or exec, each of which
        empties :attr:`code_cache`.  JIT code (anonymous or shared memory, or writable) is
        read again at every fault.
        """
        entry = self._entry(pc)
        return entry is not None and not entry.shared and not entry.anonymous and not entry.prot & PROT_WRITE

    def _entry(self, addr: int, fresh: bool = False) -> MapEntry | None:
        if self._dirty and any(lo <= addr < hi for lo, hi in self._dirty):
            fresh = True
        if self._maps is None or fresh:
            self._dirty.clear()
            try:
                self._maps = read_maps(self.proc.pid)
            except OSError:
                self._maps = []
            self._starts = [e.start for e in self._maps]
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._maps[i].end:
            return self._maps[i]
        return None if fresh else self._entry(addr, fresh=True)

    # -- views of traced mappings ---------------------------------------------------------

    def view(self, mapping: Mapping) -> View | None:
        """The mapping's view, made on first use; ``None`` if the tracer cannot have one."""
        if mapping.view is None and not mapping.view_failed:
            try:
                serve = self.serve
                mapping.view = self._make_view(mapping) if serve is None else serve(mapping, self._make_view)
            except (TraceeError, OSError):
                mapping.view_failed = True
        return mapping.view  # type: ignore[no-any-return]

    def _make_view(self, mapping: Mapping) -> View:
        """A view of the mapping's pages: the file (or shared memory object) behind it,
        mapped from the offset of ``mapping.virt`` at its start.  Any of the program's VMAs
        of that object lends its ``map_files`` entry, also when part of the mapping was
        replaced since by another part of the same file."""
        self._entry(mapping.virt, fresh=True)
        assert self._maps is not None
        same = mapping.inode
        mine = [
            e
            for e in self._maps
            if e.start < mapping.end and mapping.virt < e.end and (not same or e.inode == same)
        ]
        if not mine:
            raise TraceeError("no mapping to view", errno.EFAULT, self.proc.pid)
        entry = mine[0]
        if not entry.shared:
            assert self.proc.mem is not None
            return ProcMemView(self.proc.mem.fd, mapping.virt, mapping.end)
        try:
            if entry.anonymous:
                raise TraceeError("no file behind the mapping", errno.ENODEV, self.proc.pid)
            offset = linear_offset(entry, mapping)
            return ShadowView(self.proc.pid, (entry.start, entry.end), mapping.virt, mapping.end, offset)
        except TraceeError as exc:
            # Not root (map_files needs privilege), or shared anonymous memory: the same
            # pages through an alias the program gets, reached through /proc/PID/mem.
            alias = self.alias_of(mapping) if self.alias_of is not None else None
            if alias is None or self.proc.mem is None:
                raise exc from None
            return ProcMemView(self.proc.mem.fd, mapping.virt, mapping.end, alias - mapping.virt)

    # -- the Bus protocol -----------------------------------------------------------------

    def can(self, kind: AccessKind, addr: int, width: int) -> bool:
        table = self.proc.engine.pages
        need = PROT_READ if kind is AccessKind.READ else PROT_WRITE
        first, last = table.get(addr), table.get(addr + width - 1)
        records = [first] if first is last else [first, last]
        if first is not None or last is not None:
            if not all(r is not None and r.armed and r.count > 0 and r.saved_prot & need for r in records):
                return False
            mapping = self.proc.mapping_at(addr)
            if mapping is None or addr + width > mapping.end:
                return False
            view = self.view(mapping)
            return view is not None and (need == PROT_READ or view.writable)
        entry = self._entry(addr)
        if entry is None or addr + width > entry.end or not entry.prot & need:
            return False
        return self.proc.mem is not None

    def _traced_view(self, addr: int) -> View | None:
        if self.proc.engine.pages.get(addr) is None:
            return None
        mapping = self.proc.mapping_at(addr)
        return mapping.view if mapping is not None else None

    def load(self, addr: int, width: int) -> int:
        view = self._traced_view(addr)
        if view is not None:
            return view.read(addr, width)
        assert self.proc.mem is not None
        return int.from_bytes(os.pread(self.proc.mem.fd, width, addr), "little")

    def store(self, addr: int, width: int, value: int) -> None:
        view = self._traced_view(addr)
        if view is not None:
            view.write(addr, width, value)
            return
        assert self.proc.mem is not None
        os.pwrite(self.proc.mem.fd, value.to_bytes(width, "little"), addr)
