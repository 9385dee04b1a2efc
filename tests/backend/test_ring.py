"""The tracer's end of the agent's record ring (kmmio.backend.ring), without a program: the
records are written here as the agent writes them (ring_layout.h), lane by lane."""

from __future__ import annotations

import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from kmmio.backend.ring import HEADER, LANES, RECORD, RecordRing

LANE_AT, LANE_SIZE, TAIL_AT = 128, 128, 64
REC = struct.Struct("<QIIQQQQQ64s")


class Writer:
    """What the agent's emit() does: reserve a position in the thread's lane, write, publish."""

    def __init__(self, ring: RecordRing, cap: int) -> None:
        self.map = ring._map
        self.cap = cap

    def head(self, lane: int) -> int:
        return int(struct.unpack_from("<Q", self.map, LANE_AT + lane * LANE_SIZE)[0])

    def tail(self, lane: int) -> int:
        return int(struct.unpack_from("<Q", self.map, LANE_AT + lane * LANE_SIZE + TAIL_AT)[0])

    def reserve(self, tid: int) -> int:
        lane = tid % LANES
        pos = self.head(lane)
        struct.pack_into("<Q", self.map, LANE_AT + lane * LANE_SIZE, pos + 1)
        return pos

    def write(self, tid: int, pos: int, ts_us: int, *, kind: int = 0, value: int = 0, width: int = 4) -> None:
        lane = tid % LANES
        at = HEADER + (lane * self.cap + pos % self.cap) * RECORD
        raw = value.to_bytes(64, "little")
        REC.pack_into(self.map, at, pos + 1, kind, width, ts_us, 1, 0x1000 + pos, 0x400000, tid, raw)

    def emit(self, tid: int, ts_us: int, **kw: int) -> None:
        self.write(tid, self.reserve(tid), ts_us, **kw)


def ring(cap: int = 64) -> tuple[RecordRing, Writer]:
    r = RecordRing("kmmio-test-ring", cap)
    return r, Writer(r, cap)


def take_all(r: RecordRing, final: bool = True) -> list[str]:
    lines: list[str] = []
    while True:
        text, _, _ = r.take(final)
        if not text:
            return lines
        lines += text.splitlines()


def stamps(lines: list[str]) -> list[str]:
    return [ln.split()[2] for ln in lines]


def test_a_record_is_its_mmiotrace_line() -> None:
    r, w = ring()
    w.emit(7, 3_000_042, kind=1, value=0xBEEF, width=2)
    w.emit(7, 3_000_043, kind=0, value=0, width=8)
    text, reads, writes = r.take(True)
    assert text == "W 2 3.000042 1 0x1000 0xbeef 0x400000 7\nR 8 3.000043 1 0x1001 0x0 0x400000 7\n"
    assert (reads, writes) == (1, 1)
    assert r.take(True) == ("", 0, 0)
    assert w.tail(7) == 2


def test_the_lanes_come_out_merged_in_time_order() -> None:
    r, w = ring()
    for ts, tid in [(10, 1), (11, 2), (12, 2), (13, 1), (14, 3), (15, 1), (16, 2)]:
        w.emit(tid, ts)
    lines = take_all(r)
    assert [int(ln.split()[-1]) for ln in lines] == [1, 2, 2, 1, 3, 1, 2]
    assert stamps(lines) == [f"0.0000{ts}" for ts in range(10, 17)]


def test_records_stamped_after_the_take_wait_for_a_later_one() -> None:
    r, w = ring()
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    w.emit(1, now - 5)
    w.emit(2, now + 60_000_000)  # a minute ahead: after any take made now
    w.emit(1, now - 4)
    assert len(take_all(r, final=False)) == 2
    assert r.pending() == 1
    (late,) = take_all(r, final=True)
    assert late.endswith(" 2")
    assert r.pending() == 0


def test_a_record_reserved_and_never_written_holds_up_its_lane_only() -> None:
    r, w = ring()
    w.emit(1, 1)
    w.reserve(1)  # its writer died here
    w.emit(1, 3)
    w.emit(2, 2)
    w.emit(2, 4)
    assert stamps(take_all(r)) == ["0.000001", "0.000002", "0.000004"]
    assert r.pending() == 2  # the dead one, and the one behind it
    r.skip()
    assert r.pending() == 1
    assert stamps(take_all(r)) == ["0.000003"]
    assert r.pending() == 0


def test_lanes_are_reused_once_taken_and_a_take_stops_at_its_buffer() -> None:
    cap = 16384
    r, w = ring(cap)
    ts = 0
    for _ in range(3):  # three times round each lane's records
        for _ in range(cap):
            for tid in (5, 6):
                ts += 1
                w.emit(tid, ts, value=ts)
        first, _, _ = r.take(True)  # one take holds 1 MiB of lines, fewer than 2 * cap
        assert 0 < first.count("\n") < 2 * cap
        lines = first.splitlines() + take_all(r)
        assert len(lines) == 2 * cap
        values = [int(ln.split()[5], 16) for ln in lines]
        assert values == list(range(ts - 2 * cap + 1, ts + 1))
    assert w.tail(5) == w.head(5) == 3 * cap


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.booleans()), max_size=120))
def test_every_record_once_in_time_order_each_threads_own_order_kept(
    steps: list[tuple[int, int, bool]],
) -> None:
    """Any interleaving of threads (several sharing a lane): each written record comes out
    once, in time order, a thread's records in the order it made them."""
    r, w = ring(256)
    clock: dict[int, int] = {}
    made: dict[int, list[int]] = {}
    tids = [3, 3 + LANES, 4, 9]  # the first two share a lane
    n = 0
    for gap, who, write in steps:
        tid = tids[who]
        clock[tid] = clock.get(tid, 0) + gap
        # threads sharing a lane reserve in the order they stamp: keep lanes in time order
        lane_ts = max([clock[tid]] + [clock.get(t, 0) for t in tids if t % LANES == tid % LANES])
        clock[tid] = lane_ts
        w.emit(tid, lane_ts, kind=int(write), value=n)
        made.setdefault(tid, []).append(n)
        n += 1
    lines = take_all(r)
    assert len(lines) == n
    ts = [float(s) for s in stamps(lines)]
    assert ts == sorted(ts)
    for tid, values in made.items():
        assert [int(ln.split()[5], 16) for ln in lines if int(ln.split()[-1]) == tid] == values
    assert r.pending() == 0
