"""What to do with a syscall that reaches traced memory (pure).

Armed pages are ``PROT_NONE`` for the kernel too, so a syscall handed a pointer into them
would fail with ``EFAULT`` (or stop short).  :func:`plan_syscall` looks at one syscall at its
entry, given its number and arguments, the traced spans of the address space and a way to
read the program's memory, and answers with one of:

* ``None``: it reaches no traced byte; let it run.
* :class:`NeedAliases`: it does, through mappings that have no alias in the program yet;
  the driver makes them and asks again.
* :class:`Redirect`: run it through the aliases.  Every pointer into a traced span is
  replaced by the same place in the span's *alias*, a second mapping of the same pages that
  stays accessible (shared mappings only); structures holding such pointers (``iovec``
  arrays, ``msghdr``, ``futex_waitv``) are copied to scratch room below the thread's stack
  with the pointers replaced; a buffer straddling traced and untraced memory in
  ``read``/``write``/``pread64``/``pwrite64`` becomes the vectored call over its pieces.  No
  page opens, so every other thread stays traced, and a blocking syscall holds nobody.
* :class:`Lend`: what cannot be redirected (private mappings have no alias; a straddling
  buffer of another syscall): open the pages for the syscall while the program's other
  threads are held.

Either way the plan carries :class:`Touch` records: which traced bytes the kernel reads or
writes, resolved to ``MARK`` lines by :func:`touched` once the result is known.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kmmio.syscalls.filters import UNSIZED_REACH, merged
from kmmio.syscalls.spec import ArgLen, Buf, Dir, Fixed, Iov, MMsg, Msg, Opaque, Syscall, Unsized, Waitv
from kmmio.syscalls.table import ARG_COUNTS

Reader = Callable[[int, int], bytes]

#: The red zone below a thread's stack pointer that leaf code may use (x86-64 ABI).
RED_ZONE = 128
#: The most scratch room a plan takes below the stack.
MAX_SCRATCH = 64 * 1024
#: The most iovecs the kernel takes in one call (``UIO_MAXIOV``).
IOV_MAX = 1024

_IOVEC = struct.Struct("<QQ")
_MSGHDR = struct.Struct("<QI4xQQQQI4x")  # name, namelen, iov, iovlen, control, controllen, flags
_MMSG_SIZE = 64
_WAITV = struct.Struct("<QQII")

# Syscalls a straddling buffer turns into: (vectored number, buffer arg, length arg).
_VECTORED = {0: 19, 1: 20, 17: 295, 18: 296}  # read, write, pread64, pwrite64 -> readv...
_SENDTO, _RECVFROM, _SENDMSG, _RECVMSG = 44, 45, 46, 47
#: Syscalls whose data buffer (argument 1) may straddle: they have a form taking iovecs.
_SPLITTABLE = {*_VECTORED, _SENDTO, _RECVFROM}
_FUTEX = 202
_IOCTL = 16


@dataclass(frozen=True, slots=True)
class Span:
    """A traced mapping of the address space: ``[start, end)``, its map id and physical
    start (for the log), and its alias (the same pages at another address, accessible), if
    it has one yet; ``aliasable`` says whether it can have one (shared mappings)."""

    start: int
    end: int
    map_id: int
    phys: int
    alias: int | None = None
    aliasable: bool = True

    def phys_of(self, addr: int) -> int:
        return self.phys + (addr - self.start)

    def alias_of(self, addr: int) -> int:
        assert self.alias is not None
        return self.alias + (addr - self.start)


@dataclass(frozen=True, slots=True)
class Touch:
    """Traced bytes a syscall reaches: ``size`` bytes at ``addr`` (``None``: unknown).

    ``counted``: the bytes moved are counted by the result (``"ret"``) or by a 32-bit
    number the kernel writes at an address (``mmsghdr.msg_len``), from ``offset`` on in
    the stream of the buffers; otherwise all of it, when the syscall ran.
    """

    span: Span
    addr: int
    size: int | None
    dir: Dir
    counted: str | int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class NeedAliases:
    spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Redirect:
    """Run the syscall with ``nr`` and ``args`` (all six) after writing ``writes`` into the
    program; after it, copy ``copy_back`` (source, destination, size, and the result it
    needs: copied when the result is above it) and give the thread its own arguments
    back.  ``retry`` asks for a second run with the pages lent if the result is
    ``EFAULT`` (pointers kmmio could not see)."""

    nr: int
    args: tuple[int, ...]
    writes: tuple[tuple[int, bytes], ...]
    copy_back: tuple[tuple[int, int, int, int], ...]
    touches: tuple[Touch, ...]
    retry: bool = False


@dataclass(frozen=True, slots=True)
class Lend:
    """Open ``ranges`` of traced pages for the syscall, the other threads held."""

    ranges: tuple[tuple[int, int], ...]
    touches: tuple[Touch, ...]


Plan = NeedAliases | Redirect | Lend | None


class Spans:
    """The traced spans of one address space, sorted, for lookups by address."""

    def __init__(self, spans: Sequence[Span]) -> None:
        self.spans = sorted(spans, key=lambda s: s.start)
        self._starts = [s.start for s in self.spans]

    def __bool__(self) -> bool:
        return bool(self.spans)

    def at(self, addr: int) -> Span | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.spans[i].end:
            return self.spans[i]
        return None

    def pieces(self, lo: int, hi: int) -> list[tuple[int, int, Span | None]]:
        """``[lo, hi)`` cut where traced spans begin and end: ``(lo, hi, span or None)``."""
        out: list[tuple[int, int, Span | None]] = []
        i = max(bisect.bisect_right(self._starts, lo) - 1, 0)
        pos = lo
        while pos < hi:
            while i < len(self.spans) and self.spans[i].end <= pos:
                i += 1
            if i == len(self.spans) or self.spans[i].start >= hi:
                out.append((pos, hi, None))
                break
            s = self.spans[i]
            if s.start > pos:
                out.append((pos, s.start, None))
                pos = s.start
            end = min(s.end, hi)
            out.append((pos, end, s))
            pos = end
        return out

    def reaches(self, lo: int, hi: int) -> bool:
        return any(s is not None for _, _, s in self.pieces(lo, hi))


class _Cannot(Exception):
    """The syscall cannot be redirected: lend the pages instead."""


@dataclass
class _Builder:
    """One plan being made."""

    spans: Spans
    read: Reader
    sp: int
    args: list[int]
    nr: int
    writes: dict[int, bytes] = field(default_factory=dict)
    copy_back: list[tuple[int, int, int, int]] = field(default_factory=list)
    touches: list[Touch] = field(default_factory=list)
    lend: list[tuple[int, int]] = field(default_factory=list)
    missing: dict[int, Span] = field(default_factory=dict)
    changed: bool = False
    cannot: bool = False
    #: How many arguments the syscall takes (the rest are whatever the registers held).
    nargs: int = 6
    #: A straddling data buffer to cut into pieces: ``(pointer, size)``.
    split: tuple[int, int] | None = None
    retry: bool = False
    _top: int = 0

    def __post_init__(self) -> None:
        self._top = self.sp - RED_ZONE

    # -- scratch and aliases ------------------------------------------------------------

    def scratch(self, data: bytes) -> int:
        """Room below the stack holding ``data`` (replaceable with :meth:`put`); its address."""
        self._top = (self._top - len(data)) & ~15
        if self.sp - self._top > MAX_SCRATCH or self.spans.reaches(self._top, self.sp):
            raise _Cannot()
        self.writes[self._top] = data
        return self._top

    def put(self, at: int, data: bytes) -> None:
        self.writes[at] = data

    def alias(self, span: Span, addr: int) -> int:
        """Where ``addr`` of ``span`` is reached without a fault; ``_Cannot`` if nowhere."""
        if not span.aliasable:
            raise _Cannot()
        if span.alias is None:
            self.missing[span.start] = span
            return addr
        return span.alias_of(addr)

    def traced(self, lo: int, hi: int) -> None:
        """Bytes the kernel reaches in traced memory: lent if the syscall cannot be redirected."""
        for a, b, s in self.spans.pieces(lo, hi):
            if s is not None:
                self.lend.append((a, b))

    def touch(self, lo: int, size: int | None, d: Dir, counted: str | int | None = None, at: int = 0) -> None:
        """Record the traced parts of ``[lo, lo + size)`` (``size`` None: from ``lo`` on)."""
        if size is None:
            s = self.spans.at(lo)
            if s is not None:
                self.touches.append(Touch(s, lo, None, d, counted, at))
            return
        for a, b, s in self.spans.pieces(lo, lo + size):
            if s is not None:
                self.touches.append(Touch(s, a, b - a, d, counted, at + (a - lo)))

    # -- pointers -------------------------------------------------------------------------

    def pointer(self, ptr: int, size: int | None) -> int:
        """The value to pass for a pointer to ``size`` bytes: itself, or the alias.

        ``_Cannot`` when the bytes straddle traced and untraced memory (or two spans).
        """
        if size is None:
            s = self.spans.at(ptr)
            if s is None:
                if self.spans.reaches(ptr, ptr + UNSIZED_REACH):
                    self.traced(ptr, ptr + UNSIZED_REACH)
                    raise _Cannot()  # may run into a traced span: lend
                return ptr
            self.traced(ptr, s.end)
            return self.alias(s, ptr)
        if size <= 0:
            return ptr
        parts = self.spans.pieces(ptr, ptr + size)
        if len(parts) == 1:
            s = parts[0][2]
            if s is None:
                return ptr
            self.traced(ptr, ptr + size)
            return self.alias(s, ptr)
        self.traced(ptr, ptr + size)
        raise _Cannot()

    def iovecs(self, entries: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """iovecs with every traced piece pointing at its alias (cut where spans begin/end)."""
        out: list[tuple[int, int]] = []
        for base, length in entries:
            if length == 0 or base == 0:
                out.append((base, length))
                continue
            for a, b, s in self.spans.pieces(base, base + length):
                if s is None:
                    out.append((a, b - a))
                else:
                    self.traced(a, b)
                    out.append((self.alias(s, a), b - a))
        if len(out) > IOV_MAX:
            raise _Cannot()
        return out


def _extent(extent: Fixed | ArgLen | Unsized, args: Sequence[int]) -> int | None:
    if isinstance(extent, Fixed):
        return extent.size
    if isinstance(extent, ArgLen):
        return min(args[extent.arg] * extent.scale, 1 << 47)
    return None


def _futex_bufs(args: Sequence[int]) -> list[Buf]:
    """The pointers of ``futex(uaddr, op, val, timeout or val2, uaddr2, val3)`` by operation."""
    cmd = args[1] & 0x7F
    wait, wake, key, update = Dir.READS, Dir.ACCESSES, Dir.ACCESSES, Dir.UPDATES
    first = {0: wait, 1: wake, 3: key, 4: wait, 5: key, 6: update, 7: update, 8: update, 9: wait,
             10: wake, 11: wait, 12: wait, 13: update}  # fmt: skip
    second = {3: key, 4: key, 5: update, 11: update, 12: update}
    bufs = [Buf(0, first.get(cmd, Dir.ACCESSES), Fixed(4))]
    if cmd in (0, 6, 9, 11, 13):
        bufs.append(Buf(3, Dir.READS, Fixed(16)))
    if cmd in second:
        bufs.append(Buf(4, second[cmd], Fixed(4)))
    return bufs


def _ioctl_uses(args: Sequence[int]) -> tuple[object, ...]:
    """``ioctl(fd, request, arg)``: a request encoded with ``_IOC`` says how many bytes at
    ``arg`` the kernel reads (``_IOW``) or writes (``_IOR``); structures may hold more."""
    request = args[1] & 0xFFFFFFFF
    size, d = (request >> 16) & 0x3FFF, request >> 30
    if not size or not d:
        return (Opaque(),)
    way = {1: Dir.READS, 2: Dir.WRITES, 3: Dir.UPDATES}[d]
    return (Buf(2, way, Fixed(size)), Opaque())


def plan_syscall(
    sc: Syscall | None, nr: int, args: Sequence[int], spans: Spans, read: Reader, sp: int
) -> Plan:
    """The plan for syscall ``nr(*args)`` (``sc`` its table entry, ``None`` if unknown)."""
    if not spans:
        return None
    b = _Builder(spans, read, sp, list(args), nr)
    uses: tuple[object, ...] = (Opaque(),) if sc is None else sc.uses
    if nr == _FUTEX:
        uses = tuple(_futex_bufs(args))
    elif nr == _IOCTL:
        uses = _ioctl_uses(args)
    b.nargs = ARG_COUNTS.get(sc.name, 6) if sc is not None else 6
    try:
        _plan_uses(b, uses, args)
        if b.split is not None:
            _vectored(b, *b.split)
    except _Cannot:
        b.cannot = True
    if not b.lend and not b.touches:
        return None
    if b.cannot:
        return Lend(_merge(b.lend), tuple(b.touches))
    if b.missing:
        return NeedAliases(tuple(b.missing.values()))
    if not b.changed:
        return None
    return Redirect(
        b.nr, tuple(b.args), tuple(sorted(b.writes.items())), tuple(b.copy_back), tuple(b.touches), b.retry
    )


def _plan_uses(b: _Builder, uses: Sequence[object], args: Sequence[int]) -> None:
    described: set[int] = set()
    for use in uses:
        planner = _PLANNERS.get(type(use))
        if planner is not None:
            described.add(use.arg)  # type: ignore[attr-defined]
            planner(b, use, args)
    if any(isinstance(u, Opaque) for u in uses):
        b.retry = True
        for i, value in enumerate(args[: b.nargs]):
            if i in described:
                continue
            s = b.spans.at(value)
            if s is None:
                continue
            b.touch(value, None, Dir.ACCESSES)
            b.traced(value, s.end)
            b.args[i] = b.alias(s, value)
            b.changed = True


def _buf(b: _Builder, use: Buf, args: Sequence[int]) -> None:
    ptr = args[use.arg]
    if ptr == 0:
        return
    size = _extent(use.extent, args)
    if size is None:
        if b.spans.at(ptr) is None and not b.spans.reaches(ptr, ptr + UNSIZED_REACH):
            return
        b.touch(ptr, None, use.dir)
    else:
        if not b.spans.reaches(ptr, ptr + size):
            return
        b.touch(ptr, size, use.dir, "ret" if use.counted else None)
    try:
        new = b.pointer(ptr, size)
    except _Cannot:
        if b.nr in _SPLITTABLE and use.arg == 1 and size is not None:
            b.split = (ptr, size)  # made vectored once every argument is planned
            return
        raise
    if new != ptr:
        b.args[use.arg] = new
        b.changed = True


def _vectored(b: _Builder, ptr: int, size: int) -> None:
    """A straddling data buffer, cut where traced memory begins and ends: ``read``,
    ``write``, ``pread64``, ``pwrite64`` become ``readv``... over the pieces, ``recvfrom``
    and ``sendto`` become ``recvmsg``/``sendmsg`` (same result for files, pipes and
    sockets)."""
    pieces = b.iovecs([(ptr, size)])
    iov = b.scratch(b"".join(_IOVEC.pack(base, n) for base, n in pieces))
    fd = b.args[0]
    if b.nr in _VECTORED:
        offset = b.args[3] if b.nr in (17, 18) else 0
        b.args = [fd, iov, len(pieces), offset, 0, 0]
        b.nr = _VECTORED[b.nr]
    else:
        flags, name, namelen = b.args[3], b.args[4], b.args[5]
        length_at = 0
        if b.nr == _RECVFROM and name and namelen:  # namelen points at a socklen_t
            length_at = namelen
            namelen = int.from_bytes(b.read(_program_address(b, namelen), 4), "little")
        elif not name:
            namelen = 0
        hdr = b.scratch(_MSGHDR.pack(name, namelen, iov, len(pieces), 0, 0, 0))
        if length_at:
            b.copy_back.append((hdr + 8, _program_address(b, length_at), 4, -1))
        b.args = [fd, hdr, flags, 0, 0, 0]
        b.nr = _RECVMSG if b.nr == _RECVFROM else _SENDMSG
    b.changed = True


def _read_iovecs(b: _Builder, at: int, count: int) -> list[tuple[int, int]]:
    raw = b.read(at, 16 * count)
    return [_IOVEC.unpack_from(raw, 16 * i) for i in range(count)]


def _iovec_array(
    b: _Builder, at: int, count: int, d: Dir, counted: str | int, offset: int
) -> tuple[int, int] | None:
    """An iovec array's replacement in scratch room, ``(address, count)``; ``None`` if it
    needs none.  Touches of traced buffers are recorded ``offset`` bytes into the stream."""
    if count <= 0 or count > IOV_MAX or at == 0:
        return None
    raw = b.read(at, 16 * count)
    entries = [_IOVEC.unpack_from(raw, 16 * i) for i in range(count)]
    array_traced = b.spans.reaches(at, at + 16 * count)
    if array_traced:
        b.touch(at, 16 * count, Dir.READS)
        b.traced(at, at + 16 * count)
    pos = offset
    for base, length in entries:
        if base and length:
            b.touch(base, length, d, counted, pos)
        pos += length
    if not array_traced and not any(b.spans.reaches(base, base + n) for base, n in entries if base and n):
        return None
    pieces = b.iovecs(entries)
    return b.scratch(b"".join(_IOVEC.pack(base, n) for base, n in pieces)), len(pieces)


def _iov(b: _Builder, use: Iov, args: Sequence[int]) -> None:
    new = _iovec_array(b, args[use.arg], args[use.count], use.dir, "ret" if use.counted else "all", 0)
    if new is not None:
        b.args[use.arg], b.args[use.count] = new
        b.changed = True


#: The fields of a msghdr the kernel writes back (``recvmsg``): offset and size.
_WRITTEN_BACK = ((8, 4), (40, 8), (48, 4))


def _msghdr(b: _Builder, at: int, d: Dir, counted: str | int) -> bytes | None:
    """A ``struct msghdr``'s replacement bytes (pointers to aliases), or ``None``."""
    raw = b.read(at, _MSGHDR.size)
    name, namelen, iov, iovlen, control, controllen, flags = _MSGHDR.unpack(raw)
    changed = b.spans.reaches(at, at + _MSGHDR.size)
    if changed:
        b.touch(at, _MSGHDR.size, Dir.UPDATES if d is Dir.WRITES else Dir.READS)
        b.traced(at, at + _MSGHDR.size)
    if name and namelen and b.spans.reaches(name, name + namelen):
        b.touch(name, namelen, d)
        name = b.pointer(name, namelen)
        changed = True
    if control and controllen and b.spans.reaches(control, control + controllen):
        b.touch(control, controllen, d)
        control = b.pointer(control, controllen)
        changed = True
    new_iov = _iovec_array(b, iov, iovlen, d, counted, 0)
    if new_iov is not None:
        iov, iovlen = new_iov
        changed = True
    if not changed:
        return None
    return _MSGHDR.pack(name, namelen, iov, iovlen, control, controllen, flags)


