"""``kmmio export --format perfetto``: the file parses with the package's own protobuf
classes, has a track per thread and a counter track per register written, and exactly the
events expected: an instant per access (and per UNKNOWN, syscall, MAP, UNMAP, MARK) and a
counter value per register a write touched."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent
from test_export_common import (
    TDEV_LOG,
    TDEV_SVD,
    accesses,
    generated_records,
    labels,
    log_records,
    reference_states,
    trace_demo,
    trace_driver,
    write_log,
)

from kmmio.cli import main
from kmmio.maps import RegisterMap, load_map
from kmmio.tools import scan as scan_mod
from kmmio.tools.export import to_perfetto
from kmmio.trace import Access, Kind, Record
from kmmio.trace.records import KernelAccess, Map, MapInfo, Mark, Unknown, Unmap


@dataclass
class Parsed:
    tracks: dict[int, tuple[str, bool, int]] = field(default_factory=dict)  # uuid -> name, counter, parent
    # track name -> events (ts ns, type, name, categories, annotations, counter value)
    events: dict[str, list[tuple[int, int, str, list[str], dict[str, Any], float | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    packets: int = 0


def parse(path: Path) -> Parsed:
    """The trace, read with perfetto's ``Trace`` message; interned names resolved."""
    trace = Trace()
    trace.ParseFromString(path.read_bytes())
    out = Parsed(packets=len(trace.packet))
    names: dict[int, str] = {}
    cats: dict[int, str] = {}
    args: dict[int, str] = {}
    for p in trace.packet:
        assert p.trusted_packet_sequence_id == to_perfetto.SEQUENCE
        for e in p.interned_data.event_names:
            names[e.iid] = e.name
        for e in p.interned_data.event_categories:
            cats[e.iid] = e.name
        for e in p.interned_data.debug_annotation_names:
            args[e.iid] = e.name
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            assert d.uuid not in out.tracks
            out.tracks[d.uuid] = (d.name, d.HasField("counter"), d.parent_uuid)
        if p.HasField("track_event"):
            e = p.track_event
            assert e.track_uuid in out.tracks, "an event before its track"
            ann: dict[str, Any] = {}
            for a in e.debug_annotations:
                ann[args[a.name_iid]] = getattr(a, a.WhichOneof("value"))
            name = names[e.name_iid] if e.HasField("name_iid") else e.name
            value: float | None = None
            if e.type == TrackEvent.TYPE_COUNTER:
                value = e.counter_value if e.HasField("counter_value") else e.double_counter_value
            out.events[out.tracks[e.track_uuid][0]].append(
                (p.timestamp, e.type, name, [cats[c] for c in e.category_iids], ann, value)
            )
    return out


def check(records: list[Record], out: Path, regmap: RegisterMap | None) -> Parsed:
    """Tracks and events exactly as the documentation says, from the records."""
    got = parse(out)
    threads = {r.pid for r in accesses(records)} | {r.pid for r in records if isinstance(r, Unknown)}
    threads |= {r.tid for r in records if isinstance(r, KernelAccess)}
    # counters: each write's value in every variable it touched
    counters: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for acc, touched in reference_states(records, regmap):
        if acc.kind is Kind.WRITE:
            for name, value, _bits in touched:
                counters[name].append((acc.ts * 1000, value))
    tracks = {name: (counter, parent) for name, counter, parent in got.tracks.values()}
    assert tracks == {
        "mmiotrace": (False, 0),
        "registers": (False, 0),
        **{f"tid {t}": (False, 0) for t in threads},
        **{name: (True, to_perfetto.REGISTERS_TRACK) for name in counters},
    }
    for name, series in counters.items():
        evs = got.events[name]
        assert [(ts, int(v) if v is not None and v == int(v) else v) for ts, _t, _n, _c, _a, v in evs] == [
            (ts, v if v < 2**63 else float(v)) for ts, v in series
        ]
    # instants per thread, in log order
    per_thread: dict[str, list[tuple[int, str, list[str], dict[str, Any]]]] = defaultdict(list)
    log: list[tuple[int, str]] = []
    label = iter(labels(records, regmap))
    for rec in records:
        match rec:
            case Access():
                kind = "write" if rec.kind is Kind.WRITE else "read"
                ann = {"value": f"{rec.value:#x}", "width": rec.width, "pc": rec.pc, "phys": rec.phys}
                per_thread[f"tid {rec.pid}"].append((rec.ts * 1000, next(label), [kind], ann))
            case Unknown():
                code = ",".join(f"{b:02x}" for b in rec.code)
                ann = {"map": rec.map_id, "phys": rec.phys, "pc": rec.pc}
                per_thread[f"tid {rec.pid}"].append((rec.ts * 1000, f"UNKNOWN {code}", ["unknown"], ann))
            case KernelAccess():
                ann = {
                    "map": rec.map_id,
                    "phys": rec.phys,
                    **({} if rec.length is None else {"length": rec.length}),
                }
                name = f"syscall {rec.syscall} {rec.direction}"
                per_thread[f"tid {rec.tid}"].append((rec.ts * 1000, name, ["syscall"], ann))
            case Map():
                log.append((rec.ts * 1000, f"MAP {rec.map_id}"))
            case Unmap():
                log.append((rec.ts * 1000, f"UNMAP {rec.map_id}"))
            case Mark() | MapInfo():
                log.append((rec.ts * 1000, rec.text))
    for track, expected in per_thread.items():
        evs = got.events[track]
        assert all(t == TrackEvent.TYPE_INSTANT for _ts, t, _n, _c, _a, _v in evs)
        assert [(ts, name, cats, ann) for ts, _t, name, cats, ann, _v in evs] == expected, track
    assert [(ts, name) for ts, _t, name, _c, _a, _v in got.events["mmiotrace"]] == log
    total = sum(len(v) for v in per_thread.values()) + len(log) + sum(len(v) for v in counters.values())
    assert sum(len(v) for v in got.events.values()) == total
    return got


