"""The syscall path: syscalls that reach traced memory work as they would untraced.

Armed pages are ``PROT_NONE`` for the kernel as well as for the program: a ``read`` into a
traced buffer, a ``futex`` wait on a traced word would fail with ``EFAULT``.  A spawned
program's seccomp filter stops such syscalls (:mod:`kmmio.syscalls.filters`: the pointer
arguments are compared with the traced ranges, so syscalls on other memory run at full
speed); an attached program stops at every syscall anyway.  At the stop,
:func:`kmmio.syscalls.plan.plan_syscall` decides and this module carries it out:

* **redirect** (shared mappings, nearly always): the pointers go to the mapping's *alias*,
  a second mapping of the same pages inside the program, made once with
  ``mremap(addr, 0, len, MREMAP_MAYMOVE)`` (or by mapping the same file again, for device
  files that refuse that) and kept accessible.  The pages never open: every other thread
  stays traced, and a blocking syscall (a futex wait, a ``read`` on a pipe) holds nobody.
  A shared futex is keyed by the file page, so it is the same futex through either address.
* **lend** (private mappings, which cannot be aliased; a buffer straddling traced and
  untraced memory that no vectored call can split): the pages open for the syscall with
  the other threads held, and close at its exit.
* a syscall kmmio cannot see into (``ioctl``, unknown numbers) has its direct pointers
  redirected; if it still fails with ``EFAULT`` it runs once more with the pages lent.

At the exit the thread gets its own arguments back, what the kernel wrote into copied
structures goes to the program, and each reach into traced memory becomes a ``MARK`` line:
``syscall NAME DIR map ID PHYS+LEN tid TID``.

A thread dying with a robust futex list (``set_robust_list``) whose entries lie in traced
memory stops at ``PTRACE_EVENT_EXIT``: the kernel walks that list after it, so the pages are
lent until the thread is gone, and the next locker gets ``EOWNERDEAD`` as it would untraced.
"""

from __future__ import annotations

import enum
import errno
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass

from kmmio.backend import _ptrace as pt
from kmmio.backend.procmaps import read_maps
from kmmio.engine import Protect, coalesce
from kmmio.errors import KmmioError, TraceeError, TraceeGone
from kmmio.mmiotrace import Mapping, MmioTrace
from kmmio.ptrace.bus import linear_offset
from kmmio.ptrace.process import Process, Thread
from kmmio.robust import robust_marks, robust_reach
from kmmio.syscalls import async_io
from kmmio.syscalls import numbers as nr
from kmmio.syscalls.filters import AUDIT_ARCH_X86_64, MAX_RANGE_FILTERS, range_filter, uncovered
from kmmio.syscalls.plan import Lend, NeedAliases, Redirect, Span, Spans, plan_syscall, touched
from kmmio.syscalls.spec import Class
from kmmio.syscalls.table import SYSCALLS, syscall_name

EFAULT = -errno.EFAULT
_ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
_MREMAP_MAYMOVE = 1
_MAP_SHARED = 1
_O_RDWR, _O_RDONLY, _O_CLOEXEC = 2, 0, 0o2000000
_AT_FDCWD = -100
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_PR_SET_NO_NEW_PRIVS = 38
#: How long a syscall may hold the program's other threads with pages lent to it before
#: they are let go (it may be waiting for one of them).
HOLD_LIMIT = 0.05


class Outcome(enum.Enum):
    """What :meth:`SyscallPath.entry` did with a syscall."""

    #: Nothing: it reaches no traced memory (or is not the path's business).
    NONE = "none"
    #: Redirected or lent: stop the thread at the syscall's exit.
    IN_FLIGHT = "in-flight"
    #: Calls were injected first: the thread goes back to its syscall instruction and
    #: makes the syscall again (another stop), so nothing else is to be done now.
    REWOUND = "rewound"


@dataclass
class InFlight:
    """A syscall of a thread that runs redirected or with pages lent, until its exit."""

    name: str
    nr: int
    args: tuple[int, ...]
    plan: Redirect | Lend
    #: Lent because the redirected run failed with EFAULT: no third run.
    retried: bool = False
    #: It held the other threads too long: they run, its pages are armed again.
    released: bool = False


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


