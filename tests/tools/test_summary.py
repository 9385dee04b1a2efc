"""``kmmio summary``'s counting (kmmio.tools.summary): equal to a plain Python reference on
random logs, whatever the chunk and batch boundaries, the memory budget (spills to the
temporary file) and the row chunks, with and without a register map; polling runs folded
exactly, following rows; one row per address across map ids; caps; values wider than 64
bits exact; memory bounded by the budget and rows streamed."""

from __future__ import annotations

import gc
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmmio.maps import Decoder, RegisterMap, load_map
from kmmio.tools import scan as scan_mod
from kmmio.tools import summary as summary_mod
from kmmio.tools.progress import FileProgress
from kmmio.tools.scan import scan
from kmmio.tools.summary import MIN_RUN, Aggregator, Row, Run, Summary, Totals, aggregate, summarize
from kmmio.trace import (
    Access,
    KernelAccess,
    Kind,
    Map,
    Mark,
    Record,
    Unknown,
    format_record,
    parse_line,
)

DATA = Path(__file__).parents[1] / "maps" / "data"
BASE = 0xF7C00000
TDEV = load_map(str(DATA / "tdev.rdl"), BASE)

#: What a summary says: its rows (in order), kept runs and totals.
View = tuple[list[Row], list[Run], Totals]


def view(s: Summary) -> View:
    return list(s.rows()), s.runs, s.totals


# --- the reference: every access looked at in Python, from the reader's records --------------


@dataclass
class _Acc:
    register: str | None
    phys: int
    maps: set[int] = field(default_factory=set)
    reads: int = 0
    writes: int = 0
    widths: set[int] = field(default_factory=set)
    written: set[int] = field(default_factory=set)
    tids: set[int] = field(default_factory=set)
    first: tuple[int, int, int] | None = None  # line, ts, value
    last: tuple[int, int, int] | None = None
    runs: list[int] = field(default_factory=list)


def reference(
    text: str,
    regmap: RegisterMap | None = None,
    top: int = 20,
    min_run: int = MIN_RUN,
    caps: tuple[int, int, int] = (65536, 65536, 8),
) -> View:
    """The summary as the module docstring defines it, computed the plain way."""
    decoder = Decoder(regmap) if regmap is not None else None

    def row_key(kind: str, width: int, phys: int) -> tuple[object, str | None, int]:
        if decoder is not None:
            d = decoder.decode_at(kind, phys, width, 0)
            if d.registers:
                reg = d.registers[0].register
                return reg.path, reg.path, reg.address
        return phys, None, phys

    rows: dict[object, _Acc] = {}
    runs: list[Run] = []
    # tid -> [row key, width, map of its first read, count, first ts, first value, first line,
    # last ts, last value, last line]
    open_runs: dict[int, list[Any]] = {}
    mappings = lost = 0
    first_access: tuple[int, int] | None = None
    last_access: tuple[int, int] | None = None

    def close(tid: int) -> None:
        r = open_runs.pop(tid, None)
        if r is not None and r[3] >= min_run:
            a = rows[r[0]]
            runs.append(Run(a.register, r[2], a.phys, r[1], tid, r[3], r[5], r[8], r[4], r[7], r[6], r[9]))
            a.runs.append(r[3])

    for no, line in enumerate(text.splitlines(), 1):
        rec = parse_line(line, no)
        if isinstance(rec, Access):
            kind = rec.kind.value
            key, name, address = row_key(kind, rec.width, rec.phys)
            a = rows.setdefault(key, _Acc(name, address))
            a.maps.add(rec.map_id)
            a.widths.add(rec.width)
            a.tids.add(rec.pid)
            if kind == "W":
                a.writes += 1
                a.written.add(rec.value)
            else:
                a.reads += 1
            if a.first is None:
                a.first = (no, rec.ts, rec.value)
            a.last = (no, rec.ts, rec.value)
            first_access = first_access or (no, rec.ts)
            last_access = (no, rec.ts)
            r = open_runs.get(rec.pid)
            if kind == "R" and r is not None and (r[0], r[1]) == (key, rec.width):
                r[3] += 1
                r[7:10] = [rec.ts, rec.value, no]
                continue
            close(rec.pid)
            if kind == "R":
                first = [rec.ts, rec.value, no]
                open_runs[rec.pid] = [key, rec.width, rec.map_id, 1, *first, *first]
        elif isinstance(rec, KernelAccess):
            close(rec.tid)
        elif isinstance(rec, Unknown):
            close(rec.pid)
        elif isinstance(rec, Map):
            mappings += 1
        elif isinstance(rec, Mark) and rec.text.startswith("Lost ") and rec.text.endswith(" events."):
            lost += int(rec.text.split()[1])
    for tid in list(open_runs):
        close(tid)

    out: list[Row] = []
    for a in rows.values():
        assert a.first is not None and a.last is not None
        maps = tuple(sorted(a.maps))[: caps[2]]
        out.append(
            Row(
                a.register,
                a.phys,
                maps,
                a.reads,
                a.writes,
                tuple(sorted(a.widths)),
                min(len(a.written), caps[0]),
                a.first[2],
                a.last[2],
                a.first[1],
                a.last[1],
                a.first[0],
                a.last[0],
                min(len(a.tids), caps[1]),
                len(a.runs),
                sum(a.runs),
                max(a.runs, default=0),
                len(a.written) >= caps[0],
                len(a.tids) >= caps[1],
                len(a.maps) >= caps[2],
            )
        )
    out.sort(key=lambda r: (-r.count, r.first_line))
    totals = Totals(
        reads=sum(r.reads for r in out),
        writes=sum(r.writes for r in out),
        rows=len(out),
        total_runs=len(runs),
        polled=sum(r.count for r in runs),
        mappings=mappings,
        lost=lost,
        first_ts=None if first_access is None else first_access[1],
        last_ts=None if last_access is None else last_access[1],
        min_run=min_run,
    )
    return out, sorted(runs, key=lambda r: (-r.count, r.first_line))[:top], totals