def _write_back(
    b: _Builder, copy: int, original: int, fields: Sequence[tuple[int, int]], above: int = -1
) -> None:
    """After the syscall, give the program what the kernel wrote into the copy (when the
    result is above ``above``: success, or the entry was one of those received)."""
    for off, size in fields:
        b.copy_back.append((copy + off, _program_address(b, original + off), size, above))


def _msg(b: _Builder, use: Msg, args: Sequence[int]) -> None:
    at = args[use.arg]
    if at == 0:
        return
    new = _msghdr(b, at, use.dir, "ret")
    if new is not None:
        b.args[use.arg] = copy = b.scratch(new)
        if use.dir is Dir.WRITES:
            _write_back(b, copy, at, _WRITTEN_BACK)
        b.changed = True


def _program_address(b: _Builder, addr: int) -> int:
    """Where the tracer may write the program's byte at ``addr`` (its alias if traced)."""
    s = b.spans.at(addr)
    return addr if s is None else b.alias(s, addr)


def _mmsg(b: _Builder, use: MMsg, args: Sequence[int]) -> None:
    """``struct mmsghdr[count]``: a copy of the array with each msghdr redirected; each
    entry's data is counted by the ``msg_len`` the kernel writes into the copy."""
    at, count = args[use.arg], min(args[use.count], IOV_MAX)
    if at == 0 or count <= 0:
        return
    size = _MMSG_SIZE * count
    array = bytearray(b.read(at, size))
    changed = b.spans.reaches(at, at + size)
    if changed:
        b.touch(at, size, Dir.UPDATES)
        b.traced(at, at + size)
    base = b.scratch(bytes(array))
    for i in range(count):
        entry = at + _MMSG_SIZE * i
        new = _msghdr(b, entry, use.dir, base + _MMSG_SIZE * i + 56)
        if new is not None:
            array[_MMSG_SIZE * i : _MMSG_SIZE * i + _MSGHDR.size] = new
            changed = True
    if not changed:
        del b.writes[base]
        return
    fields = (*_WRITTEN_BACK, (56, 4)) if use.dir is Dir.WRITES else ((56, 4),)
    for i in range(count):
        array[_MMSG_SIZE * i + 56 : _MMSG_SIZE * i + 60] = bytes(4)  # msg_len: set by the kernel
        _write_back(b, base + _MMSG_SIZE * i, at + _MMSG_SIZE * i, fields, i)
    b.put(base, bytes(array))
    b.args[use.arg] = base
    b.changed = True


