"""Decoded accesses as text lines and JSON objects, and a log decoded line by line.

Text, one line per access (the log's ``R``/``W`` line with the register in place of
map id and address)::

    W 4 12.000104 tdev.CTRL 0x10000009 EN=1 RST=0 MODE=FAST(2) IRQ_MASK=0x00 DIV=0x1000 pc 0x4011a0 tid 4242

* the register column is the register's full path; ``PATH[MSB:LSB]`` when the access
  covered only those bits of it; several, comma-separated, when it touched several;
  ``?@ADDRESS`` for bytes no register covers (an access to a gap is ``?@0xf7c0000c``);
* then the value as in the log, then every field the access touched, in the map's order:
  ``NAME=VALUE``, decimal for fields of 1 to 3 bits, ``0x`` hex zero-padded to the field's
  width for wider ones, ``NAME=ENUM(VALUE)`` where the map names the value,
  ``NAME=partial`` for a field the access covered only in part.  When the access touched
  several registers, each field is ``REGISTER.NAME=...`` (the register's own name);
* then ``pc`` and ``tid``.

Every other line (``VERSION``, ``MAP``, ``MARK``, ``PCIDEV``, comments...) passes through
unchanged.  With JSON, only accesses are written, one object per line (see
:func:`decoded_json`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from kmmio.maps.model import Decoded, FieldValue, Hit, RegisterMap, decode_hits
from kmmio.trace import Access, parse_line
from kmmio.trace.writer import format_ts


def field_number(width: int, value: int) -> str:
    """A field's value: decimal up to 3 bits, zero-padded ``0x`` hex from 4 bits on."""
    if width < 4:
        return str(value)
    return f"0x{value:0{(width + 3) // 4}x}"


def field_text(fv: FieldValue) -> str:
    """``VALUE``, ``ENUM(VALUE)`` or ``partial``: what follows ``NAME=``."""
    if fv.value is None:
        return "partial"
    num = field_number(fv.field.width, fv.value)
    enum = fv.enum
    return f"{enum}({num})" if enum is not None else num


def register_column(d: Decoded) -> str:
    """The registers an access touched (``PATH`` or ``PATH[MSB:LSB]``) and the bytes no
    register covers (``?@ADDRESS``), by address, comma-separated."""
    items: list[tuple[int, str]] = []
    for rv in d.registers:
        h = rv.hit
        text = h.register.path if h.whole else f"{h.register.path}[{h.msb}:{h.lsb}]"
        items.append((h.start, text))
    items.extend((addr, f"?@{addr:#x}") for addr, _ in d.unmapped)
    items.sort(key=lambda item: item[0])
    return ",".join(text for _, text in items)


def _field_items(d: Decoded) -> Iterable[tuple[str, FieldValue]]:
    """``(key, field value)`` of every field touched: ``NAME``, or ``REGISTER.NAME`` when
    the access touched several registers."""
    several = len(d.registers) > 1
    for rv in d.registers:
        prefix = rv.register.name + "." if several else ""
        for fv in rv.fields:
            yield prefix + fv.field.name, fv


def decoded_text(d: Decoded) -> str:
    """The middle of a text line: registers, value and fields."""
    fields = "".join(f" {key}={field_text(fv)}" for key, fv in _field_items(d))
    return f"{register_column(d)} {d.value:#x}{fields}"


def _text_line(acc: Access, middle: str) -> str:
    return text_line(acc.kind.value, acc.width, acc.ts, middle, acc.pc, acc.pid)


def text_line(kind: str, width: int, ts: int, middle: str, pc: int, tid: int) -> str:
    """A decoded text line from its parts (``ts`` in microseconds), without the newline."""
    return f"{kind} {width} {format_ts(ts)} {middle} pc {pc:#x} tid {tid}"


def format_decoded(acc: Access, d: Decoded) -> str:
    """One access as a text line, without the newline (see the module's docstring)."""
    return _text_line(acc, decoded_text(d))