# --- random logs ------------------------------------------------------------------------------

OFFSETS = [0x0, 0x1, 0x2, 0x4, 0x6, 0x8, 0xC, 0x10, 0x14, 0x40]
WIDTHS = [1, 2, 4, 8, 16, 32]
TIDS = [7, 8, 9]


def _value(width: int, pick: int) -> int:
    """A few values per width, so that they repeat; wide ones above 64 bits."""
    choices = [0, 1, 0xFF, 0x1234, 1 << 70, (1 << 64) + 5, (1 << 200) + 3]
    return choices[pick % len(choices)] % (1 << (8 * width))


@st.composite
def access(draw: st.DrawFn, read: bool | None = None) -> Access:
    width = draw(st.sampled_from(WIDTHS))
    kind = Kind.READ if read or (read is None and draw(st.integers(0, 2))) else Kind.WRITE
    return Access(
        kind,
        width,
        draw(st.integers(0, 10**8)),
        draw(st.sampled_from([1, 2])),
        BASE + draw(st.sampled_from(OFFSETS)),
        _value(width, draw(st.integers(0, 20))),
        0x401000,
        draw(st.sampled_from(TIDS)),
    )


@st.composite
def polling(draw: st.DrawFn) -> list[Record]:
    """One thread reading one address several times, maybe with another thread between."""
    first = draw(access(read=True))
    out: list[Record] = []
    for _ in range(draw(st.integers(2, 8))):
        out.append(Access(first.kind, first.width, draw(st.integers(0, 10**8)), first.map_id, first.phys,
                          _value(first.width, draw(st.integers(0, 3))), first.pc, first.pid))  # fmt: skip
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(access()))
    return out


others = st.one_of(
    st.builds(Mark, st.integers(0, 10**8), st.sampled_from(["hello", "Lost 3 events.", "Lost 12 events."])),
    st.builds(Map, st.integers(0, 10**8), st.integers(1, 2), st.just(BASE), st.just(0x7F0000000000),
              st.just(0x1000), st.just(0), st.sampled_from(TIDS)),
    st.builds(KernelAccess, st.integers(0, 10**8), st.just("write"), st.just("reads"), st.just(1),
              st.just(BASE), st.just(4), st.sampled_from(TIDS)),
    st.builds(Unknown, st.integers(0, 10**8), st.just(1), st.just(BASE), st.just(b"\x0f\x0b"),
              st.just(0), st.sampled_from(TIDS)),
)  # fmt: skip

logs = st.lists(
    st.one_of(access().map(lambda a: [a]), polling(), others.map(lambda r: [r])), max_size=40
).map(lambda parts: [r for part in parts for r in part])


