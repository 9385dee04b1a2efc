"""The tracer's end of the agent's record ring (kmmio.backend.ring), without a program: the
records are written here as the agent writes them (ring_layout.h), lane by lane."""

from __future__ import annotations

import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from kmmio.backend.ring import HEADER, LANES, RECORD, RecordRing

LANE_AT, LANE_SIZE, INFLIGHT_AT, WRITTEN_AT, TAIL_AT = 128, 128, 8, 16, 64
REC = struct.Struct("<QIIQQQQQ64s")
WAITERS_AT = 0


class Writer:
    """What the agent's emit() does, step by step: stamp (the stamp left in the lane's
    ``inflight``), reserve a position, write the record (its stamp then left in
    ``written``).  A thread's lane is ``tid % LANES`` here (the agent hands lanes out
    round robin)."""

    def __init__(self, ring: RecordRing, cap: int) -> None:
        self.map = ring._map
        self.cap = cap

    def _word(self, lane: int, at: int) -> int:
        return int(struct.unpack_from("<Q", self.map, LANE_AT + lane * LANE_SIZE + at)[0])

    def _set(self, lane: int, at: int, value: int) -> None:
        struct.pack_into("<Q", self.map, LANE_AT + lane * LANE_SIZE + at, value)

    def head(self, lane: int) -> int:
        return self._word(lane, 0)

    def tail(self, lane: int) -> int:
        return self._word(lane, TAIL_AT)

    def stamp(self, tid: int, ts_us: int) -> None:
        self._set(tid % LANES, INFLIGHT_AT, ts_us)

    def reserve(self, tid: int) -> int:
        lane = tid % LANES
        pos = self.head(lane)
        self._set(lane, 0, pos + 1)
        return pos

    def write(self, tid: int, pos: int, ts_us: int, *, kind: int = 0, value: int = 0, width: int = 4) -> None:
        lane = tid % LANES
        at = HEADER + (lane * self.cap + pos % self.cap) * RECORD
        raw = value.to_bytes(64, "little")
        REC.pack_into(self.map, at, pos + 1, kind, width, ts_us, 1, 0x1000 + pos, 0x400000, tid, raw)
        self._set(lane, WRITTEN_AT, ts_us)

    def emit(self, tid: int, ts_us: int, **kw: int) -> None:
        self.stamp(tid, ts_us)
        self.write(tid, self.reserve(tid), ts_us, **kw)


def ring(cap: int = 64) -> tuple[RecordRing, Writer]:
    r = RecordRing("kmmio-test-ring", cap)
    return r, Writer(r, cap)


def take_all(r: RecordRing, final: bool = True, now: int | None = None) -> list[str]:
    lines: list[str] = []
    while True:
        text = r.take(final, now).text
        if not text:
            return lines
        lines += text.splitlines()


def stamps(lines: list[str]) -> list[str]:
    return [ln.split()[2] for ln in lines]


def test_a_record_is_its_mmiotrace_line() -> None:
    r, w = ring()
    w.emit(7, 3_000_042, kind=1, value=0xBEEF, width=2)
    w.emit(7, 3_000_043, kind=0, value=0, width=8)
    text, reads, writes, lost, held = r.take(True)
    assert text == "W 2 3.000042 1 0x1000 0xbeef 0x400000 7\nR 8 3.000043 1 0x1001 0x0 0x400000 7\n"
    assert (reads, writes, lost, held) == (1, 1, 0, 0)
    assert r.take(True) == ("", 0, 0, 0, 0)
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


NOW = 10_000_000  # the trace clock of the takes below, in µs


def test_a_record_on_its_way_holds_back_newer_ones_of_other_lanes() -> None:
    """Reserved and not written (its writer between reserving and writing), or stamped and
    not yet reserved: nothing stamped after it goes out before it."""
    for reserved in (True, False):
        r, w = ring()
        w.emit(1, NOW - 30)
        w.stamp(2, NOW - 20)  # thread 2's record, on its way
        pos = w.reserve(2) if reserved else None
        w.emit(1, NOW - 10)
        assert stamps(take_all(r, final=False, now=NOW)) == [f"{(NOW - 30) / 1e6:.6f}"]
        if pos is None:
            pos = w.reserve(2)
        w.write(2, pos, NOW - 20)
        assert [ln.split()[-1] for ln in take_all(r, final=False, now=NOW)] == ["2", "1"]


