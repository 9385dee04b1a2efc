"""A :class:`~kmmio.tools.summary.Summary` as a text table or as JSON objects.

Text: a line of totals, the table (fixed columns, one row per register or address, most
accessed first), then the longest polling runs, one line each::

    REGISTER     MAP   READS  WRITES  WIDTHS  DISTINCT  FIRST  LAST  FIRST TIME  LAST TIME  THREADS
    tdev.STATUS  1    10,232       0  4              0  0x0    0x1   12.000141   13.203141        1

    R tdev.STATUS x10,231 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 4242, lines 12-10242)

Values longer than 18 characters (wider than 64 bits) are cut in the middle in the table
(``0x112233..44556677``); JSON has them whole.

JSON (``--json``): one object per line, each with a ``"type"``:

* ``"row"``, one per table row, in the table's order: ``register`` (path, or ``null``),
  ``phys`` (the register's address, or the row's address), ``maps`` (map ids), ``reads``,
  ``writes``, ``widths`` (bytes), ``distinct`` (distinct values written), ``first_value``,
  ``last_value``, ``first_ts``, ``last_ts`` (seconds, as in the log), ``first_line``,
  ``last_line``, ``threads``, ``runs`` (polling runs folded on it), ``polled`` (the reads
  in them), ``longest_run`` (reads; 0 without runs);
* ``"run"``, one per polling run kept, longest first: ``register``, ``map``, ``phys``,
  ``width``, ``tid``, ``count``, ``first_value``, ``last_value``, ``first_ts``,
  ``last_ts``, ``seconds`` (from the first read to the last), ``first_line``,
  ``last_line``;
* ``"totals"``, last: ``accesses``, ``reads``, ``writes``, ``rows``, ``runs`` (all runs
  folded, kept or not), ``polled``, ``min_run``, ``mappings``, ``lost`` (events the log
  says were lost), ``first_ts``, ``last_ts`` (``null`` without accesses).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kmmio.tools.summary import Row, Run, Summary
from kmmio.trace.writer import format_ts

#: Values longer than this are cut in the table.
VALUE_CHARS = 18

HEADER = (
    "REGISTER",
    "MAP",
    "READS",
    "WRITES",
    "WIDTHS",
    "DISTINCT",
    "FIRST",
    "LAST",
    "FIRST TIME",
    "LAST TIME",
    "THREADS",
)
#: Which columns are right-aligned (numbers).
_RIGHT = (False, False, True, True, False, True, False, False, False, False, True)


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


def row_label(row: Row) -> str:
    return row.register if row.register is not None else f"{row.phys:#x}"


def row_cells(row: Row) -> tuple[str, ...]:
    return (
        row_label(row),
        ",".join(str(m) for m in row.maps),
        f"{row.reads:,}",
        f"{row.writes:,}",
        ",".join(str(w) for w in row.widths),
        f"{row.distinct:,}",
        value_text(row.first_value),
        value_text(row.last_value),
        format_ts(row.first_ts),
        format_ts(row.last_ts),
        f"{row.threads:,}",
    )


def table(rows: list[Row]) -> list[str]:
    """The header and one line per row, columns padded to their widest cell."""
    cells = [HEADER, *(row_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    out = []
    for c in cells:
        parts = [c[i].rjust(widths[i]) if _RIGHT[i] else c[i].ljust(widths[i]) for i in range(len(HEADER))]
        out.append("  ".join(parts).rstrip())
    return out


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


def totals_line(s: Summary) -> str:
    if not s.accesses:
        text = "no accesses"
    else:
        assert s.first_ts is not None and s.last_ts is not None
        text = (
            f"{s.accesses:,} accesses ({s.reads:,} reads, {s.writes:,} writes) in {len(s.rows):,} "
            f"{'row' if len(s.rows) == 1 else 'rows'}, {format_ts(s.first_ts)} to {format_ts(s.last_ts)}"
        )
    text += f"; {s.mappings:,} {'mapping' if s.mappings == 1 else 'mappings'}"
    if s.lost:
        text += f"; {s.lost:,} events lost"
    return text


def format_text(s: Summary) -> Iterator[str]:
    """The text form, line by line (without newlines)."""
    yield totals_line(s)
    if s.rows:
        yield ""
        yield from table(s.rows)
    if s.total_runs:
        yield ""
        shown = len(s.runs)
        several = "s" if s.total_runs != 1 else ""
        head = f"{s.total_runs:,} polling run{several} of {s.min_run}+ reads ({s.polled:,} reads folded)"
        if shown < s.total_runs:
            head += f", the {shown:,} longest"
        yield head + (":" if shown else "")
        for run in s.runs:
            yield "  " + run_line(run)


def _ts(micros: int) -> float:
    return micros / 1_000_000


def row_json(row: Row) -> dict[str, Any]:
    return {
        "type": "row",
        "register": row.register,
        "phys": row.phys,
        "maps": list(row.maps),
        "reads": row.reads,
        "writes": row.writes,
        "widths": list(row.widths),
        "distinct": row.distinct,
        "first_value": row.first_value,
        "last_value": row.last_value,
        "first_ts": _ts(row.first_ts),
        "last_ts": _ts(row.last_ts),
        "first_line": row.first_line,
        "last_line": row.last_line,
        "threads": row.threads,
        "runs": row.runs,
        "polled": row.polled,
        "longest_run": row.longest,
    }


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
        "first_ts": _ts(run.first_ts),
        "last_ts": _ts(run.last_ts),
        "seconds": _ts(run.micros),
        "first_line": run.first_line,
        "last_line": run.last_line,
    }


def totals_json(s: Summary) -> dict[str, Any]:
    return {
        "type": "totals",
        "accesses": s.accesses,
        "reads": s.reads,
        "writes": s.writes,
        "rows": len(s.rows),
        "runs": s.total_runs,
        "polled": s.polled,
        "min_run": s.min_run,
        "mappings": s.mappings,
        "lost": s.lost,
        "first_ts": None if s.first_ts is None else _ts(s.first_ts),
        "last_ts": None if s.last_ts is None else _ts(s.last_ts),
    }


def format_json(s: Summary) -> Iterator[dict[str, Any]]:
    """The JSON objects: rows, runs, totals."""
    for row in s.rows:
        yield row_json(row)
    for run in s.runs:
        yield run_json(run)
    yield totals_json(s)
