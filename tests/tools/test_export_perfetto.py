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