def text_of(records: list[Record], blanks: bool = False) -> str:
    lines = [format_record(r) for r in records]
    if blanks:
        lines = [x for i, line in enumerate(lines) for x in ([line, ""] if i % 3 else [line, "# note"])]
    return "".join(line + "\n" for line in lines)


def ours(
    text: str, regmap: RegisterMap | None = None, top: int = 20, chunk: int = scan_mod.CHUNK, **options: Any
) -> View:
    items = scan(io.BytesIO(text.encode()), chunk=chunk)
    return view(aggregate(items, top, MIN_RUN, regmap, **options).result())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    logs,
    st.sampled_from([None, TDEV]),
    st.integers(0, 6),
    st.sampled_from([1, 2, 3, 5, scan_mod.ROWS]),
    st.sampled_from([64, 1 << 20]),
    st.booleans(),
    st.sampled_from([summary_mod.BUDGET, 0]),
    st.sampled_from([1, 3, summary_mod.ROW_CHUNK]),
)
def test_random_logs_equal_the_reference(
    records: list[Record],
    regmap: RegisterMap | None,
    top: int,
    rows: int,
    chunk: int,
    blanks: bool,
    budget: int,
    row_chunk: int,
) -> None:
    """Budget 0: the table is spilled to the file before every access (each a partial row
    of its own), and merged back."""
    text = text_of(records, blanks)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scan_mod, "ROWS", rows)
        mp.setattr(summary_mod, "ROW_CHUNK", row_chunk)
        assert ours(text, regmap, top, chunk, budget=budget) == reference(text, regmap, top)


# --- exact cases ------------------------------------------------------------------------------


def _r(ts: int, off: int, value: int, tid: int = 1, width: int = 4, map_id: int = 1) -> Access:
    return Access(Kind.READ, width, ts, map_id, BASE + off, value, 0x401000, tid)


def _w(ts: int, off: int, value: int, tid: int = 1, width: int = 4, map_id: int = 1) -> Access:
    return Access(Kind.WRITE, width, ts, map_id, BASE + off, value, 0x401000, tid)


def test_a_polling_loop_is_one_run_with_the_value_that_ended_it() -> None:
    """STATUS read 6 times by thread 1 (0 five times, then 1) while thread 2 writes
    between; a run of 2 reads is not folded; a write ends a run, so does a syscall."""
    recs: list[Record] = [
        _w(12_000_000, 0x0, 0x1),  # line 1
        _r(12_000_010, 0x4, 0x0),  # 2..
        _r(12_000_020, 0x4, 0x0),
        _w(12_000_025, 0x10, 0x7, tid=2),  # another thread: the run goes on
        _r(12_000_030, 0x4, 0x0),
        Mark(12_000_031, "a mark does not end it"),
        _r(12_000_040, 0x4, 0x0),
        _r(12_000_050, 0x4, 0x0),
        _r(13_203_010, 0x4, 0x1),  # line 9: the end of the wait
        _w(13_203_020, 0x0, 0x0),
        _r(13_203_030, 0x8, 0x5),  # 2 reads: no run
        _r(13_203_040, 0x8, 0x5),
        _r(13_203_050, 0x8, 0x5, width=2),  # another width: a new run
        _r(13_203_060, 0x8, 0x5, width=2),
        _r(13_203_070, 0x8, 0x6, width=2),
        KernelAccess(13_203_071, "write", "reads", 1, BASE, 4, 1),  # ends it
        _r(13_203_080, 0x8, 0x6, width=2),
        _r(13_203_090, 0x8, 0x6, width=2),
        _r(13_203_100, 0x8, 0x6, width=2),
    ]
    text = text_of(recs)
    rows, runs, totals = got = ours(text)
    assert got == reference(text)
    assert runs == [
        Run(None, 1, BASE + 4, 4, 1, 6, 0x0, 0x1, 12_000_010, 13_203_010, 2, 9),
        Run(None, 1, BASE + 8, 2, 1, 3, 0x5, 0x6, 13_203_050, 13_203_070, 13, 15),
        Run(None, 1, BASE + 8, 2, 1, 3, 0x6, 0x6, 13_203_080, 13_203_100, 17, 19),
    ]
    assert (totals.total_runs, totals.polled) == (3, 12)
    status = next(r for r in rows if r.phys == BASE + 4)
    assert (status.reads, status.runs, status.polled, status.longest) == (6, 1, 6, 6)
    named = ours(text, TDEV)[1]
    assert [r.register for r in named] == ["tdev.STATUS", "tdev.LEN16", "tdev.LEN16"]
    from kmmio.tools.summary_format import run_line

    assert run_line(named[0]) == "R tdev.STATUS x6 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 1, lines 2-9)"
    assert run_line(named[2]) == "R tdev.LEN16 x3 0x6 after 0.00002 s  (2 bytes, tid 1, lines 17-19)"