def export(log: Path, out: Path, *args: str) -> None:
    assert main(["export", str(log), "--format", "perfetto", "-o", str(out), "-q", *args]) == 0


def test_tdev_with_a_map(tmp_path: Path) -> None:
    recs = log_records(TDEV_LOG)
    out = tmp_path / "t.pftrace"
    export(TDEV_LOG, out, "--map", TDEV_SVD)
    got = check(recs, out, load_map(TDEV_SVD))
    assert sorted(name for name, counter, _ in got.tracks.values() if counter) == [
        "0xf7c0000c", "tdev.CTRL", "tdev.LEN16", "tdev.QUEUE[0]", "tdev.QUEUE[1]",
    ]  # fmt: skip
    names = [n for _ts, _t, n, _c, _a, _v in got.events["tid 4243"]]
    assert names == ["tdev.CTRL[7:0]", "tdev.CTRL[23:8]", "tdev.QUEUE[0],tdev.QUEUE[1]"]
    assert [v for *_, v in got.events["tdev.CTRL"]] == [0x10000009, 0x1000FF09, 0x0040FF09]
    assert sum(len(v) for v in got.events.values()) == 25  # 14 accesses, MAP, MARK, UNMAP, 8 counter values


def test_tdev_without_a_map(tmp_path: Path) -> None:
    out = tmp_path / "t.pftrace"
    export(TDEV_LOG, out)
    got = check(log_records(TDEV_LOG), out, None)
    assert len([1 for _, counter, _ in got.tracks.values() if counter]) == 7  # addresses written


@pytest.mark.parametrize("with_map", [False, True], ids=["addresses", "registers"])
def test_generated_log_in_small_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_map: bool
) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 250)
    monkeypatch.setattr(to_perfetto, "CHUNK", 97)  # many Trace messages, one after another
    recs = generated_records(2500, seed=11)
    log = write_log(tmp_path / "gen.log", recs)
    out = tmp_path / "gen.pftrace"
    export(log, out, *(["--map", TDEV_SVD] if with_map else []))
    got = check(recs, out, load_map(TDEV_SVD) if with_map else None)
    assert got.packets > 97 * 10


def test_values_past_int64_are_doubles(tmp_path: Path) -> None:
    recs: list[Record] = [
        Access(Kind.WRITE, 8, 5, 1, 0x10, 2**64 - 1, 0, 7),
        Access(Kind.WRITE, 16, 6, 1, 0x20, 2**100 + 3, 0, 7),
        Access(Kind.WRITE, 8, 7, 1, 0x10, 2**63 - 1, 0, 7),
    ]
    out = tmp_path / "big.pftrace"
    export(write_log(tmp_path / "big.log", recs), out)
    got = check(recs, out, None)
    assert [v for *_, v in got.events["0x10"]] == [float(2**64 - 1), 2**63 - 1]
    assert got.events["tid 7"][1][4]["value"] == f"{2**100 + 3:#x}"


@pytest.mark.ptrace
def test_a_real_trace_of_a_program(tmp_path: Path) -> None:
    log = trace_driver(tmp_path)
    recs = log_records(log)
    out = tmp_path / "driver.pftrace"
    export(log, out)
    got = check(recs, out, None)
    assert len([1 for name, _, _ in got.tracks.values() if name.startswith("tid ")]) == 3  # main + 2 workers
    counts = Counter(name for name, counter, _ in got.tracks.values() if counter)
    assert len(counts) == len(
        {f"{a.phys:#x}" for a in accesses(recs) if isinstance(a, Access) and a.kind is Kind.WRITE}
    )