def _waitv(b: _Builder, use: Waitv, args: Sequence[int]) -> None:
    at = args[use.arg]
    count = 2 if use.count < 0 else args[use.count]
    if at == 0 or not 0 < count <= 128:
        return
    raw = b.read(at, _WAITV.size * count)
    out = bytearray()
    changed = b.spans.reaches(at, at + _WAITV.size * count)
    if changed:
        b.touch(at, _WAITV.size * count, Dir.READS)
        b.traced(at, at + _WAITV.size * count)
    for i in range(count):
        val, uaddr, flags, reserved = _WAITV.unpack_from(raw, _WAITV.size * i)
        size = 1 << (flags & 3)
        if uaddr and b.spans.reaches(uaddr, uaddr + size):
            b.touch(uaddr, size, Dir.READS)
            new = b.pointer(uaddr, size)
            changed = changed or new != uaddr
            uaddr = new
        out += _WAITV.pack(val, uaddr, flags, reserved)
    if changed:
        b.args[use.arg] = b.scratch(bytes(out))
        b.changed = True


_PLANNERS: dict[type, Callable[[_Builder, Any, Sequence[int]], None]] = {
    Buf: _buf, Iov: _iov, Msg: _msg, MMsg: _mmsg, Waitv: _waitv,
}  # fmt: skip


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple(merged(ranges, max(len(ranges), 1)))


def touched(
    touches: Sequence[Touch], ret: int, read_u32: Callable[[int], int]
) -> list[tuple[Span, int, int | None, Dir]]:
    """What the kernel reached, once the syscall returned ``ret``: ``(span, addr, size, dir)``.

    A counted buffer gets the bytes the count covers; an output is written only on
    success; inputs and addresses the kernel looked at are reported whenever it ran
    (an ``EFAULT`` run reached nothing).
    """
    out: list[tuple[Span, int, int | None, Dir]] = []
    if ret == -14:  # EFAULT
        return out
    for t in touches:
        if t.counted is None or t.counted == "all":
            if t.dir is Dir.WRITES and ret < 0:
                continue
            out.append((t.span, t.addr, t.size, t.dir))
            continue
        moved = ret if t.counted == "ret" else read_u32(int(t.counted))
        if moved <= t.offset or t.size is None:
            continue
        out.append((t.span, t.addr, min(t.size, moved - t.offset), t.dir))
    return out