def test_runs_follow_rows() -> None:
    """With a map, reads of one register at one width are one run whatever their byte
    offset in it; without, reads of one address are one run whatever their map id; a
    different width ends a run either way."""
    recs: list[Record] = [
        _r(1, 0x0, 1, width=1),  # CTRL, byte 0
        _r(2, 0x1, 2, width=1),  # CTRL, byte 1
        _r(3, 0x2, 3, width=1),  # CTRL, byte 2
        _r(4, 0x3, 4, width=1),  # CTRL, byte 3
        _r(5, 0x0, 5, width=2),  # CTRL at another width: a new run (of 1)
        _r(6, 0x4, 6, map_id=1),  # STATUS through map 1, then map 2 (the BAR mapped again)
        _r(7, 0x4, 6, map_id=2),
        _r(8, 0x4, 7, map_id=2),
    ]
    text = text_of(recs)
    assert ours(text, TDEV)[1] == [
        Run("tdev.CTRL", 1, BASE, 1, 1, 4, 1, 4, 1, 4, 1, 4),
        Run("tdev.STATUS", 1, BASE + 4, 4, 1, 3, 6, 7, 6, 8, 6, 8),
    ]
    assert ours(text)[1] == [Run(None, 1, BASE + 4, 4, 1, 3, 6, 7, 6, 8, 6, 8)]
    assert ours(text, TDEV) == reference(text, TDEV) and ours(text) == reference(text)


