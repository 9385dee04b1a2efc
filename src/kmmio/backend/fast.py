"""The compiled fast loop (``_fast_impl.c``): what Python hands it, and how it is run.

Everything crosses as plain 64-bit words: descriptors of plain loads and stores per
instruction address, the ranges they may be served on, the threads that may be served,
and the log rows of what was served.  See the C file for what :func:`serve` does.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable, Sequence

from kmmio.backend import _ptrace as pt
from kmmio.backend._sys import lib
from kmmio.errors import TraceeError

#: Words of a descriptor, a range, a thread, a row (the C structs).
DESC_WORDS, RANGE_WORDS, THREAD_WORDS, ROW_WORDS = 20, 9, 4, 8
#: Rows one :func:`serve` call writes at most before Python drains them.
MAX_ROWS = 4096

_desc = (ctypes.c_uint64 * DESC_WORDS)()
_rows = (ctypes.c_uint64 * (ROW_WORDS * MAX_ROWS))()
_served = ctypes.c_int()
_text = ctypes.create_string_buffer(MAX_ROWS * 96)
_ROWS, _SERVED, _TEXT = ctypes.addressof(_rows), ctypes.addressof(_served), ctypes.addressof(_text)
_MASK64 = (1 << 64) - 1


def learn(words: Sequence[int]) -> bool:
    """Hand over one descriptor (``DESC_WORDS`` numbers, negative ones as two's
    complement); False when the table is full."""
    _desc[:] = [w & _MASK64 for w in words]
    return bool(lib.kmmio_fast_desc(ctypes.addressof(_desc)) == 0)


def forget(space: int) -> None:
    """Drop the descriptors of ``space`` (0: all)."""
    lib.kmmio_fast_forget(space)


def _push(rows: Sequence[Sequence[int]], words: int) -> tuple[ctypes.Array[ctypes.c_uint64], int]:
    buf = (ctypes.c_uint64 * max(len(rows) * words, 1))()
    for i, row in enumerate(rows):
        buf[i * words : (i + 1) * words] = [w & _MASK64 for w in row]
    return buf, len(rows)


def set_ranges(ranges: Iterable[Sequence[int]]) -> bool:
    """Replace every range (``RANGE_WORDS`` numbers each; sorted here)."""
    buf, n = _push(sorted(ranges, key=lambda r: (r[0], r[1])), RANGE_WORDS)
    return bool(lib.kmmio_fast_ranges(ctypes.addressof(buf), n) == 0)


def set_threads(threads: Sequence[Sequence[int]]) -> bool:
    """Replace the thread table (``THREAD_WORDS`` numbers each)."""
    buf, n = _push(threads, THREAD_WORDS)
    return bool(lib.kmmio_fast_threads(ctypes.addressof(buf), n) == 0)


def serve() -> int:
    """Wait for the tracees, serving on the way what the fast loop can (one call).

    Returns ``READY`` with the next status Python must handle waiting in the wait buffer
    (:func:`kmmio.backend._ptrace.claim_status` takes it), ``FULL`` when the rows must be
    taken first, ``INTERRUPTED`` when a signal came for the tracer, ``GONE`` when no tracee
    is left.  Rows of what was served wait in :func:`take_text`/:func:`take_rows`.
    """
    got: int = lib.kmmio_serve(pt.WAIT_INFO, pt.WAIT_FLAGS, _ROWS, MAX_ROWS, _SERVED)
    if got >= 0:
        return READY if got == 1 else FULL
    if -got == errno.ECHILD:
        return GONE
    if -got == errno.EINTR:
        return INTERRUPTED
    raise TraceeError("waitid", -got, os.getpid())


READY, FULL, INTERRUPTED, GONE = 1, 0, -1, -2


def served() -> int:
    """How many rows wait to be taken."""
    return _served.value


def take_rows() -> list[tuple[int, ...]]:
    """The rows waiting (and no longer): (write, width, ts, map id, phys, value, pc, tid)."""
    n, _served.value = _served.value, 0
    flat = _rows[: n * ROW_WORDS]
    return [tuple(flat[i * ROW_WORDS : (i + 1) * ROW_WORDS]) for i in range(n)]


def take_text() -> tuple[str, int]:
    """The rows waiting as mmiotrace lines, and how many (and no longer waiting)."""
    n, _served.value = _served.value, 0
    if not n:
        return "", 0
    length = lib.kmmio_format_rows(_ROWS, n, _TEXT, len(_text))
    if length < 0:
        raise TraceeError("format rows", errno.ENOBUFS, os.getpid())
    return _text.raw[:length].decode("ascii"), n


def writes_waiting() -> int:
    """How many of the rows waiting are writes."""
    n = _served.value
    return sum(_rows[0 : n * ROW_WORDS : ROW_WORDS])


def tids_of_rows() -> set[int]:
    """The threads of the rows waiting (before they are taken)."""
    n = _served.value
    return {int(_rows[i * ROW_WORDS + 7]) for i in range(n)}