class SyscallPath:
    """Carries out syscall plans for the tracer; see the module docstring."""

    def __init__(self, log: MmioTrace) -> None:
        self.log = log
        #: Processes told about asynchronous I/O on traced memory.
        self._warned: set[int] = set()
        #: Told when a thread starts (and stops) holding its program's other threads.
        self.watch: Callable[[int, bool], None] = lambda tid, on: None
        #: Told which traced mappings a syscall is about to hand the kernel (may refuse).
        self.guard: Callable[[str, list[Mapping]], None] | None = None
        #: Syscalls redirected and lent, for the summary.
        self.redirected = 0
        self.lent = 0

    # -- spans and aliases ----------------------------------------------------------------

    @staticmethod
    def spans(proc: Process) -> Spans:
        out = []
        for m in proc.mappings:
            alias = proc.aliases.get(m.map_id)
            out.append(Span(m.virt, m.end, m.map_id, m.phys, alias, aliasable=m.map_id not in proc.no_alias))
        return Spans(out)

    def make_alias(self, thread: Thread, mapping: Mapping) -> bool:
        """A second mapping of ``mapping``'s pages in the program, accessible, for the kernel.

        ``mremap(addr, 0, len, MREMAP_MAYMOVE)`` where the kernel allows it (shared file
        and shmem mappings); else the same file mapped again, through a file descriptor
        of the program's or by opening its path.  Private mappings have none.
        """
        proc = thread.proc
        entry = next((e for e in read_maps(proc.pid) if e.start <= mapping.virt < e.end), None)
        if entry is None or not entry.shared:
            proc.no_alias.add(mapping.map_id)
            return False
        page = proc.engine.page_size
        skip = mapping.virt & (page - 1)  # a traced part of a mapping need not start a page
        start, length = mapping.virt - skip, (mapping.length + skip + page - 1) & ~(page - 1)
        offset = linear_offset(entry, mapping) - skip
        alias = -errno.EINVAL
        if entry.offset + (start - entry.start) == offset:  # the VMA there is still the mapping's
            alias = proc.inject_syscall(thread, nr.MREMAP, (start, 0, length, _MREMAP_MAYMOVE))
        if alias < 0:
            alias = self._map_again(thread, entry.path, length, mapping.prot, offset)
        if alias < 0:
            proc.no_alias.add(mapping.map_id)
            return True
        alias += skip
        proc.aliases[mapping.map_id] = alias
        proc.alias_ranges[alias - skip] = alias - skip + length
        self._protect_alias(thread, mapping, alias)
        return True

    @staticmethod
    def _protect_alias(thread: Thread, mapping: Mapping, alias: int) -> None:
        """The alias allows what the program's own protection allows, page by page."""
        proc = thread.proc
        engine = proc.engine
        for probe in mapping.probes:
            for page in engine.pages_of(probe):
                rec = engine.pages.get(page)
                prot = rec.saved_prot if rec is not None else mapping.prot
                lo, hi = (
                    max(page, mapping.virt),
                    min(page + (rec.size if rec else engine.page_size), mapping.end),
                )
                proc.inject_syscall(thread, nr.MPROTECT, (alias + lo - mapping.virt, hi - lo, prot & 3))

    def _map_again(self, thread: Thread, path: str, length: int, prot: int, offset: int) -> int:
        """The file at ``path`` mapped again in the program, ``length`` bytes at ``offset``."""
        proc = thread.proc
        prot = 3 if prot & 2 else 1
        fd = self._program_fd(proc.pid, path)
        opened = fd is None
        if fd is None:
            if not path.startswith("/") or path.endswith(" (deleted)"):
                return -errno.ENOENT
            regs = pt.get_regs(thread.tid)
            at = (regs.rsp - 4096 - len(path) - 1) & ~15
            assert proc.mem is not None
            proc.mem.write(at, path.encode() + b"\0")
            flags = (_O_RDWR if prot & 2 else _O_RDONLY) | _O_CLOEXEC
            fd = proc.inject_syscall(thread, 257, (_AT_FDCWD & (1 << 64) - 1, at, flags, 0))
            if fd < 0:
                return fd
        try:
            return proc.inject_syscall(thread, nr.MMAP, (0, length, prot, _MAP_SHARED, fd, offset))
        finally:
            if opened:
                proc.inject_syscall(thread, 3, (fd,))

    @staticmethod
    def _program_fd(pid: int, path: str) -> int | None:
        """One of the program's descriptors open on the file mapped at ``path``."""
        want = pt.file_identity(path)
        if want is None:
            return None
        for fd in pt.open_fds(pid):
            if pt.file_identity(f"/proc/{pid}/fd/{fd}") == want:
                return fd
        return None

    def drop_alias(self, thread: Thread | None, mapping: Mapping) -> None:
        """The mapping ended: its alias goes too (unmapped inside the program if it can)."""
        proc = mapping.proc
        alias = proc.aliases.pop(mapping.map_id, None)
        proc.no_alias.discard(mapping.map_id)
        if alias is None:
            return
        vma = next(((lo, hi) for lo, hi in proc.alias_ranges.items() if lo <= alias < hi), None)
        if vma is None:
            return  # gone already (the program unmapped or replaced it)
        del proc.alias_ranges[vma[0]]
        if thread is not None:
            try:
                proc.inject_syscall(thread, nr.MUNMAP, (vma[0], vma[1] - vma[0]))
            except KmmioError:
                pass

    @staticmethod
    def protect_aliases(thread: Thread, start: int, end: int, prot: int) -> None:
        """The program re-protected ``[start, end)``: the aliases there follow, so that the
        kernel can do through them exactly what it could through the program's pages."""
        proc = thread.proc
        for m in proc.mappings:
            alias = proc.aliases.get(m.map_id)
            lo, hi = max(start, m.virt), min(end, m.end)
            if alias is not None and lo < hi:
                proc.inject_syscall(thread, nr.MPROTECT, (alias + lo - m.virt, hi - lo, prot & 3))

    @staticmethod
    def forget_aliases_in(proc: Process, start: int, end: int) -> None:
        """The program unmapped or replaced ``[start, end)``: aliases there are gone."""
        for vma, vma_end in list(proc.alias_ranges.items()):
            if vma < end and start < vma_end:
                del proc.alias_ranges[vma]
                for key, value in list(proc.aliases.items()):
                    if vma <= value < vma_end:
                        del proc.aliases[key]

    # -- the filter ------------------------------------------------------------------------

    def cover(self, thread: Thread) -> None:
        """Make the program's seccomp filter stop syscalls reaching its traced mappings.

        Spawned programs only (an attached one stops at every syscall).  A filter cannot
        be taken back, so one is added for the ranges no filter looks at yet; after
        :data:`MAX_RANGE_FILTERS` the last one stops every syscall that takes a pointer.
        """
        proc = thread.proc
        if proc.trace_syscalls or proc.covers_all:
            return
        missing = uncovered([(m.virt, m.end) for m in proc.mappings], proc.covered)
        if not missing:
            return
        everything = proc.range_filters + 1 >= MAX_RANGE_FILTERS
        code = range_filter(missing, everything=everything)
        if not self._install(thread, code):
            # The program's filters cannot be joined (a thread with filters of its own):
            # stop at every syscall, as for an attached program.
            proc.trace_syscalls = True
            return
        proc.range_filters += 1
        proc.covered.extend(missing)
        proc.covers_all = everything

    @staticmethod
    def _install(thread: Thread, code: bytes) -> bool:
        """``seccomp(SECCOMP_SET_MODE_FILTER, TSYNC, prog)`` run inside the program."""
        proc = thread.proc
        regs = pt.get_regs(thread.tid)
        at = (regs.rsp - 256 - len(code)) & ~15
        prog = at - 16
        assert proc.mem is not None
        proc.mem.write(prog, struct.pack("<HxxxxxxQ", len(code) // 8, at) + code)
        for _ in range(2):
            ret = proc.inject_syscall(
                thread, nr.SECCOMP, (_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, prog)
            )
            if ret == 0:
                return True
            if ret != -errno.EACCES:
                return False
            # Without CAP_SYS_ADMIN the kernel wants no_new_privs (the program dropped its
            # privileges since it started).
            proc.inject_syscall(thread, 157, (_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return False

    # -- syscall stops ---------------------------------------------------------------------

    def entry(self, thread: Thread, number: int, args: tuple[int, ...], arch: int) -> Outcome:
        """A syscall about to run (its seccomp or entry stop): redirect it, lend it pages,
        or let it be.  The caller resumes the thread."""
        proc = thread.proc
        if arch != AUDIT_ARCH_X86_64 or not proc.mappings:
            return Outcome.NONE
        if thread.kernel is not None:
            # Made again after calls injected for it (pages lent): already in flight.
            return Outcome.IN_FLIGHT
        if number in (nr.EXIT, nr.EXIT_GROUP):
            return self._exiting(thread, number, args)
        if number in (nr.IO_SUBMIT, nr.IO_URING_ENTER):
            self._asynchronous(thread, number, args)
        sc = SYSCALLS.get(number)
        if sc is not None and sc.cls is Class.NONE:
            return Outcome.NONE
        name = syscall_name(number)
        regs = pt.get_regs(thread.tid)
        if thread.retry_lend:  # the kernel met armed pages: run it once more, every page lent
            thread.retry_lend = False
            spans = self.spans(proc)
            first = plan_syscall(sc, number, args, spans, proc.read, regs.rsp)
            touches = first.touches if isinstance(first, Lend | Redirect) else ()
            ranges = tuple((s.start, s.end) for s in spans.spans)
            return self._lend(thread, InFlight(name, number, args, Lend(ranges, touches), retried=True))
        while True:
            plan = plan_syscall(sc, number, args, self.spans(proc), proc.read, regs.rsp)
            if plan is None:
                return Outcome.NONE
            if self.guard is not None:
                reached = (
                    {sp.map_id for sp in plan.spans}
                    if isinstance(plan, NeedAliases)
                    else {t.span.map_id for t in plan.touches}
                )
                self.guard(name, [m for m in proc.mappings if m.map_id in reached])
            if not isinstance(plan, NeedAliases):
                break
            injected = False
            for span in plan.spans:
                mapping = next(m for m in proc.mappings if m.map_id == span.map_id)
                try:
                    injected = self.make_alias(thread, mapping) or injected
                except TraceeGone:
                    raise
                except (KmmioError, OSError):
                    proc.no_alias.add(mapping.map_id)
                    injected = True
            if injected:  # calls ran in the thread: it makes its syscall again
                return Outcome.REWOUND
        flight = InFlight(name, number, args, plan)
        if isinstance(plan, Lend):
            return self._lend(thread, flight)
        try:
            assert proc.mem is not None
            for at, data in plan.writes:
                proc.mem.write(at, data)
        except TraceeError:  # no room below the stack: lend instead
            ranges = tuple((s.start, s.end) for s in self.spans(proc).spans)
            return self._lend(thread, InFlight(name, number, args, Lend(ranges, plan.touches)))
        pt.set_regs(
            thread.tid, regs.replace(orig_rax=plan.nr, **dict(zip(_ARG_REGS, plan.args, strict=True)))
        )
        thread.kernel = flight
        self.redirected += 1
        return Outcome.IN_FLIGHT

    def _asynchronous(self, thread: Thread, number: int, args: tuple[int, ...]) -> None:
        """AIO and io_uring requests reach their buffers later, from the kernel's own
        context, where kmmio cannot redirect them: say so when one points at traced
        memory (it fails with EFAULT, as on any memory the kernel cannot reach)."""
        proc = thread.proc
        spans = self.spans(proc)
        try:
            if number == nr.IO_SUBMIT:
                handed = async_io.aio_requests(proc.read, spans, args[2], args[1])
            else:
                handed = [
                    h
                    for sqes, size in proc.uring_sqes.items()
                    for h in async_io.uring_requests(proc.read, spans, sqes, size // async_io.SQE_SIZE)
                ]
        except TraceeError:
            return
        for h in handed:
            span = spans.at(h.addr)
            if span is None:
                continue
            where = f"map {span.map_id} {span.phys_of(h.addr):#x}+{h.size:#x}"
            self.log.note(
                f"tid {thread.tid}: {h.what} hands traced memory ({where}) to the kernel for "
                "asynchronous I/O: not redirected, the request fails with EFAULT"
            )
            if proc.pid not in self._warned:
                self._warned.add(proc.pid)
                print(
                    f"kmmio: process {proc.pid} hands traced memory to asynchronous I/O ({h.what}, {where}): "
                    "kmmio cannot redirect it, the request fails with EFAULT (the log says each)",
                    file=sys.stderr,
                )

    def _hold(self, thread: Thread) -> None:
        """Stop the program's other threads while pages are lent to ``thread``'s syscall."""
        proc = thread.proc
        if len(proc.threads) > 1 and proc.syscall_holder is None:
            proc.stop_others(thread.tid, proc.queue.append)
            proc.syscall_holder = thread.tid
            self.watch(thread.tid, True)

    def _release(self, thread: Thread) -> None:
        proc = thread.proc
        if proc.syscall_holder == thread.tid:
            proc.syscall_holder = None
            self.watch(thread.tid, False)
            proc.resume_others()

    def overdue(self, thread: Thread) -> None:
        """A syscall has held the other threads too long (it may wait for one of them: a
        pipe they write, a futex they wake): arm its pages again through a held thread
        and let them all go.  If the syscall then meets the armed pages it fails with
        ``EFAULT`` and runs again, lent again."""
        proc, flight = thread.proc, thread.kernel
        if flight is None or proc.syscall_holder != thread.tid:
            return
        queued = {ev.tid for ev in proc.queue}
        helper = next((t for t in proc.threads.values() if t.held and t.tid not in queued), None)
        if helper is None:
            self.watch(thread.tid, True)  # no thread to arm the pages with: wait on
            return
        effects = proc.engine.take_back(thread.tid)
        if effects:
            proc.apply(helper, effects)
        flight.released = True
        self._release(thread)
        self.log.note(
            f"tid {thread.tid} held its other threads {HOLD_LIMIT * 1000:.0f} ms in {flight.name} "
            "with traced pages lent: they run on, the pages armed again"
        )

    def _lend(self, thread: Thread, flight: InFlight) -> Outcome:
        """Open the plan's pages for the syscall, the other threads held until its exit."""
        proc = thread.proc
        assert isinstance(flight.plan, Lend)
        self._hold(thread)
        effects: list[Protect] = []
        for lo, hi in flight.plan.ranges:
            effects.extend(proc.engine.lend(thread.tid, lo, hi))
        thread.kernel = flight
        self.lent += 1
        if not effects:
            return Outcome.IN_FLIGHT
        proc.apply(thread, coalesce(effects))  # injected at the entry: the syscall is made again
        return Outcome.REWOUND

    def exit(self, thread: Thread) -> None:
        """The syscall of an :meth:`entry` that returned True is over (its exit stop)."""
        flight = thread.kernel
        thread.kernel = None
        if flight is None:
            return
        proc = thread.proc
        regs = pt.get_regs(thread.tid)
        ret = _signed(regs.rax)
        plan = flight.plan
        if isinstance(plan, Redirect):
            for src, dst, size, above in plan.copy_back:
                if ret > above:
                    try:
                        assert proc.mem is not None
                        proc.mem.write(dst, proc.read(src, size))
                    except TraceeError:
                        pass
            orig = dict(zip(_ARG_REGS, flight.args, strict=True))
            restored = regs.replace(orig_rax=flight.nr, **orig)
            if ret == EFAULT and plan.retry and self._rewind(thread, restored):
                thread.retry_lend = True
                return
            pt.set_regs(thread.tid, restored)
        else:
            effects = proc.engine.take_back(thread.tid)
            if effects:
                proc.apply(thread, effects, regs)
            self._release(thread)
            if ret == EFAULT and flight.released and self._rewind(thread, regs):
                thread.retry_lend = True  # it met the pages armed again: once more, lent
                return
        self._marks(thread, flight, ret)

    @staticmethod
    def _rewind(thread: Thread, regs: object) -> bool:
        """Make the thread issue its syscall again (its ``syscall`` instruction is 2 bytes
        back); False if that instruction is not there."""
        from kmmio.x86.regs import Registers

        assert isinstance(regs, Registers)
        try:
            insn = thread.proc.read(regs.rip - 2, 2)
        except TraceeError:
            return False
        if insn not in (b"\x0f\x05", b"\xcd\x80"):
            return False
        pt.set_regs(thread.tid, regs.replace(rip=regs.rip - 2, rax=regs.orig_rax))
        return True

    def _marks(self, thread: Thread, flight: InFlight, ret: int) -> None:
        proc = thread.proc

        def read_u32(addr: int) -> int:
            try:
                return int.from_bytes(proc.read(addr, 4), "little")
            except TraceeError:
                return 0

        for span, addr, size, d in touched(flight.plan.touches, ret, read_u32):
            self.log.kernel_access(flight.name, d.value, span.map_id, span.phys_of(addr), size, thread.tid)

    # -- dying threads ----------------------------------------------------------------------

    def _exiting(self, thread: Thread, number: int, args: tuple[int, ...]) -> Outcome:
        """``exit``/``exit_group``: the kernel will walk the thread's robust futex list
        (``exit_robust_list``) as it dies; if the list reaches traced memory, the pages are
        lent until the thread is gone (for ``exit_group``, every traced page: each dying
        thread walks its own list), the other threads held meanwhile."""
        proc = thread.proc
        reached = self._robust_reach(thread)
        if not reached:
            return Outcome.NONE
        spans = self.spans(proc)
        if number == nr.EXIT_GROUP:
            ranges = tuple((s.start, s.end) for s in spans.spans)
        else:
            ranges = tuple((a, a + n) for a, n in reached)
        self._robust_marks(thread, spans, reached)
        thread.robust_handled = True
        return self._lend(thread, InFlight(syscall_name(number), number, args, Lend(ranges, ())))

    def _robust_reach(self, thread: Thread) -> list[tuple[int, int]]:
        """The traced bytes the kernel's walk of the thread's robust list reaches."""
        return robust_reach(thread.tid, thread.proc.read, self.spans(thread.proc))

    def _robust_marks(self, thread: Thread, spans: Spans, reached: list[tuple[int, int]]) -> None:
        for span, a, d in robust_marks(thread.tid, thread.proc.read, spans, reached):
            self.log.kernel_access("robust_list", d.value, span.map_id, span.phys_of(a), 4, thread.tid)

    def thread_exiting(self, thread: Thread) -> None:
        """``PTRACE_EVENT_EXIT`` of a thread that did not die by ``exit``/``exit_group`` (a
        signal killed it): its robust list cannot be walked through armed pages, and no
        call can be injected into a dying thread, so say so."""
        if thread.robust_handled or not thread.proc.mappings:
            return
        reached = self._robust_reach(thread)
        if any(n == 4 for _, n in reached):
            print(
                f"kmmio: thread {thread.tid} died by a signal holding robust futexes in traced memory: "
                "their next lockers may not see EOWNERDEAD",
                file=sys.stderr,
            )

    def thread_gone(self, proc: Process, tid: int) -> None:
        """A thread is gone: pages lent to it close again (through another thread)."""
        effects = proc.engine.thread_removed(tid)
        helper = next((t for t in proc.threads.values() if not t.running and t.tid != tid), None)
        if effects and helper is not None:
            try:
                proc.apply(helper, effects)
            except KmmioError:
                pass
        if proc.syscall_holder == tid:
            proc.syscall_holder = None
            proc.resume_others()