def test_what_a_hold_keeps_back_is_counted_and_a_buried_record_is_lost() -> None:
    """held: written records stamped before now kept back by one on its way (kmmio waits
    for it before a line of its own); a slot whose writer never came back, written as
    lost (kind 2) by its thread, is counted and lets the lane go on."""
    r, w = ring()
    w.stamp(2, NOW - 20)
    pos = w.reserve(2)
    w.emit(1, NOW - 10)
    got = r.take(False, NOW)
    assert (got.text, got.held) == ("", 1)
    w.write(2, pos, NOW - 20, kind=2)  # buried: emit()'s bury() writes kind 2, no stamp
    w.emit(2, NOW - 5)
    got = r.take(False, NOW)
    assert (got.lost, got.held) == (1, 0)
    assert [ln.split()[-1] for ln in got.text.splitlines()] == ["1", "2"]


def test_a_writer_stalled_too_long_holds_nothing_back() -> None:
    r, w = ring()
    w.stamp(2, NOW - 300_000)  # reserved 0.3 s ago and never written: likely dead
    w.reserve(2)
    w.emit(1, NOW - 10)
    assert [ln.split()[-1] for ln in take_all(r, final=False, now=NOW)] == ["1"]
    assert r.pending() == 1


def test_a_writer_waiting_for_room_gets_it_whatever_the_clocks_say() -> None:
    """A program whose clock runs ahead of the tracer's (not in kmmio's time namespace
    arithmetic: a faked clock) must not wait for ever on a full lane."""
    r, w = ring()
    w.emit(1, NOW + 60_000_000)
    assert take_all(r, final=False, now=NOW) == []
    struct.pack_into("<I", r._map, WAITERS_AT, 1)  # a writer waits for room
    assert len(take_all(r, final=False, now=NOW)) == 1


def test_a_record_reserved_and_never_written_holds_up_its_lane_only() -> None:
    r, w = ring()
    w.emit(1, 1)
    w.reserve(1)  # its writer died here
    w.emit(1, 3)
    w.emit(2, 2)
    w.emit(2, 4)
    assert stamps(take_all(r)) == ["0.000001", "0.000002", "0.000004"]
    assert r.pending() == 2  # the dead one, and the one behind it
    assert r.skip()
    assert r.pending() == 1
    assert stamps(take_all(r)) == ["0.000003"]
    assert r.pending() == 0
    assert not r.skip()  # nothing reserved and unwritten


def test_lanes_are_reused_once_taken_and_a_take_stops_at_its_buffer() -> None:
    cap = 16384
    r, w = ring(cap)
    ts = 0
    for _ in range(3):  # three times round each lane's records
        for _ in range(cap):
            for tid in (5, 6):
                ts += 1
                w.emit(tid, ts, value=ts)
        first = r.take(True).text  # one take holds 1 MiB of lines, fewer than 2 * cap
        assert 0 < first.count("\n") < 2 * cap
        lines = first.splitlines() + take_all(r)
        assert len(lines) == 2 * cap
        values = [int(ln.split()[5], 16) for ln in lines]
        assert values == list(range(ts - 2 * cap + 1, ts + 1))
    assert w.tail(5) == w.head(5) == 3 * cap


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["stamp", "reserve", "write", "take"]), st.integers(0, 3), st.integers(0, 50)
        ),
        max_size=150,
    )
)
def test_any_interleaving_comes_out_once_in_time_order(steps: list[tuple[str, int, int]]) -> None:
    """Four writers on lanes of their own, each going through emit()'s steps in order,
    interleaved in any way, the tracer taking at any moment (its clock moving on): every
    record comes out once, each thread's in its order, all of them in time order."""
    r, w = ring(256)
    clock = NOW
    phase = [0] * 4  # 0: idle, 1: stamped, 2: reserved
    stamp = [0] * 4
    pos = [0] * 4
    made: dict[int, list[int]] = {}
    lines: list[str] = []
    n = 0

    def advance(t: int) -> None:
        nonlocal n
        if phase[t] == 0:
            stamp[t] = clock
            w.stamp(t, clock)
        elif phase[t] == 1:
            pos[t] = w.reserve(t)
        else:
            w.write(t, pos[t], stamp[t], value=n)
            made.setdefault(t, []).append(n)
            n += 1
        phase[t] = (phase[t] + 1) % 3

    for what, t, gap in steps:
        clock += gap
        if what == "take":
            lines += take_all(r, final=False, now=clock)
        else:
            advance(t)
    for t in range(4):
        while phase[t]:
            advance(t)
    lines += take_all(r)
    assert len(lines) == n
    ts = [float(s) for s in stamps(lines)]
    assert ts == sorted(ts)
    for t, values in made.items():
        assert [int(ln.split()[5], 16) for ln in lines if int(ln.split()[-1]) == t] == values
    assert r.pending() == 0