def decoded_json(acc: Access, d: Decoded) -> dict[str, Any]:
    """One access as a JSON-ready dict.

    ``kind`` ("R"/"W"), ``width`` (bytes), ``ts`` (seconds, a number as in the log),
    ``map`` (map id), ``phys``, ``value``, ``pc``, ``tid`` (integers); ``register``: the
    (first) register's full path, ``null`` when the access hit none; ``registers``: every
    register touched, ``{"path", "address", "lsb", "msb"}`` (the bits of it touched);
    ``fields``: name → integer of the fields wholly inside the access; ``enums``: name →
    enum name, for those the map names; ``partial``: the names of the fields touched only
    in part; ``unmapped``: ``{"address", "length"}`` of bytes no register covers.  Field
    names are ``REGISTER.NAME`` when the access touched several registers, as in text.
    """
    fields: dict[str, int] = {}
    enums: dict[str, str] = {}
    partial: list[str] = []
    for key, fv in _field_items(d):
        if fv.value is None:
            partial.append(key)
            continue
        fields[key] = fv.value
        enum = fv.enum
        if enum is not None:
            enums[key] = enum
    return {
        "kind": acc.kind.value,
        "width": acc.width,
        "ts": acc.ts / 1_000_000,
        "map": acc.map_id,
        "phys": acc.phys,
        "value": acc.value,
        "register": d.register,
        "registers": [
            {"path": rv.register.path, "address": rv.register.address, "lsb": rv.hit.lsb, "msb": rv.hit.msb}
            for rv in d.registers
        ],
        "fields": fields,
        "enums": enums,
        "partial": partial,
        "unmapped": [{"address": a, "length": n} for a, n in d.unmapped],
        "pc": acc.pc,
        "tid": acc.pid,
    }


class Decoder:
    """Decodes accesses against a map, remembering the registers found per (address,
    width), and the text per (kind, address, width, value): a log touches few addresses
    many times, and a polling loop reads the same value again and again.  Each memory is
    emptied when it reaches ``cache_size`` entries, so it stays bounded."""

    def __init__(self, regmap: RegisterMap, cache_size: int = 1 << 16) -> None:
        self.regmap = regmap
        self.cache_size = cache_size
        self._hits: dict[tuple[int, int], list[Hit]] = {}
        self._texts: dict[tuple[str, int, int, int], str] = {}

    def text(self, acc: Access) -> str:
        """The access's text line (:func:`format_decoded`), without the newline."""
        return _text_line(acc, self.middle(acc.kind.value, acc.phys, acc.width, acc.value))

    def middle(self, kind: str, phys: int, width: int, value: int) -> str:
        """Registers, value and fields of an access (:func:`decoded_text`), remembered."""
        key = (kind, phys, width, value)
        middle = self._texts.get(key)
        if middle is None:
            if len(self._texts) >= self.cache_size:
                self._texts.clear()
            middle = self._texts[key] = decoded_text(self.decode_at(kind, phys, width, value))
        return middle

    def decode(self, acc: Access) -> Decoded:
        return self.decode_at(acc.kind.value, acc.phys, acc.width, acc.value)

    def decode_at(self, kind: str, phys: int, width: int, value: int) -> Decoded:
        """An access of ``kind`` (``"R"``/``"W"``) decoded, its registers remembered."""
        key = (phys, width)
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.cache_size:
                self._hits.clear()
            hits = self._hits[key] = self.regmap.lookup(phys, width)
        return decode_hits(phys, width, value, hits, kind)


def decode_log(
    lines: Iterable[str], regmap: RegisterMap, write: Callable[[str], object], as_json: bool = False
) -> int:
    """Decode a log line by line, writing each result as it goes (nothing is kept);
    returns the number of accesses.  A malformed line raises
    :class:`~kmmio.errors.TraceFormatError` with its number."""
    decoder = Decoder(regmap)
    count = 0
    for line_no, line in enumerate(lines, 1):
        rec = parse_line(line, line_no, typed_marks=False)
        if isinstance(rec, Access):
            count += 1
            write(
                (json.dumps(decoded_json(rec, decoder.decode(rec))) if as_json else decoder.text(rec)) + "\n"
            )
        elif not as_json:
            write(line if line.endswith("\n") else line + "\n")
    return count