def test_runs_across_batches_and_the_top_n() -> None:
    """Runs of 3, 4, ... 12 reads, each by its own thread and interleaved: the longest kept,
    whatever the batch size."""
    recs: list[Record] = []
    for step in range(12):
        for tid in range(3, 13):
            if step < tid:
                recs.append(_r(step * 100 + tid, 0x4 * (tid % 3), step // 5, tid=tid))
    text = text_of(recs)
    for rows in (1, 2, 7, 1000):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(scan_mod, "ROWS", rows)
            got = ours(text, top=4)
        runs, totals = got[1], got[2]
        assert [(r.count, r.tid) for r in runs] == [(12, 12), (11, 11), (10, 10), (9, 9)]
        assert runs[0].first_value == 0 and runs[0].last_value == 2
        assert (totals.total_runs, totals.polled) == (10, sum(range(3, 13)))
        assert got == reference(text, top=4)
    assert ours(text, top=0)[1] == []


def test_ties_keep_the_earlier_run() -> None:
    recs = [_r(i, 0x4 * (i // 3), 0, tid=1) for i in range(12)]  # four runs of 3
    assert [r.first_line for r in ours(text_of(recs), top=2)[1]] == [1, 4]


def test_rows_merge_widths_and_count_distinct_values_exactly() -> None:
    """CTRL written at widths 1, 2, 4 and 8 (the same number twice at two widths counts
    once), read by two threads; wide values kept whole and counted apart from their low
    bits."""
    wide = (1 << 100) | 0xFF
    recs: list[Record] = [
        _w(1, 0x0, 0xFF, width=1),
        _w(2, 0x0, 0xFF, width=4),
        _w(3, 0x0, 0x10000009, width=4),
        _w(4, 0x0, 0x10000009, width=8, tid=2),
        _r(5, 0x0, 0x10000009, tid=3),
        _w(6, 0x20, wide, width=16),
        _w(7, 0x20, 0xFF, width=16),
        _w(8, 0x20, wide, width=16),
        _r(9, 0x20, wide, width=16),
    ]
    text = text_of(recs)
    for budget in (summary_mod.BUDGET, 0):
        got = ours(text, TDEV, budget=budget)
        assert got == reference(text, TDEV)
        ctrl, wide_row = got[0]
        assert (ctrl.register, ctrl.phys, ctrl.widths, ctrl.distinct, ctrl.threads) == (
            "tdev.CTRL",
            BASE,
            (1, 4, 8),
            2,
            3,
        )
        assert (wide_row.register, wide_row.phys, wide_row.distinct) == (None, BASE + 0x20, 2)
        assert (wide_row.first_value, wide_row.last_value) == (wide, wide)
        plain = ours(text, budget=budget)[0]
        assert [(r.phys, r.widths, r.distinct) for r in plain] == [
            (BASE, (1, 4, 8), 2),
            (BASE + 0x20, (16,), 2),
        ]


def test_wide_polling_values() -> None:
    a, b = (1 << 255) + 1, (1 << 255) + 2
    recs: list[Record] = [_r(i, 0x40, a if i < 6 else b, width=32) for i in range(8)]
    recs += [_r(100 + i, 0x40, (1 << 70) + i, width=32, tid=2) for i in range(5)]
    recs.append(_r(200, 0x80, (1 << 511) + 7, width=64))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scan_mod, "ROWS", 2)
        rows, runs, _ = ours(text_of(recs), budget=0)
    assert [(r.count, r.first_value, r.last_value) for r in runs] == [
        (8, a, b),
        (5, 1 << 70, (1 << 70) + 4),
    ]
    assert [(r.first_value, r.last_value) for r in rows] == [(a, (1 << 70) + 4), ((1 << 511) + 7,) * 2]


def test_one_row_per_address_whatever_its_map_ids() -> None:
    """A BAR unmapped and mapped again: its address is one row listing both map ids (as
    ``kmmio diff`` ignores map ids); with a map, one register."""
    recs: list[Record] = [
        Map(0, 1, BASE, 0x7F0000000000, 0x1000, 0x401000, 1),
        _w(1, 0x4, 1, map_id=1),
        Map(2, 2, BASE, 0x7F0000001000, 0x1000, 0x401000, 1),
        _w(3, 0x4, 1, map_id=2),
        _w(4, 0x4, 2, map_id=2),
    ]
    text = text_of(recs)
    (row,), _, totals = ours(text)
    assert (row.register, row.phys, row.maps, row.writes, row.distinct) == (None, BASE + 4, (1, 2), 3, 2)
    assert (totals.rows, totals.mappings) == (1, 2)
    (status,) = ours(text, TDEV)[0]
    assert (status.register, status.maps, status.writes, status.distinct) == ("tdev.STATUS", (1, 2), 3, 2)


@pytest.mark.parametrize("budget", [summary_mod.BUDGET, 0])
def test_caps_are_lower_bounds(budget: int) -> None:
    """With caps of 3 values, 2 threads and 2 map ids: a row at a cap shows the cap and
    says so; below it, exact; the same when every access is a partial row of its own."""
    recs: list[Record] = [_w(i, 0x0, i) for i in range(5)]  # 5 values: 3, capped
    recs += [_w(10 + i, 0x4, i) for i in range(3)]  # 3 values: 3, capped (3 or more)
    recs += [_w(20 + i, 0x8, i % 2) for i in range(6)]  # 2 values: exact
    recs += [_r(30 + i, 0xC, 0, tid=i) for i in range(4)]  # 4 threads: 2, capped
    recs += [_r(40 + i, 0x10, 0, map_id=i + 1) for i in range(3)]  # 3 map ids: 2 listed
    rows = ours(text_of(recs), caps=(3, 2, 2), budget=budget)[0]
    assert [(r.phys - BASE, r.distinct, r.distinct_capped, r.threads, r.threads_capped) for r in rows] == [
        (0x8, 2, False, 1, False),
        (0x0, 3, True, 1, False),
        (0xC, 0, False, 2, True),
        (0x4, 3, True, 1, False),
        (0x10, 0, False, 1, False),
    ]
    maps = rows[-1]
    assert (len(maps.maps), maps.maps_capped) == (2, True)
    if budget == summary_mod.BUDGET:
        assert maps.maps == (1, 2)


def test_a_register_settled_by_the_decoder() -> None:
    """An access straddling two registers (STATUS and LEN16 in one 8-byte read) is counted
    on the first, as ``kmmio decode`` names it; the decoder is asked once per (kind, width,
    address)."""
    recs: list[Record] = [_r(i, 0x4, i, width=8) for i in range(4)]
    text = text_of(recs)
    calls: list[int] = []
    real = Decoder.decode_at

    def counting(self: Decoder, kind: str, phys: int, width: int, value: int) -> Any:
        calls.append(phys)
        return real(self, kind, phys, width, value)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Decoder, "decode_at", counting)
        got = ours(text, TDEV)
    assert calls == [BASE + 4]
    assert [(r.register, r.reads) for r in got[0]] == [("tdev.STATUS", 4)]
    assert got == reference(text, TDEV)


def test_tables_grow() -> None:
    """Thousands of addresses, values and threads: every table doubles many times."""
    recs: list[Record] = []
    for i in range(30_000):
        off = (i * 7919) % 5000 * 4
        recs.append(_w(i, off, i % 4099, tid=i % 300) if i % 3 else _r(i, off, i, tid=i % 300))
    text = text_of(recs)
    got = ours(text)
    assert len(got[0]) == 5000
    assert got == reference(text)


def test_memory_is_bounded_by_the_budget_and_rows_are_streamed() -> None:
    """40,000 addresses written once each (a buffer fill, every 7th with a value wider than
    64 bits) with a 256 KiB budget: the table and the ordered rows never take more than the
    budget (they spill to the file, and are merged back exactly), and Python holds one row
    at a time."""

    def value(i: int) -> int:
        return (1 << 100) + i if i % 7 == 0 else i & 0xFF

    recs: list[Record] = [_w(i, 4 * i, value(i), width=16 if i % 7 == 0 else 4) for i in range(40_000)]
    text = text_of(recs)
    budget = 256 << 10
    agg = aggregate(scan(io.BytesIO(text.encode())), budget=budget)
    summary = agg.result()
    stats = agg.stats()
    assert stats["peak_bytes"] <= budget
    assert (stats["rows"], summary.totals.rows) == (40_000, 40_000)
    assert stats["spills"] > 0 and stats["segments"] == stats["spills"] + 1
    rows = summary.rows()
    for i, row in enumerate(rows):
        assert (row.phys, row.first_line, row.first_value) == (BASE + 4 * i, i + 1, value(i))
        if i == 20_000:
            gc.collect()
            assert sum(isinstance(o, Row) for o in gc.get_objects()) == 1
    assert view(summary) == reference(text)


def test_a_tid_above_32_bits_ends_no_run() -> None:
    """No access has a tid above 32 bits (the reader holds them to 32): a syscall MARK
    with one ends nothing (it is not truncated onto thread 1)."""
    agg = Aggregator()
    for item in scan(io.BytesIO(text_of([_r(i, 0x4, 0) for i in range(2)]).encode())):
        assert not isinstance(item, Record)
        agg.add(item)
    agg.note(KernelAccess(3, "write", "reads", 1, BASE, 4, (1 << 32) + 1))
    for item in scan(io.BytesIO(text_of([_r(9, 0x4, 0)]).encode())):
        assert not isinstance(item, Record)
        item.first_line = 3
        agg.add(item)
    (run,) = agg.result().runs
    assert (run.count, run.first_line, run.last_line) == (3, 1, 3)


def test_an_empty_log() -> None:
    rows, runs, totals = ours("VERSION 20070824\n")
    assert (rows, runs, totals) == ([], [], Totals()) and totals.first_ts is None


def test_progress_sees_every_line(tmp_path: Path) -> None:
    recs = [_r(i, 0x4, 0) for i in range(1000)]
    data = text_of(recs).encode()
    progress = FileProgress("log", len(data), stream=io.StringIO(), enabled=True)
    summarize(io.BytesIO(data), progress=progress)
    assert (progress.lines, progress.bytes) == (1000, len(data))


def test_an_aggregator_is_spent_once() -> None:
    agg = Aggregator()
    agg.result()
    with pytest.raises(RuntimeError):
        agg.result()
    with pytest.raises(ValueError):
        Aggregator(min_run=1)
    with pytest.raises(ValueError):
        Aggregator(caps=(1, 1, 9))


def test_one_wide_number_written_at_two_widths_is_one_distinct_value() -> None:
    """Found by the property test above: a 16- and a 32-byte write of the same number."""
    value = 1 << 70
    text = "".join(
        format_record(Access(Kind.WRITE, w, 0, 1, 0xF7C00000, value, 0x401000, 7)) + "\n" for w in (16, 32)
    )
    (row,) = ours(text, None, 0, 64)[0]
    assert (row.writes, row.distinct, row.widths) == (2, 1, (16, 32))
