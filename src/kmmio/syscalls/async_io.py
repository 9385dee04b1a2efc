"""Asynchronous I/O handed traced memory: Linux AIO iocbs and io_uring SQEs (pure).

The kernel reaches the buffers of an AIO request or an io_uring submission later, from
its own context, where kmmio cannot redirect the access; so such requests are found when
they are submitted (``io_submit``, ``io_uring_enter``) and reported in one line: the
request fails with ``EFAULT`` as it would on any unreadable memory.  These functions find
them, given a way to read the program's memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from kmmio.syscalls.plan import Spans

Reader = Callable[[int, int], bytes]

#: ``struct iocb``: opcode at 16, buffer at 24, length at 32.
_IOCB = struct.Struct("<16xH6xQQ")
_IOCB_SIZE = 64
_AIO_PREADV, _AIO_PWRITEV = 7, 8
#: ``struct io_uring_sqe`` (64 bytes): opcode at 0, addr at 16, len at 24.
_SQE = struct.Struct("<B15xQI")
SQE_SIZE = 64
#: io_uring opcodes whose addr/len are an iovec array (READV, WRITEV), a msghdr (SENDMSG,
#: RECVMSG), and those whose addr/len are a plain buffer (READ, WRITE, SEND, RECV...).
_URING_IOVEC = {1, 2}
_URING_MSG = {9, 10}
_URING_BUFFER = {22, 23, 26, 27}
#: The mmap offset of an io_uring's SQE array (``IORING_OFF_SQES``).
IORING_OFF_SQES = 0x10000000
_MAX = 1024


@dataclass(frozen=True, slots=True)
class Handed:
    """A request that hands traced bytes to the kernel: which, and where."""

    what: str
    addr: int
    size: int


def _iovecs(read: Reader, at: int, count: int) -> list[tuple[int, int]]:
    raw = read(at, 16 * count)
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]


def _buffers(read: Reader, spans: Spans, what: str, addr: int, size: int, vector: bool) -> list[Handed]:
    """The traced parts of a buffer (or, with ``vector``, of an iovec array's buffers)."""
    pieces = _iovecs(read, addr, min(size, _MAX)) if vector else [(addr, size)]
    out: list[Handed] = []
    for base, n in pieces:
        if base and n:
            out.extend(Handed(what, a, b - a) for a, b, s in spans.pieces(base, base + n) if s is not None)
    return out


def aio_requests(read: Reader, spans: Spans, iocbpp: int, count: int) -> list[Handed]:
    """``io_submit(ctx, count, iocbpp)``: the requests whose buffers are traced."""
    out: list[Handed] = []
    count = min(count, _MAX)
    if not iocbpp or count <= 0:
        return out
    raw = read(iocbpp, 8 * count)
    for i in range(count):
        (iocb,) = struct.unpack_from("<Q", raw, 8 * i)
        opcode, buf, nbytes = _IOCB.unpack(read(iocb, _IOCB_SIZE)[: _IOCB.size])
        vector = opcode in (_AIO_PREADV, _AIO_PWRITEV)
        out.extend(_buffers(read, spans, f"io_submit opcode {opcode}", buf, nbytes, vector))
    return out


def uring_requests(read: Reader, spans: Spans, sqes: int, entries: int) -> list[Handed]:
    """The SQEs of an io_uring (its SQE array at ``sqes``) that hand traced memory over:
    every filled entry is looked at, submitted or not yet."""
    out: list[Handed] = []
    raw = read(sqes, SQE_SIZE * min(entries, 4096))
    for i in range(len(raw) // SQE_SIZE):
        opcode, addr, length = _SQE.unpack_from(raw, SQE_SIZE * i)
        what = f"io_uring opcode {opcode}"
        if opcode in _URING_BUFFER:
            out.extend(_buffers(read, spans, what, addr, length, False))
        elif opcode in _URING_IOVEC:
            out.extend(_buffers(read, spans, what, addr, length, True))
        elif opcode in _URING_MSG and addr:
            name, namelen, iov, iovlen, control, controllen = struct.unpack_from("<QI4xQQQQ", read(addr, 48))
            out.extend(_buffers(read, spans, what, iov, iovlen, True))
            out.extend(_buffers(read, spans, what, control, controllen, False))
            out.extend(_buffers(read, spans, what, name, namelen, False))
    return out
