"""A log as a Value Change Dump (``export --format vcd``), for GTKWave and Surfer.

One variable per register (with a map) or per address (without one, and for bytes no
register covers), holding the value last read or written there (see
:mod:`kmmio.tools.export.names`: a register keeps the bits an access did not reach).
A register's variable is as wide as the register, an address's as its widest access.
Time is the log's clock in microseconds (``$timescale 1 us``); the dump starts at the
first access, every variable ``x`` until its first access.  An access writes a value
change only when it changed its variable's value (the others are left out), so a
polling loop reading the same value is one change.

VCD declares every variable before the first value change, so the log is read twice:
once for the set of variables (a set, whatever the log's length), once to write the
changes.  The log must therefore be a file, not standard input.  Timestamps that go
backwards (a log merged from several CPUs) are written at the last time seen, since VCD
time only moves forward.  Records other than accesses (MAP, MARK...) are not in the dump.

Memory: the dump is written by this module (the VCD text pyvcd writes, without pyvcd's
objects per variable), so a variable costs no Python object of its own: registers (as
many as the map has) are kept by :class:`~kmmio.tools.export.names.Var`, addresses by a
``dict`` of ``int`` to ``int`` (address to bits in the first pass, to the variable's
index in the second) and their current values in a list, about 150 bytes an address
(10^6 distinct addresses: about 150 MB beyond the fixed cost).  Identifiers are computed
from the index when a value changes.  Beyond that the limit is the machine's memory: a
variable per address is what the format asks for.

Variable names: a register's path gives its scopes (``tdev.CTRL``: variable ``CTRL`` in
scope ``tdev``, ``QUEUE[1]`` written ``QUEUE_1``: brackets would read as a bit range);
addresses are ``addr_0xf7c00010`` in scope ``addresses``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO

from kmmio.tools.export.names import Namer, Var, distinct, sort_vars
from kmmio.tools.export.source import rows
from kmmio.tools.extras import need
from kmmio.tools.scan import Batch, Progress, scan

#: Opens the log for one pass: a context manager giving the stream and its progress.
Opener = Callable[[int], AbstractContextManager[tuple[IO[bytes], Progress]]]

#: The scope of the address variables.
ADDRESSES = ("addresses",)

_BAD = re.compile(r"[^A-Za-z0-9_$]")


@dataclass
class Variables:
    """What the first pass found: registers (``Var`` → bits) and addresses (address →
    bits), and the first access's timestamp (``None`` when there is no access)."""

    registers: dict[Var, int] = field(default_factory=dict)
    addresses: dict[int, int] = field(default_factory=dict)
    first: int | None = None

    def __len__(self) -> int:
        return len(self.registers) + len(self.addresses)

    def add(self, var: Var, bits: int) -> None:
        if var.is_register:
            if self.registers.get(var, 0) < bits:
                self.registers[var] = bits
        elif self.addresses.get(var.address, 0) < bits:
            self.addresses[var.address] = bits


def collect(stream: IO[bytes], namer: Namer, progress: Progress | None = None) -> Variables:
    """The first pass: every variable the accesses touch with its width in bits, and the
    first access's timestamp."""
    np = need("numpy", "export --format vcd")
    found = Variables()
    for item in scan(stream, progress=progress):
        if not isinstance(item, Batch):
            continue
        if found.first is None:
            found.first = item.ts[0]
        keys, _ = distinct(
            np,
            np.frombuffer(item.kind, dtype=np.uint8),
            np.frombuffer(item.phys, dtype=np.uint64),
            np.frombuffer(item.width, dtype=np.uint8),
        )
        for key in keys:
            for s in namer.slots(*key):
                found.add(s.var, 8 * s.var.size if s.var.is_register else s.lsb + s.nbits)
    return found


def reference(var: Var) -> tuple[tuple[str, ...], str]:
    """A variable's scope and name in the dump (before making names unique)."""
    if not var.is_register:
        return ADDRESSES, f"addr_{var.address:#x}"
    parts = [_ident(p) for p in var.name.split(".")]
    return (tuple(parts[:-1]) or ("registers",)), parts[-1]


def _ident(text: str) -> str:
    out = _BAD.sub("_", text.replace("]", "")).strip("_") or "_"
    return "_" + out if out[0].isdigit() else out


