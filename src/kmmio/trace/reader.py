"""mmiotrace text to records: the kernel's ``trace_pipe`` and ``trace`` forms, and ours.

Blank lines and ftrace's ``#`` header lines are skipped.  Anything else that is not a
well-formed record raises :class:`~kmmio.errors.TraceFormatError` with its line number,
never another exception.
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


class _Bad(Exception):
    pass


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
    return _dec(sec) * 1_000_000 + _dec(frac)


def _count(f: list[str], n: int, what: str) -> None:
    if len(f) != n:
        raise _Bad(f"{what} needs {n - 1} fields, got {len(f) - 1}")


def _access(f: list[str]) -> Record:
    _count(f, 8, f[0])
    width = _dec(f[1])
    if width <= 0:
        raise _Bad(f"width must be positive, got {width}")
    return Access(
        Kind(f[0]),
        width,
        _ts(f[2]),
        _dec(f[3], True),
        _hex(f[4]),
        _hex(f[5]),
        _hex(f[6]),
        _dec(f[7]),
    )


def _map(f: list[str]) -> Record:
    _count(f, 8, "MAP")
    return Map(_ts(f[1]), _dec(f[2], True), _hex(f[3]), _hex(f[4]), _hex(f[5]), _hex(f[6]), _dec(f[7]))


def _unmap(f: list[str]) -> Record:
    _count(f, 5, "UNMAP")
    return Unmap(_ts(f[1]), _dec(f[2], True), _hex(f[3]), _dec(f[4]))


def _unknown(f: list[str]) -> Record:
    _count(f, 7, "UNKNOWN")
    code = bytes(_bare_hex(b) & 0xFF if len(b) <= 2 else _fail(b) for b in f[4].split(","))
    return Unknown(_ts(f[1]), _dec(f[2], True), _hex(f[3]), code, _hex(f[5]), _dec(f[6]))


def _fail(tok: str) -> int:
    raise _Bad(f"expected a byte, got {tok!r}")


def _version(f: list[str]) -> Record:
    _count(f, 2, "VERSION")
    return Version(f[1])


def _pcidev(f: list[str]) -> Record:
    if len(f) not in (18, 19):
        raise _Bad(f"PCIDEV needs 17 or 18 fields, got {len(f) - 1}")
    values = [_bare_hex(t) for t in f[1:18]]
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
    """A ``MARK`` of the form ``syscall NAME DIR map ID PHYS[+LEN] tid TID``, else ``None``."""
    f = msg.split()
    if len(f) != 8 or f[0] != "syscall" or f[3] != "map" or f[6] != "tid" or f[2] not in _DIRECTIONS:
        return None
    try:
        phys_tok, plus, len_tok = f[5].partition("+")
        length = _hex(len_tok) if plus else None
        return KernelAccess(ts, f[1], f[2], _dec(f[4]), _hex(phys_tok), length, _dec(f[7]))
    except _Bad:
        return None


_DIRECTIONS = {"reads", "writes", "updates", "accesses"}


def _map_info(ts: int, msg: str) -> MapInfo | None:
    """A ``MARK`` of the form ``map ID PATH KIND [DEVICE [REGION...]]``, else ``None``."""
    f = msg.split()
    if len(f) < 4 or f[0] != "map" or f[3] not in MAP_KINDS or not f[1].isdigit():
        return None
    return MapInfo(ts, int(f[1]), unescape(f[2]), f[3], f[4] if len(f) > 4 else "", " ".join(f[5:]))


def parse_line(line: str, line_no: int = 1, typed_marks: bool = True) -> Record | None:
    """One line to a record, ``None`` for blank and ``#`` lines.

    A ``MARK`` line in kmmio's syscall form is a :class:`KernelAccess`, one in its map form
    a :class:`MapInfo` (unless
    ``typed_marks`` is false: then every MARK is a :class:`Mark`, as for any reader that
    knows only the kernel's records).
    """
    text = line.rstrip("\r\n")
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
