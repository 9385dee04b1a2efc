"""mmiotrace text to records: the kernel's ``trace_pipe`` and ``trace`` forms, and ours.

Blank lines and ftrace's ``#`` header lines are skipped.  Anything else that is not a
well-formed record raises :class:`~kmmio.errors.TraceFormatError` with its line number,
never another exception.

Every number is range-checked, so a record's fields fit the columns the tools store them
in: a map id is a signed 32-bit integer, a pid or tid an unsigned 32-bit one, an address,
a length or a pc (and each PCIDEV field) at most 64 bits, a timestamp's seconds such that
the whole timestamp fits in a signed 64-bit count of microseconds (``MAX_TS``), an
access's width 1 to ``MAX_WIDTH`` bytes and its value at most ``MAX_WIDTH`` bytes (the
reader does not hold a value to its access's width: :mod:`kmmio.tools.scan` does).  A line
longer than ``MAX_LINE`` bytes (characters here) is refused too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from kmmio.errors import TraceFormatError
from kmmio.trace.records import (
    MAP_KINDS,
    Access,
    KernelAccess,
    Kind,
    Map,
    MapInfo,
    Mark,
    PciDev,
    Record,
    Unknown,
    Unmap,
    Version,
    unescape,
)

#: The widest access (AVX-512: 64 bytes).
MAX_WIDTH = 64
#: The longest line, in bytes, without its newline.
MAX_LINE = 1 << 20
#: The latest timestamp, in microseconds (a signed 64-bit integer).
MAX_TS = (1 << 63) - 1

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


class _Bad(Exception):
    pass


def _bounded(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise _Bad(f"{what} {value} is out of range ({low}..{high})")
    return value


def _map_id(tok: str) -> int:
    """A map id: a signed 32-bit integer."""
    return _bounded(_dec(tok, True), _I32_MIN, _I32_MAX, "map id")


def _tid(tok: str, what: str = "tid") -> int:
    """A pid or tid: an unsigned 32-bit integer."""
    return _bounded(_dec(tok), 0, _U32, what)


def _addr(tok: str, what: str) -> int:
    """An address, a length or a pc: ``0x`` and at most 64 bits."""
    value = _hex(tok)
    if value > _U64:
        raise _Bad(f"{what} {tok[:40]} is wider than 64 bits")
    return value


def _hex(tok: str) -> int:
    if not tok.startswith(("0x", "0X")) or len(tok) < 3:
        raise _Bad(f"expected a 0x-prefixed hex number, got {tok!r}")
    return _bare_hex(tok[2:])


def _bare_hex(tok: str) -> int:
    if not tok or any(c not in "0123456789abcdefABCDEF" for c in tok):
        raise _Bad(f"expected a hex number, got {tok!r}")
    return int(tok, 16)


def _dec(tok: str, signed: bool = False) -> int:
    body = tok[1:] if signed and tok.startswith("-") else tok
    if not body or not body.isascii() or not body.isdigit():
        raise _Bad(f"expected a decimal number, got {tok!r}")
    return int(tok)


def _ts(tok: str) -> int:
    sec, dot, frac = tok.partition(".")
    if not dot or len(frac) != 6:
        raise _Bad(f"expected a timestamp seconds.micros, got {tok!r}")
    ts = _dec(sec) * 1_000_000 + _dec(frac)
    if ts > MAX_TS:
        raise _Bad(f"timestamp {sec[:40]}.{frac} is out of range (at most {MAX_TS // 1_000_000} s)")
    return ts


def _count(f: list[str], n: int, what: str) -> None:
    if len(f) != n:
        raise _Bad(f"{what} needs {n - 1} fields, got {len(f) - 1}")


def _access(f: list[str]) -> Record:
    _count(f, 8, f[0])
    width = _dec(f[1])
    if width <= 0:
        raise _Bad(f"width must be positive, got {width}")
    if width > MAX_WIDTH:
        raise _Bad(f"width {width} is more than {MAX_WIDTH} bytes")
    ts = _ts(f[2])
    map_id = _map_id(f[3])
    phys = _addr(f[4], "phys")
    value = _hex(f[5])
    if value >> (8 * MAX_WIDTH):
        raise _Bad(f"value {f[5][:40]}... is wider than {MAX_WIDTH} bytes")
    return Access(Kind(f[0]), width, ts, map_id, phys, value, _addr(f[6], "pc"), _tid(f[7]))


def _map(f: list[str]) -> Record:
    _count(f, 8, "MAP")
    return Map(
        _ts(f[1]),
        _map_id(f[2]),
        _addr(f[3], "phys"),
        _addr(f[4], "virt"),
        _addr(f[5], "length"),
        _addr(f[6], "pc"),
        _tid(f[7], "pid"),
    )


def _unmap(f: list[str]) -> Record:
    _count(f, 5, "UNMAP")
    return Unmap(_ts(f[1]), _map_id(f[2]), _addr(f[3], "pc"), _tid(f[4], "pid"))


def _unknown(f: list[str]) -> Record:
    _count(f, 7, "UNKNOWN")
    code = bytes(_bare_hex(b) & 0xFF if len(b) <= 2 else _fail(b) for b in f[4].split(","))
    phys, pc = _addr(f[3], "phys"), _addr(f[5], "pc")
    return Unknown(_ts(f[1]), _map_id(f[2]), phys, code, pc, _tid(f[6], "pid"))


def _fail(tok: str) -> int:
    raise _Bad(f"expected a byte, got {tok!r}")


def _version(f: list[str]) -> Record:
    _count(f, 2, "VERSION")
    return Version(f[1])


def _pcidev(f: list[str]) -> Record:
    if len(f) not in (18, 19):
        raise _Bad(f"PCIDEV needs 17 or 18 fields, got {len(f) - 1}")
    values = [_bare_hex(t) for t in f[1:18]]
    if any(v > _U64 for v in values):
        raise _Bad("a PCIDEV field is wider than 64 bits")
    driver = f[18] if len(f) == 19 else ""
    return PciDev(values[0], values[1], values[2], tuple(values[3:10]), tuple(values[10:17]), driver)


_PARSERS: dict[str, Callable[[list[str]], Record]] = {
    "R": _access,
    "W": _access,
    "MAP": _map,
    "UNMAP": _unmap,
    "UNKNOWN": _unknown,
    "VERSION": _version,
    "PCIDEV": _pcidev,
}


def _kernel_access(ts: int, msg: str) -> KernelAccess | None:
    """A ``MARK`` of the form ``syscall NAME DIR map ID PHYS[+LEN] tid TID``, else ``None``.

    A number that is no number makes it a plain mark; one out of range (a map id over
    2**31 - 1, a tid over 2**32 - 1, an address or length over 64 bits) is an error."""
    f = msg.split()
    if len(f) != 8 or f[0] != "syscall" or f[3] != "map" or f[6] != "tid" or f[2] not in _DIRECTIONS:
        return None
    try:
        phys_tok, plus, len_tok = f[5].partition("+")
        numbers = (_dec(f[4]), _hex(phys_tok), _hex(len_tok) if plus else None, _dec(f[7]))
    except _Bad:
        return None
    map_id, phys, length, tid = numbers
    _bounded(map_id, 0, _I32_MAX, "map id")
    _addr(phys_tok, "phys")
    if plus:
        _addr(len_tok, "length")
    _bounded(tid, 0, _U32, "tid")
    return KernelAccess(ts, f[1], f[2], map_id, phys, length, tid)


_DIRECTIONS = {"reads", "writes", "updates", "accesses"}


def _map_info(ts: int, msg: str) -> MapInfo | None:
    """A ``MARK`` of the form ``map ID PATH KIND [DEVICE [REGION...]]``, else ``None``."""
    f = msg.split()
    if len(f) < 4 or f[0] != "map" or f[3] not in MAP_KINDS or not f[1].isdigit():
        return None
    return MapInfo(
        ts,
        _bounded(int(f[1]), 0, _I32_MAX, "map id"),
        unescape(f[2]),
        f[3],
        f[4] if len(f) > 4 else "",
        " ".join(f[5:]),
    )


def parse_line(line: str, line_no: int = 1, typed_marks: bool = True) -> Record | None:
    """One line to a record, ``None`` for blank and ``#`` lines.

    A ``MARK`` line in kmmio's syscall form is a :class:`KernelAccess`, one in its map form
    a :class:`MapInfo` (unless
    ``typed_marks`` is false: then every MARK is a :class:`Mark`, as for any reader that
    knows only the kernel's records).
    """
    text = line.rstrip("\r\n")
    if len(text) > MAX_LINE:
        raise TraceFormatError(line_no, f"the line is longer than {MAX_LINE:,} bytes")
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    try:
        if stripped.startswith("MARK"):
            head, _, rest = stripped.partition(" ")
            if head != "MARK":
                raise _Bad(f"unknown record type {head!r}")
            ts_tok, _, msg = rest.partition(" ")
            ts = _ts(ts_tok)
            typed: Record | None = None
            if typed_marks and msg.startswith("syscall "):
                typed = _kernel_access(ts, msg)
            elif typed_marks and msg.startswith("map "):
                typed = _map_info(ts, msg)
            return typed if typed is not None else Mark(ts, msg)
        fields = stripped.split()
        parser = _PARSERS.get(fields[0])
        if parser is None:
            raise _Bad(f"unknown record type {fields[0][:40]!r}")
        return parser(fields)
    except (_Bad, ValueError) as exc:
        raise TraceFormatError(line_no, str(exc)) from None


def read_records(lines: Iterable[str] | Iterable[bytes], typed_marks: bool = True) -> Iterator[Record]:
    """Records from a text stream (or lines of bytes, decoded as UTF-8 leniently); see
    :func:`parse_line` for ``typed_marks``."""
    for line_no, line in enumerate(lines, 1):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
        rec = parse_line(text, line_no, typed_marks)
        if rec is not None:
            yield rec