def identifier(index: int) -> str:
    """The VCD identifier of the variable at ``index`` (from 0), as pyvcd numbers them:
    base 94 over ``!`` to ``~``, least significant first."""
    v = index + 1
    out = ""
    while v:
        v -= 1
        out += chr(v % 94 + 33)
        v //= 94
    return out


def _unique(used: set[tuple[tuple[str, ...], str]], scope: tuple[str, ...], name: str) -> str:
    unique, n = name, 1
    while (scope, unique) in used:
        n += 1
        unique = f"{name}_{n}"
    return unique


def header(found: Variables) -> Iterator[str]:
    """The dump's header and declarations, the registers numbered from 0 in their order
    (:func:`~kmmio.tools.export.names.sort_vars`), then the addresses by address; as it
    goes, ``found.addresses`` maps each address to its variable's index instead of its
    bits."""
    yield "$timescale 1 us $end\n$version kmmio export $end\n"
    scopes: dict[tuple[str, ...], list[str]] = {}
    used: set[tuple[tuple[str, ...], str]] = set()
    for index, var in enumerate(sort_vars(found.registers)):
        scope, name = reference(var)
        unique = _unique(used, scope, name)
        used.add((scope, unique))
        line = f"$var reg {found.registers[var]} {identifier(index)} {unique} $end\n"
        scopes.setdefault(scope, []).append(line)
    if found.addresses:
        scopes.setdefault(ADDRESSES, [])
    prev: tuple[str, ...] = ()
    for scope in sorted(scopes):
        common = 0
        while common < min(len(prev), len(scope)) and prev[common] == scope[common]:
            common += 1
        yield "$upscope $end\n" * (len(prev) - common)
        yield "".join(f"$scope module {name} $end\n" for name in scope[common:])
        yield "".join(scopes.pop(scope))
        if scope == ADDRESSES:
            yield from _addresses(found, used)
        prev = scope
    yield "$upscope $end\n" * len(prev)
    yield "$enddefinitions $end\n"


def _addresses(found: Variables, used: set[tuple[tuple[str, ...], str]]) -> Iterator[str]:
    addresses = found.addresses
    index = len(found.registers)
    lines: list[str] = []
    for address in sorted(addresses):
        name = _unique(used, ADDRESSES, f"addr_{address:#x}")  # registers only in `used`
        lines.append(f"$var reg {addresses[address]} {identifier(index)} {name} $end\n")
        addresses[address] = index
        index += 1
        if len(lines) >= 4096:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


def write(
    stream: IO[bytes],
    out: IO[str],
    namer: Namer,
    found: Variables,
    progress: Progress | None = None,
) -> int:
    """The second pass: declare ``found``'s variables, then write each change; returns
    the number of value changes written."""
    for text in header(found):
        out.write(text)
    first = found.first or 0
    nvars = len(found)
    if nvars:
        out.write(f"#{first}\n$dumpvars\n")
        for i in range(nvars):
            out.write(f"bx {identifier(i)}\n")
        out.write("$end\n")
    registers = {var: i for i, var in enumerate(sort_vars(found.registers))}
    addresses = found.addresses  # address -> index now
    current: list[int | None] = [None] * nvars
    changes = 0
    now = dumped = first
    write_text = out.write
    for item in scan(stream, progress=progress):
        if not isinstance(item, Batch):
            continue
        for kind, width, ts, _map_id, phys, value, _pc, _tid in rows(item):
            if ts > now:
                now = ts
            for s in namer.slots(kind, phys, width):
                var = s.var
                if var.is_register:
                    i = registers[var]
                    new = s.apply(current[i], value)
                else:
                    i = addresses[var.address]
                    new = s.apply(None, value)
                if new != current[i]:
                    current[i] = new
                    if now != dumped:
                        write_text(f"#{now}\n")
                        dumped = now
                    write_text(f"b{new:b} {identifier(i)}\n")
                    changes += 1
    if not nvars or now != dumped:
        out.write(f"#{now}\n")
    return changes


def export_vcd(open_pass: Opener, out: IO[str], namer: Namer) -> tuple[int, int]:
    """Both passes over the log ``open_pass(1)`` and ``open_pass(2)`` open; returns the
    number of variables and of value changes."""
    with open_pass(1) as (stream, progress):
        found = collect(stream, namer, progress)
    nvars = len(found)
    with open_pass(2) as (stream, progress):
        changes = write(stream, out, namer, found, progress)
    return nvars, changes
