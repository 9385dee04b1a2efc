"""A :class:`~kmmio.tools.summary.Summary` as text or as JSON objects, streamed.

Text: a line of totals, the table (fixed columns, one row per register or address, most
accessed first), then the longest polling runs, one line each::

    REGISTER     MAP   READS  WRITES  WIDTHS  DISTINCT  FIRST  LAST  FIRST TIME  LAST TIME  THREADS
    tdev.STATUS  1    10,232       0  4              0  0x0    0x1   12.000141   13.203141        1

    R tdev.STATUS x10,231 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 4242, lines 12-10242)

The table's lines are made by the compiled side (``_summary_out.c``), which knows every
column's width before the first line (it measures each row as the rows are merged), so a
table of millions of rows is streamed, never held.  Values longer than 18 characters
(wider than 64 bits) are cut in the middle in the table (``0x112233..44556677``); JSON has
them whole.  A count at its cap is shown ``≥65,536``; a row with more map ids than it
lists ends its list with ``+`` (see :mod:`kmmio.tools.summary`).

JSON (``--json``): one object per line, each with a ``"type"``; times are strings, the
log's own ``seconds.micros`` (``"12.000104"``: exact, where a float would round):

* ``"row"``, one per table row, in the table's order: ``register`` (path, or ``null``),
  ``phys`` (the register's address, or the row's address), ``maps`` (map ids),
  ``maps_capped``, ``reads``, ``writes``, ``widths`` (bytes), ``distinct`` (distinct
  values written), ``distinct_capped`` (true: ``distinct`` is a lower bound),
  ``first_value``, ``last_value``, ``first_ts``, ``last_ts``, ``first_line``,
  ``last_line``, ``threads``, ``threads_capped``, ``runs`` (polling runs folded on it),
  ``polled`` (the reads in them), ``longest_run`` (reads; 0 without runs);
* ``"run"``, one per polling run kept, longest first: ``register``, ``map`` (of its first
  read), ``phys``, ``width``, ``tid``, ``count``, ``first_value``, ``last_value``,
  ``first_ts``, ``last_ts``, ``seconds`` (from the first read to the last, the same
  form), ``first_line``, ``last_line``;
* ``"totals"``, last: ``accesses``, ``reads``, ``writes``, ``rows``, ``runs`` (all runs
  folded, kept or not), ``polled``, ``min_run``, ``mappings``, ``lost`` (events the log
  says were lost), ``first_ts``, ``last_ts`` (``null`` without accesses).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kmmio.tools.summary import Run, Summary, Totals
from kmmio.trace.writer import format_ts

#: Values longer than this are cut in the table.
VALUE_CHARS = 18


def value_text(value: int, limit: int = VALUE_CHARS) -> str:
    """``0x..`` hex, cut in the middle past ``limit`` characters."""
    text = f"{value:#x}"
    if len(text) <= limit:
        return text
    half = (limit - 2) // 2
    return text[: limit - 2 - half] + ".." + text[-half:]


def seconds_text(micros: int) -> str:
    """Microseconds as seconds, without trailing zeros: ``1.203``, ``0.000052``, ``0``."""
    text = format_ts(micros).rstrip("0").rstrip(".")
    return text or "0"


def run_line(run: Run) -> str:
    """``R tdev.STATUS x10,231 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 4242, lines 12-10242)``."""
    where = run.register if run.register is not None else f"{run.phys:#x}"
    change = f"{run.first_value:#x}"
    if run.last_value != run.first_value:
        change += f" -> {run.last_value:#x}"
    return (
        f"R {where} x{run.count:,} {change} after {seconds_text(run.micros)} s"
        f"  ({run.width} bytes, tid {run.tid}, lines {run.first_line}-{run.last_line})"
    )


def totals_line(t: Totals) -> str:
    if not t.accesses:
        text = "no accesses"
    else:
        assert t.first_ts is not None and t.last_ts is not None
        text = (
            f"{t.accesses:,} accesses ({t.reads:,} reads, {t.writes:,} writes) in {t.rows:,} "
            f"{'row' if t.rows == 1 else 'rows'}, {format_ts(t.first_ts)} to {format_ts(t.last_ts)}"
        )
    text += f"; {t.mappings:,} {'mapping' if t.mappings == 1 else 'mappings'}"
    if t.lost:
        text += f"; {t.lost:,} events lost"
    return text


def format_text(s: Summary) -> Iterator[bytes]:
    """The text form, in pieces of whole lines (UTF-8, each line ending with a newline)."""
    t = s.totals
    yield (totals_line(t) + "\n").encode()
    if t.rows:
        yield b"\n"
        yield from s.chunks()
    if t.total_runs:
        shown = len(s.runs)
        several = "s" if t.total_runs != 1 else ""
        head = f"{t.total_runs:,} polling run{several} of {t.min_run}+ reads ({t.polled:,} reads folded)"
        if shown < t.total_runs:
            head += f", the {shown:,} longest"
        lines = ["", head + (":" if shown else ""), *("  " + run_line(run) for run in s.runs)]
        yield "".join(line + "\n" for line in lines).encode()


def run_json(run: Run) -> dict[str, Any]:
    return {
        "type": "run",
        "register": run.register,
        "map": run.map_id,
        "phys": run.phys,
        "width": run.width,
        "tid": run.tid,
        "count": run.count,
        "first_value": run.first_value,
        "last_value": run.last_value,
        "first_ts": format_ts(run.first_ts),
        "last_ts": format_ts(run.last_ts),
        "seconds": format_ts(run.micros),
        "first_line": run.first_line,
        "last_line": run.last_line,
    }


def totals_json(t: Totals) -> dict[str, Any]:
    return {
        "type": "totals",
        "accesses": t.accesses,
        "reads": t.reads,
        "writes": t.writes,
        "rows": t.rows,
        "runs": t.total_runs,
        "polled": t.polled,
        "min_run": t.min_run,
        "mappings": t.mappings,
        "lost": t.lost,
        "first_ts": None if t.first_ts is None else format_ts(t.first_ts),
        "last_ts": None if t.last_ts is None else format_ts(t.last_ts),
    }


def format_json(s: Summary) -> Iterator[bytes]:
    """The JSON lines (rows, runs, totals), in pieces of whole lines (UTF-8)."""
    yield from s.chunks(as_json=True)
    objs = [*(run_json(run) for run in s.runs), totals_json(s.totals)]
    yield "".join(json.dumps(obj) + "\n" for obj in objs).encode()
