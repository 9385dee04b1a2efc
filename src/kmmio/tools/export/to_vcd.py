"""A log as a Value Change Dump (``export --format vcd``), for GTKWave and Surfer.

One variable per register (with a map) or per address (without one, and for bytes no
register covers), holding the value last read or written there (see
:mod:`kmmio.tools.export.names`: a register keeps the bits an access did not reach).
A register's variable is as wide as the register, an address's as its widest access.
Time is the log's clock in microseconds (``$timescale 1 us``); the dump starts at the
first access, every variable ``x`` until its first access.  An access writes a value
change only when it changed its variable's value (pyvcd leaves out the others), so a
polling loop reading the same value is one change.

VCD declares every variable before the first value change, so the log is read twice:
once for the set of variables (a set, whatever the log's length), once to write the
changes.  The log must therefore be a file, not standard input.  Timestamps that go
backwards (a log merged from several CPUs) are written at the last time seen, since VCD
time only moves forward.  Records other than accesses (MAP, MARK...) are not in the dump.

Variable names: a register's path gives its scopes (``tdev.CTRL``: variable ``CTRL`` in
scope ``tdev``, ``QUEUE[1]`` written ``QUEUE_1``: brackets would read as a bit range);
addresses are ``addr_0xf7c00010`` in scope ``addresses``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import IO, Any

from kmmio.tools.export.names import Namer, Values, Var, distinct, sort_vars
from kmmio.tools.export.source import rows
from kmmio.tools.extras import need
from kmmio.tools.scan import Batch, Progress, scan

#: Opens the log for one pass: a context manager giving the stream and its progress.
Opener = Callable[[int], AbstractContextManager[tuple[IO[bytes], Progress]]]

_BAD = re.compile(r"[^A-Za-z0-9_$]")


def collect(
    stream: IO[bytes], namer: Namer, progress: Progress | None = None
) -> tuple[dict[Var, int], int | None]:
    """The first pass: every variable the accesses touch with its width in bits, and the
    first access's timestamp (``None`` when there is no access)."""
    np = need("numpy", "export --format vcd")
    bits: dict[Var, int] = {}
    first: int | None = None
    for item in scan(stream, progress=progress):
        if not isinstance(item, Batch):
            continue
        if first is None:
            first = item.ts[0]
        keys, _ = distinct(
            np,
            np.frombuffer(item.kind, dtype=np.uint8),
            np.frombuffer(item.phys, dtype=np.uint64),
            np.frombuffer(item.width, dtype=np.uint8),
        )
        for key in keys:
            for s in namer.slots(*key):
                want = 8 * s.var.size if s.var.is_register else s.lsb + s.nbits
                if bits.get(s.var, 0) < want:
                    bits[s.var] = want
    return bits, first


def reference(var: Var) -> tuple[tuple[str, ...], str]:
    """A variable's scope and name in the dump (before making names unique)."""
    if not var.is_register:
        return ("addresses",), f"addr_{var.address:#x}"
    parts = [_ident(p) for p in var.name.split(".")]
    return (tuple(parts[:-1]) or ("registers",)), parts[-1]


def _ident(text: str) -> str:
    out = _BAD.sub("_", text.replace("]", "")).strip("_") or "_"
    return "_" + out if out[0].isdigit() else out


def write(
    stream: IO[bytes],
    out: IO[str],
    namer: Namer,
    bits: dict[Var, int],
    first: int | None,
    progress: Progress | None = None,
) -> int:
    """The second pass: declare ``bits``' variables, then write each change; returns the
    number of value changes written."""
    vcd = need("vcd", "export --format vcd")
    writer = vcd.VCDWriter(out, timescale="1 us", date="", version="kmmio export", init_timestamp=first or 0)
    handles: dict[Var, Any] = {}
    used: set[tuple[tuple[str, ...], str]] = set()
    for var in sort_vars(bits):
        scope, name = reference(var)
        unique, n = name, 1
        while (scope, unique) in used:
            n += 1
            unique = f"{name}_{n}"
        used.add((scope, unique))
        handles[var] = writer.register_var(scope, unique, "reg", size=bits[var])
    writer.flush()  # the header and every variable at x, at the first access's time
    values = Values()
    changes = 0
    now = first or 0
    change = writer.change
    for item in scan(stream, progress=progress):
        if not isinstance(item, Batch):
            continue
        for kind, width, ts, _map_id, phys, value, _pc, _tid in rows(item):
            if ts > now:
                now = ts
            for var, new, changed in values.apply(namer.slots(kind, phys, width), value):
                if changed:
                    change(handles[var], now, new)
                    changes += 1
    writer.close(now)
    return changes


def export_vcd(open_pass: Opener, out: IO[str], namer: Namer) -> tuple[int, int]:
    """Both passes over the log ``open_pass(1)`` and ``open_pass(2)`` open; returns the
    number of variables and of value changes."""
    with open_pass(1) as (stream, progress):
        bits, first = collect(stream, namer, progress)
    with open_pass(2) as (stream, progress):
        changes = write(stream, out, namer, bits, first, progress)
    return len(bits), changes
