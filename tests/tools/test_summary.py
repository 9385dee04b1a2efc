"""``kmmio summary``'s counting (kmmio.tools.summary): equal to a plain Python reference on
random logs, whatever the chunk and batch boundaries, with and without a register map;
polling runs folded exactly; hash tables that grow; values wider than 64 bits exact."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmmio.maps import Decoder, RegisterMap, load_map
from kmmio.tools import scan as scan_mod
from kmmio.tools.progress import FileProgress
from kmmio.tools.scan import scan
from kmmio.tools.summary import MIN_RUN, Aggregator, Row, Run, Summary, aggregate, summarize
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


def reference(text: str, regmap: RegisterMap | None = None, top: int = 20, min_run: int = MIN_RUN) -> Summary:
    """The summary as the module docstring defines it, computed the plain way."""
    decoder = Decoder(regmap) if regmap is not None else None

    def row_key(kind: str, width: int, map_id: int, phys: int) -> tuple[object, str | None, int]:
        if decoder is not None:
            d = decoder.decode_at(kind, phys, width, 0)
            if d.registers:
                reg = d.registers[0].register
                return reg.path, reg.path, reg.address
        return (map_id, phys), None, phys

    rows: dict[object, _Acc] = {}
    runs: list[Run] = []
    # tid -> [map, phys, width, count, first ts, first value, first line, last ts, last value, last line]
    open_runs: dict[int, list[int]] = {}
    mappings = lost = 0
    first_access: tuple[int, int] | None = None
    last_access: tuple[int, int] | None = None

    def close(tid: int) -> None:
        r = open_runs.pop(tid, None)
        if r is not None and r[3] >= min_run:
            key, name, _ = row_key("R", r[2], r[0], r[1])
            runs.append(Run(name, r[0], r[1], r[2], tid, r[3], r[5], r[8], r[4], r[7], r[6], r[9]))
            rows[key].runs.append(r[3])

    for no, line in enumerate(text.splitlines(), 1):
        rec = parse_line(line, no)
        if isinstance(rec, Access):
            kind = rec.kind.value
            key, name, address = row_key(kind, rec.width, rec.map_id, rec.phys)
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
            if kind == "R" and r is not None and (r[0], r[1], r[2]) == (rec.map_id, rec.phys, rec.width):
                r[3] += 1
                r[7:10] = [rec.ts, rec.value, no]
                continue
            close(rec.pid)
            if kind == "R":
                open_runs[rec.pid] = [
                    rec.map_id,
                    rec.phys,
                    rec.width,
                    1,
                    rec.ts,
                    rec.value,
                    no,
                    rec.ts,
                    rec.value,
                    no,
                ]
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

    out = Summary(mappings=mappings, lost=lost, min_run=min_run)
    for a in rows.values():
        assert a.first is not None and a.last is not None
        out.rows.append(
            Row(
                a.register,
                a.phys,
                tuple(sorted(a.maps)),
                a.reads,
                a.writes,
                tuple(sorted(a.widths)),
                len(a.written),
                a.first[2],
                a.last[2],
                a.first[1],
                a.last[1],
                a.first[0],
                a.last[0],
                len(a.tids),
                len(a.runs),
                sum(a.runs),
                max(a.runs, default=0),
            )
        )
        out.reads += a.reads
        out.writes += a.writes
    out.rows.sort(key=lambda r: (-r.count, r.first_line))
    out.total_runs = len(runs)
    out.polled = sum(r.count for r in runs)
    out.runs = sorted(runs, key=lambda r: (-r.count, r.first_line))[:top]
    if first_access is not None and last_access is not None:
        out.first_ts, out.last_ts = first_access[1], last_access[1]
    return out


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


def ours(text: str, regmap: RegisterMap | None = None, top: int = 20, chunk: int = scan_mod.CHUNK) -> Summary:
    return aggregate(scan(io.BytesIO(text.encode()), chunk=chunk), top).result(regmap)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    logs,
    st.sampled_from([None, TDEV]),
    st.integers(0, 6),
    st.sampled_from([1, 2, 3, 5, scan_mod.ROWS]),
    st.sampled_from([64, 1 << 20]),
    st.booleans(),
    st.booleans(),
)
def test_random_logs_equal_the_reference(
    records: list[Record],
    regmap: RegisterMap | None,
    top: int,
    rows: int,
    chunk: int,
    blanks: bool,
    forget: bool,
) -> None:
    text = text_of(records, blanks)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scan_mod, "ROWS", rows)
        if forget:  # wide read values pruned at every batch
            mp.setattr(Aggregator, "WIDE_KEEP", 0)
        assert ours(text, regmap, top, chunk) == reference(text, regmap, top)


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
    got = ours(text)
    assert got == reference(text)
    assert got.runs == [
        Run(None, 1, BASE + 4, 4, 1, 6, 0x0, 0x1, 12_000_010, 13_203_010, 2, 9),
        Run(None, 1, BASE + 8, 2, 1, 3, 0x5, 0x6, 13_203_050, 13_203_070, 13, 15),
        Run(None, 1, BASE + 8, 2, 1, 3, 0x6, 0x6, 13_203_080, 13_203_100, 17, 19),
    ]
    assert (got.total_runs, got.polled) == (3, 12)
    status = next(r for r in got.rows if r.phys == BASE + 4)
    assert (status.reads, status.runs, status.polled, status.longest) == (6, 1, 6, 6)
    named = ours(text, TDEV)
    assert [r.register for r in named.runs] == ["tdev.STATUS", "tdev.LEN16", "tdev.LEN16"]
    from kmmio.tools.summary_format import run_line

    assert run_line(named.runs[0]) == (
        "R tdev.STATUS x6 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 1, lines 2-9)"
    )
    assert run_line(named.runs[2]) == "R tdev.LEN16 x3 0x6 after 0.00002 s  (2 bytes, tid 1, lines 17-19)"


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
        assert [(r.count, r.tid) for r in got.runs] == [(12, 12), (11, 11), (10, 10), (9, 9)]
        assert got.runs[0].first_value == 0 and got.runs[0].last_value == 2
        assert (got.total_runs, got.polled) == (10, sum(range(3, 13)))
        assert got == reference(text, top=4)
    assert ours(text, top=0).runs == []


def test_ties_keep_the_earlier_run() -> None:
    recs = [_r(i, 0x4 * (i // 3), 0, tid=1) for i in range(12)]  # four runs of 3
    got = ours(text_of(recs), top=2)
    assert [r.first_line for r in got.runs] == [1, 4]


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
    got = ours(text, TDEV)
    assert got == reference(text, TDEV)
    ctrl, wide_row = got.rows
    assert (ctrl.register, ctrl.phys, ctrl.widths, ctrl.distinct, ctrl.threads) == (
        "tdev.CTRL",
        BASE,
        (1, 4, 8),
        2,
        3,
    )
    assert (wide_row.register, wide_row.phys, wide_row.distinct) == (None, BASE + 0x20, 2)
    assert (wide_row.first_value, wide_row.last_value) == (wide, wide)
    plain = ours(text)
    assert [(r.phys, r.widths, r.distinct) for r in plain.rows] == [
        (BASE, (1, 4, 8), 2),
        (BASE + 0x20, (16,), 2),
    ]


def test_wide_polling_values_survive_forgetting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Aggregator, "WIDE_KEEP", 0)
    monkeypatch.setattr(scan_mod, "ROWS", 2)
    a, b = (1 << 255) + 1, (1 << 255) + 2
    recs: list[Record] = [_r(i, 0x40, a if i < 6 else b, width=32) for i in range(8)]
    recs += [_r(100 + i, 0x40, (1 << 70) + i, width=32, tid=2) for i in range(5)]
    got = ours(text_of(recs))
    assert [(r.count, r.first_value, r.last_value) for r in got.runs] == [
        (8, a, b),
        (5, 1 << 70, (1 << 70) + 4),
    ]


def test_the_same_address_in_two_maps_is_two_rows_without_a_map_one_register_with() -> None:
    recs: list[Record] = [_w(1, 0x4, 1, map_id=1), _w(2, 0x4, 1, map_id=2), _w(3, 0x4, 2, map_id=2)]
    text = text_of(recs)
    assert [(r.maps, r.writes, r.distinct) for r in ours(text).rows] == [((2,), 2, 2), ((1,), 1, 1)]
    (status,) = ours(text, TDEV).rows
    assert (status.register, status.maps, status.writes, status.distinct) == ("tdev.STATUS", (1, 2), 3, 2)


def test_tables_grow() -> None:
    """Thousands of addresses, values and threads: every table doubles many times."""
    recs: list[Record] = []
    for i in range(30_000):
        off = (i * 7919) % 5000 * 4
        recs.append(_w(i, off, i % 4099, tid=i % 300) if i % 3 else _r(i, off, i, tid=i % 300))
    text = text_of(recs)
    got = ours(text)
    assert len(got.rows) == 5000
    assert got == reference(text)


def test_an_empty_log() -> None:
    got = ours("VERSION 20070824\n")
    assert got == Summary(mappings=0) and got.first_ts is None


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