@pytest.mark.ptrace
def test_the_demo_driver(tmp_path: Path) -> None:
    log = trace_demo(tmp_path)
    recs = log_records(log)
    out = tmp_path / "demo.pftrace"
    export(log, out)
    got = check(recs, out, None)
    assert [v for *_, v in got.events["0x18"]] == [0xC5]  # CMD, written once


def test_the_kernels_marks_at_zero_take_the_time_around_them(tmp_path: Path) -> None:
    """``MARK 0.000000 Lost N events.`` (the kernel writes no time) is placed at the last
    event's time, or the first one's when it comes first, not at 0."""
    recs: list[Record] = [
        Mark(0, "Lost 1 events."),  # before any time: at the first event's
        Access(Kind.WRITE, 4, 5_000_000, 1, 0x10, 1, 0, 7),
        Access(Kind.READ, 4, 5_000_002, 1, 0x10, 1, 0, 7),
        Mark(0, "Lost 2 events."),  # at the last event's
        Mark(6_000_000, "a mark with a time"),
        Mark(0, "Lost 3 events."),
        MapInfo(0, 1, "/dev/mem", "file", "", ""),  # kmmio's own record keeps its time
    ]
    out = tmp_path / "m.pftrace"
    export(write_log(tmp_path / "m.log", recs), out)
    log = [(ts, name) for ts, _type, name, _cats, _ann, _v in parse(out).events["mmiotrace"]]
    assert log == [
        (5_000_000_000, "Lost 1 events."),
        (5_000_002_000, "Lost 2 events."),
        (6_000_000_000, "a mark with a time"),
        (6_000_000_000, "Lost 3 events."),
        (0, "map 1 /dev/mem file"),
    ]


def test_only_kernel_marks_stay_at_zero(tmp_path: Path) -> None:
    out = tmp_path / "z.pftrace"
    export(write_log(tmp_path / "z.log", [Mark(0, "Lost 4 events.")]), out)
    assert [(e[0], e[2]) for e in parse(out).events["mmiotrace"]] == [(0, "Lost 4 events.")]


def test_a_time_past_perfettos_clock_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "t.log", [Access(Kind.READ, 4, 2**64 // 1000 + 1, 1, 0x10, 1, 0, 7)])
    out = tmp_path / "t.pftrace"
    assert main(["export", str(log), "-f", "perfetto", "-o", str(out), "-q"]) == 2
    assert capsys.readouterr().err == (
        "kmmio: timestamp 18446744073.709552 is past the end of Perfetto's clock (2**64 ns, 18446744073 s)\n"
    )
    assert not out.exists()


def test_interned_names_start_over_past_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(to_perfetto, "MAX_NAMES", 8)
    recs: list[Record] = [Access(Kind.WRITE, 4, i, 1, 0x1000 + 4 * (i % 20), i, 0, 7) for i in range(100)]
    out = tmp_path / "n.pftrace"
    export(write_log(tmp_path / "n.log", recs), out)
    parsed = parse(out)
    assert [e[2] for e in parsed.events["tid 7"]] == [f"{a.phys:#x}" for a in recs]  # type: ignore[attr-defined]
    trace = Trace()
    trace.ParseFromString(out.read_bytes())
    cleared = [p for p in trace.packet if p.sequence_flags & p.SEQ_INCREMENTAL_STATE_CLEARED]
    # 20 addresses in turn, 8 names at most: the start, then a clear at accesses 8, 16, ... 96
    assert len(cleared) == 1 + 12
    assert sum(len(p.interned_data.event_names) for p in trace.packet) == 100


class Discard:
    """A sink that keeps nothing."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def peak_bytes(n: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """tracemalloc's peak while exporting ``n`` writes to ``n`` distinct addresses."""
    import io
    import tracemalloc

    from kmmio.tools.export.names import Namer

    text = "".join(
        f"W 4 1.{i % 1_000_000:06d} 1 {0x80000000 + 4 * i:#x} 0x{i:x} 0x401000 7\n" for i in range(n)
    )
    data = io.BytesIO(text.encode())
    monkeypatch.setattr(to_perfetto, "MAX_NAMES", 1024)  # interned names: bounded, 65,536 by default
    monkeypatch.setattr(scan_mod, "ROWS", 1024)  # a batch (and its rows as integers): bounded too
    tracemalloc.start()
    try:
        to_perfetto.export_perfetto(data, Discard(), Namer(None, cache_size=256), chunk=256)  # type: ignore[arg-type]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_per_distinct_address_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """A counter track per address written is the format's; what the exporter keeps for
    each is one dict entry (int to int): under 200 bytes an address, measured as the
    growth of the peak from 20,000 to 60,000 addresses (the bounded caches made small).
    It was 440 bytes with a ``Var`` per address."""
    peak_bytes(1000, monkeypatch)  # imports done before measuring
    small = peak_bytes(20_000, monkeypatch)
    grow = (peak_bytes(60_000, monkeypatch) - small) / 40_000
    assert grow < 200, grow
