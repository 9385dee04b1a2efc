"""``kmmio diff`` on generated logs (no process traced): tokens and polling runs, the
alignment, the output, the exit statuses and errors of the command, and properties of
programs rendered as logs twice (hypothesis): equal whatever the tids, map ids, virtual
addresses, timestamps, interleaving of threads and number of polls; one changed written
value or one extra write shown as exactly that access.
"""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kmmio.cli import main
from kmmio.tools import diff_align
from kmmio.tools.diff import DiffResult, diff_logs
from kmmio.tools.diff_align import EOF, resync
from kmmio.tools.diff_tokens import Key, Locator, TokenSource
from kmmio.trace import Access, KernelAccess, Kind, Map, Mark, Record, Unknown, format_record

MAPS = Path(__file__).parents[1] / "maps" / "data"
BASE = 0xF7C00000


def text(records: Sequence[Record]) -> str:
    return "".join(format_record(r) + "\n" for r in records)


def w(off: int, value: int, width: int = 4, tid: int = 100, ts: int = 1_000_000, map_id: int = 1) -> Access:
    return Access(Kind.WRITE, width, ts, map_id, BASE + off, value, 0x401000, tid)


def r(
    off: int, value: int = 0, width: int = 4, tid: int = 100, ts: int = 1_000_000, map_id: int = 1
) -> Access:
    return Access(Kind.READ, width, ts, map_id, BASE + off, value, 0x401000, tid)


def run(a: str, b: str, **kw: object) -> tuple[DiffResult, str]:
    out: list[str] = []
    res = diff_logs(io.BytesIO(a.encode()), io.BytesIO(b.encode()), out.append, **kw)  # type: ignore[arg-type]
    return res, "".join(out)


def changes(out: str) -> list[tuple[str, int]]:
    """The ``-`` and ``+`` lines of an output: (sign, line number in its log)."""
    got = []
    for line in out.splitlines():
        if line.startswith("-") and not line.startswith("---"):
            got.append(("-", int(line[1:9])))
        elif line.startswith("+") and not line.startswith("+++"):
            got.append(("+", int(line[10:18])))
    return got


def context(out: str) -> list[tuple[int, int]]:
    """The context lines of an output: (line in A, line in B)."""
    return [
        (int(x[1:9]), int(x[10:18])) for x in out.splitlines() if x[:1] == " " and x[1:9].strip().isdigit()
    ]


# -- tokens -------------------------------------------------------------------------------


def tokens(log: str, regmap: object = None) -> list[tuple[int, Key, int, int, int]]:
    """(thread, full key: a write's value in it, line, last line, count) of each token."""
    src = TokenSource(io.BytesIO(log.encode()), Locator(None))
    return [(n, t.full, t.line, t.last, t.count) for n, t in src]


def test_a_writes_value_is_not_in_its_key() -> None:
    """The alignment pairs writes on (kind, where, width); the value is kept apart."""
    src = TokenSource(io.BytesIO(text([w(0, 9), r(4, 3)]).encode()), Locator(None))
    assert [(t.key, t.value, t.full) for _, t in src] == [
        (("W", BASE, 4, None), 9, ("W", BASE, 4, 9)),
        (("R", BASE + 4, 4, None), None, ("R", BASE + 4, 4, None)),
    ]


def test_polling_runs_fold_per_thread_and_read_values_are_not_kept() -> None:
    log = text(
        [
            Map(1, 1, BASE, 0x7F0000000000, 0x1000),
            r(4, 1), r(4, 2), r(4, 3, tid=200), r(4, 4), w(0, 9),  # tid 200 does not break 100's run
            r(4, 5), r(4, 5, width=2), r(8), r(8), r(8),
            KernelAccess(2, "write", "reads", 1, BASE + 0x10, 4, 100),
            r(8),
            Unknown(3, 1, BASE + 0xC, b"\x0f\x0b", 0, 200),
        ]
    )  # fmt: skip
    assert tokens(log) == [
        (0, ("R", BASE + 4, 4, None), 2, 5, 3),  # lines 2, 3 and 5: tid 200's read is apart
        (0, ("W", BASE, 4, 9), 6, 6, 1),
        (0, ("R", BASE + 4, 4, None), 7, 7, 1),
        (0, ("R", BASE + 4, 2, None), 8, 8, 1),  # another width: another run
        (0, ("R", BASE + 8, 4, None), 9, 11, 3),
        (0, ("K", BASE + 0x10, 4, "write reads"), 12, 12, 1),
        (1, ("R", BASE + 4, 4, None), 4, 4, 1),  # tid 200's run ends at its UNKNOWN
        (1, ("U", BASE + 0xC, 0, None), 14, 14, 1),
        (0, ("R", BASE + 8, 4, None), 13, 13, 1),  # runs still open are given at the end
    ]


def test_threads_are_numbered_by_first_appearance_and_lost_events_counted() -> None:
    log = text(
        [r(4, tid=7), w(0, 1, tid=5), Mark(1, "Lost 12 events."), w(0, 2, tid=7), Mark(2, "Lost 3 events.")]
    )
    src = TokenSource(io.BytesIO(log.encode()), Locator(None))
    assert [(n, t.value) for n, t in src] == [(1, 1), (0, None), (0, 2)]
    assert (src.stats.tids, src.stats.accesses, src.stats.lost, src.stats.lines) == ([7, 5], 3, 15, 5)


def test_locator_names_registers_with_a_map() -> None:
    from kmmio.maps import load_map

    loc = Locator(load_map(str(MAPS / "tdev.rdl"), BASE))
    assert loc("W", BASE, 4) == "tdev.CTRL"
    assert loc("R", BASE + 1, 2) == "tdev.CTRL[23:8]"
    assert loc("W", BASE + 0xC, 4) == "?@0xf7c0000c"
    assert Locator(None)("W", BASE, 4) == BASE


# -- resync -------------------------------------------------------------------------------


def keys(s: str) -> list[Key]:
    """``"abc$"`` → keys a, b, c and EOF."""
    return [EOF if c == "$" else ("W", 0, 4, ord(c)) for c in s]


@pytest.mark.parametrize(
    ("a", "b", "point"),
    [
        ("xabcdef", "abcdef", (1, 0)),  # one extra in A
        ("abcdef", "yabcdef", (0, 1)),  # one extra in B
        ("xbcdef", "ybcdef", (1, 1)),  # one changed
        ("x$", "y$", (1, 1)),  # changed at the very end
        ("x$", "$", (1, 0)),
        ("xyzabcd", "abcd", (3, 0)),
        ("xab$", "yab$", (1, 1)),  # the ends agree: fewer than `run` tokens are enough
        ("xabQ", "yabR", None),  # three agree, then not: no point
        ("xyab", "yxab", (2, 2)),  # swapped: ties broken by the most even split
    ],
)
def test_resync(a: str, b: str, point: tuple[int, int] | None) -> None:
    assert resync(keys(a), keys(b), window=10, run=4) == point


def test_resync_stays_in_the_window() -> None:
    assert resync(keys("xyzabcd"), keys("abcd"), window=2, run=4) is None
    assert resync(keys("xyzabcd"), keys("abcd"), window=3, run=4) == (3, 0)


# -- alignment and output ----------------------------------------------------------------


def test_a_log_against_itself_prints_nothing() -> None:
    log = text([Map(1, 1, BASE, 0x7F0000000000, 0x1000), w(0, 1), r(4), r(4), w(8, 2)])
    res, out = run(log, log)
    assert out == ""
    assert res.equal and (res.divergences, res.only_a, res.only_b, res.writes) == (0, 0, 0, {})


def test_what_is_not_compared() -> None:
    """Timestamps, pcs, tids, map ids, virtual addresses, read values, poll counts."""
    a = text([Map(1, 1, BASE, 0x7F0000000000, 0x1000), w(0, 1), r(4, 0), w(8, 2), r(4, 1)])
    b = text(
        [
            Map(5, 3, BASE, 0x7E0000000000, 0x1000),
            Mark(5, "driver: hello"),
            w(0, 1, tid=9, ts=7_000_000, map_id=3),
            *[r(4, i, tid=9, map_id=3) for i in range(50)],
            w(8, 2, tid=9, map_id=3),
            r(4, 7, tid=9, map_id=3),
        ]
    )
    assert run(a, b) == (run(a, b)[0], "")
    assert run(a, b)[0].equal


#: The two logs of the README's example (a changed value, then an extra write).
EX_A = text(
    [
        Map(1, 1, BASE, 0x7F3A2C000000, 0x1000, 0x401160, 4242),
        w(0x0, 0x10000009, tid=4242, ts=12_000_104),
        *[r(0x4, 0x0, tid=4242, ts=12_000_141 + i) for i in range(3)],
        w(0x1, 0xFF, 1, tid=4242, ts=12_000_178),
        w(0x2, 0x40, 2, tid=4242, ts=12_000_215),
        w(0xC, 0x5, tid=4242, ts=12_000_474),
        w(0x14, 0x3123456, tid=4242, ts=12_000_511),
        w(0x10, 0x300000102ABCDEF, 8, tid=4242, ts=12_000_548),
        r(0x10, 0x0, tid=4242, ts=12_000_585),
    ]
)
EX_B = text(
    [
        Map(1, 3, BASE, 0x7F11AA000000, 0x1000, 0x401160, 99),
        w(0x0, 0x10000009, tid=99, ts=20_000_104, map_id=3),
        r(0x4, 0x1, tid=99, ts=20_000_141, map_id=3),
        w(0x1, 0xFF, 1, tid=99, ts=20_000_178, map_id=3),
        w(0x2, 0x41, 2, tid=99, ts=20_000_215, map_id=3),
        w(0xC, 0x5, tid=99, ts=20_000_474, map_id=3),
        w(0x14, 0x3123456, tid=99, ts=20_000_511, map_id=3),
        w(0x18, 0x3123456, tid=99, ts=20_000_520, map_id=3),
        w(0x10, 0x300000102ABCDEF, 8, tid=99, ts=20_000_548, map_id=3),
        r(0x10, 0x0, tid=99, ts=20_000_585, map_id=3),
    ]
)


def test_output_exactly() -> None:
    res, out = run(EX_A, EX_B, names=("a.log", "b.log"))
    assert out == (
        "--- a.log\n"
        "+++ b.log\n"
        "@@ -2 +2 @@ thread 1: tid 4242 in A, 99 in B\n"
        "        2        2  W 4 12.000104 1 0xf7c00000 0x10000009 0x401000 4242\n"
        "        3        3  R 4 12.000141 1 0xf7c00004 0x0 0x401000 4242  [x3 reads in A, x1 in B]\n"
        "        6        4  W 1 12.000178 1 0xf7c00001 0xff 0x401000 4242\n"
        "-       7           W 2 12.000215 1 0xf7c00002 0x40 0x401000 4242\n"
        "+                5  W 2 20.000215 3 0xf7c00002 0x41 0x401000 99  [value differs]\n"
        "        8        6  W 4 12.000474 1 0xf7c0000c 0x5 0x401000 4242\n"
        "        9        7  W 4 12.000511 1 0xf7c00014 0x3123456 0x401000 4242\n"
        "+                8  W 4 20.000520 3 0xf7c00018 0x3123456 0x401000 99\n"
        "       10        9  W 8 12.000548 1 0xf7c00010 0x300000102abcdef 0x401000 4242\n"
        "       11       10  R 4 12.000585 1 0xf7c00010 0x0 0x401000 4242\n"
        "2 divergences: 1 write with a different value, 0 accesses only in A, 1 only in B"
        " (polling runs folded)\n"
        "writes whose values differ at the same place, per register (A -> B):\n"
        "  0xf7c00002/2  0x40 -> 0x41\n"
        "writes only in B, per register:\n"
        "  0xf7c00018/4  0x3123456\n"
    )
    assert (res.divergences, res.shown, res.changed, res.only_a, res.only_b) == (2, 2, 1, 0, 1)
    assert (res.a.tids, res.b.tids, res.a.accesses, res.b.accesses) == ([4242], [99], 10, 9)


def test_with_a_map_registers_are_named() -> None:
    from kmmio.maps import load_map

    _, out = run(EX_A, EX_B, regmap=load_map(str(MAPS / "tdev.rdl"), BASE), context=0)
    assert out.splitlines() == [
        "--- A",
        "+++ B",
        "@@ -7 +5 @@ thread 1: tid 4242 in A, 99 in B",
        "-       7           W 2 12.000215 tdev.CTRL[31:16] 0x40 DIV=0x0040 pc 0x401000 tid 4242",
        "+                5  W 2 20.000215 tdev.CTRL[31:16] 0x41 DIV=0x0041 pc 0x401000 tid 99"
        "  [value differs]",
        "@@ -10 +8 @@ thread 1: tid 4242 in A, 99 in B",
        "+                8  W 4 20.000520 ?@0xf7c00018 0x3123456 pc 0x401000 tid 99",
        "2 divergences: 1 write with a different value, 0 accesses only in A, 1 only in B"
        " (polling runs folded)",
        "writes whose values differ at the same place, per register (A -> B):",
        "  tdev.CTRL[31:16]/2  0x40 -> 0x41",
        "writes only in B, per register:",
        "  ?@0xf7c00018/4  0x3123456",
    ]


def _series(n: int, start: int = 0, tid: int = 100) -> list[Access]:
    return [w(0x20, start + i, tid=tid) for i in range(n)]


def test_hunks_merge_when_their_context_meets() -> None:
    """Divergences 2N tokens apart share a hunk; 2N + 1 apart, they do not."""
    a = _series(30)
    for gap, hunks in ((6, 1), (7, 2)):
        b = list(a)
        b[10] = w(0x20, 0x1000)
        b[11 + gap] = w(0x20, 0x2000)
        res, out = run(text(a), text(b), context=3)
        assert out.count("\n@@ ") == hunks and res.divergences == 2
        assert changes(out) == [("-", 11), ("+", 11), ("-", 12 + gap), ("+", 12 + gap)]
        assert len(context(out)) == (3 + gap + 3 if hunks == 1 else 12)


def test_max_shown_and_all_counted() -> None:
    a = _series(100)
    b = [w(0x20, 0x1000 + i) if i % 10 == 5 else acc for i, acc in enumerate(a)]
    res, out = run(text(a), text(b), max_shown=3, context=1)
    assert (res.divergences, res.shown, res.changed, res.only_a, res.only_b) == (10, 3, 10, 0, 0)
    assert changes(out) == [("-", 6), ("+", 6), ("-", 16), ("+", 16), ("-", 26), ("+", 26)]
    assert "the first 3 shown (--max)" in out
    assert res.writes[(BASE + 0x20, 4)].count == 10
    assert res.writes[(BASE + 0x20, 4)].samples == [(5, 0x1005), (15, 0x100F), (25, 0x1019), (35, 0x1023)]
    assert "  0xf7c00020/4  0x5 -> 0x1005, 0xf -> 0x100f, 0x19 -> 0x1019, 0x23 -> 0x1023 (+6 more)" in out


def _other(n: int) -> list[Access]:
    """``n`` writes to another register than :func:`_series`'s."""
    return [w(0x24, 0x10000 + i) for i in range(n)]


def test_a_long_insertion_within_the_window_is_one_divergence() -> None:
    tail = _series(50)
    a = _other(300) + tail
    res, out = run(text(a), text(tail))
    assert (res.divergences, res.only_a, res.only_b) == (1, 300, 0)
    assert changes(out) == [("-", n) for n in range(1, 301)]


def test_past_the_window_the_divergence_takes_the_other_sides_window_too() -> None:
    """The documented price of a bounded window: 300 tokens only in A, a window of 100."""
    tail = _series(50)
    a = _other(300) + tail
    res, _ = run(text(a), text(tail), window=100)
    assert (res.divergences, res.only_a, res.only_b) == (1, 350, 50)


def test_levels_find_the_same_point_as_the_whole_window(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    a = [w(0x20 + 4 * rng.randrange(4), rng.randrange(3)) for _ in range(400)]
    b = [w(0x20 + 4 * rng.randrange(4), rng.randrange(3)) if rng.random() < 0.1 else x for x in a]
    b = b[:100] + _series(40, start=7) + b[100:]
    res1, out1 = run(text(a), text(b))
    monkeypatch.setattr(diff_align, "LEVELS", ())
    res2, out2 = run(text(a), text(b))
    assert out1 == out2 and res1 == res2 and res1.divergences > 5


def test_a_thread_without_a_partner_differs_in_full() -> None:
    a = text([w(0, 1, tid=1), w(4, 5, tid=2), w(0, 2, tid=1), w(4, 6, tid=2), r(8, tid=2), r(8, tid=2)])
    b = text([w(0, 1, tid=3), w(0, 2, tid=3)])
    res, out = run(a, b)
    assert changes(out) == [("-", 2), ("-", 4), ("-", 5)]
    assert "@@ -2 +end @@ thread 2: tid 2 in A, none in B" in out
    assert (res.divergences, res.only_a, res.only_b) == (1, 4, 0)
    assert "threads: 2 in A, 1 in B (paired by order of first appearance)" in out


def test_threads_paired_by_first_appearance_whatever_the_interleaving() -> None:
    a = text([w(0, 1, tid=1), w(4, 5, tid=2), w(0, 2, tid=1), w(4, 6, tid=2), w(0, 3, tid=1)])
    b = text([w(0, 1, tid=8), w(4, 5, tid=9), w(4, 6, tid=9), w(0, 2, tid=8), w(0, 3, tid=8)])
    assert run(a, b)[1] == ""


def test_kernel_accesses_and_unknowns_are_compared() -> None:
    ka = KernelAccess(1, "write", "reads", 1, BASE + 0x10, 4, 100)
    a = text([w(0, 1), ka, w(0, 2)])
    b = text([w(0, 1), KernelAccess(1, "write", "reads", 2, BASE + 0x10, 8, 100), w(0, 2)])
    assert changes(run(a, b)[1]) == [("-", 2), ("+", 2)]
    assert (
        run(a, text([w(0, 1), KernelAccess(1, "write", "reads", 7, BASE + 0x10, 4, 100), w(0, 2)]))[1] == ""
    )
    u = text([w(0, 1), Unknown(1, 1, BASE + 8, b"\x0f", 0, 100), w(0, 2)])
    assert changes(run(u, text([w(0, 1), w(0, 2)]))[1]) == [("-", 2)]


def test_wide_values_are_compared_whole() -> None:
    a = text([w(0x40, 1 << 100, 16), w(0, 1)])
    b = text([w(0x40, (1 << 100) | 1, 16), w(0, 1)])
    res, out = run(a, b)
    assert changes(out) == [("-", 1), ("+", 1)]
    assert res.writes[(BASE + 0x40, 16)].samples == [(1 << 100, (1 << 100) | 1)]
    assert run(a, a)[1] == ""


# -- properties --------------------------------------------------------------------------

#: An op of a thread's program: ("W", register, width, value) or ("P", register, width, 0): a poll.
Op = tuple[str, int, int, int]


@dataclass
class Rendered:
    text: str
    lines: dict[tuple[int, int], int]  # (thread, op) -> line of its (first) access


def render(program: list[list[Op]], seed: int, polls: dict[tuple[int, int], int] | None = None) -> Rendered:
    """A log of ``program``: tids, map id, virtual address, timestamps, pcs, read values,
    the interleaving of threads and each poll's number of reads all drawn from ``seed``;
    each thread's first access comes in thread order."""
    rng = random.Random(seed)
    tids = rng.sample(range(100, 60000), len(program))
    map_id = rng.randrange(1, 9)
    out: list[Record] = [Map(0, map_id, BASE, rng.randrange(1, 1 << 20) << 12, 0x1000)]
    order = [t for t, ops in enumerate(program) if ops]
    rest = [t for t, ops in enumerate(program) for _ in ops[1:]]
    rng.shuffle(rest)
    lines: dict[tuple[int, int], int] = {}
    nxt = [0] * len(program)
    ts = 1_000_000
    for t in order + rest:
        kind, reg, width, value = program[t][nxt[t]]
        lines[(t, nxt[t])] = len(out) + 1
        n = 1 if kind == "W" else (polls or {}).get((t, nxt[t]), rng.randrange(1, 6))
        for _ in range(n):
            ts += rng.randrange(1, 50)
            k = Kind.WRITE if kind == "W" else Kind.READ
            v = value if kind == "W" else rng.randrange(1 << 8)
            out.append(Access(k, width, ts, map_id, BASE + 8 * reg, v, rng.randrange(1 << 20), tids[t]))
        nxt[t] += 1
    return Rendered(text(out), lines)


@st.composite
def programs(draw: st.DrawFn) -> list[list[Op]]:
    """1 to 3 threads of 1 to 25 ops on 6 registers; every written value differs from every
    other (so that the access a diff shows is the only one it can be), and fits in a byte
    (the narrowest width)."""
    counter = iter(range(10**6))
    threads = []
    for _ in range(draw(st.integers(1, 3))):
        ops = draw(
            st.lists(
                st.tuples(st.sampled_from("WP"), st.integers(0, 5), st.sampled_from([1, 4, 8])),
                min_size=1,
                max_size=25,
            )
        )
        threads.append([(k, reg, width, 0x10 + next(counter) if k == "W" else 0) for k, reg, width in ops])
    return threads


FRESH = 0xFF  # a value no generated write has (at most 75 writes: 0x10 to 0x5a)


@settings(max_examples=150, deadline=None)
@given(programs(), st.integers(0, 10**6), st.integers(0, 10**6))
def test_property_two_renderings_of_one_program_do_not_differ(
    program: list[list[Op]], s1: int, s2: int
) -> None:
    res, out = run(render(program, s1).text, render(program, s2).text)
    assert (out, res.divergences) == ("", 0)


@settings(max_examples=150, deadline=None)
@given(programs(), st.integers(0, 10**6), st.integers(0, 10**6), st.data())
def test_property_one_changed_value_is_that_access(
    program: list[list[Op]], s1: int, s2: int, data: st.DataObject
) -> None:
    writes = [(t, i) for t, ops in enumerate(program) for i, op in enumerate(ops) if op[0] == "W"]
    assume(writes)
    t, i = data.draw(st.sampled_from(writes))
    changed = [list(ops) for ops in program]
    kind, reg, width, old = changed[t][i]
    changed[t][i] = (kind, reg, width, FRESH)
    a, b = render(program, s1), render(changed, s2)
    res, out = run(a.text, b.text)
    assert changes(out) == [("-", a.lines[(t, i)]), ("+", b.lines[(t, i)])]
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 1, 0, 0)
    assert res.writes_only == ({}, {})
    assert {k: (v.count, v.samples) for k, v in res.writes.items()} == {
        (BASE + 8 * reg, width): (1, [(old, FRESH)])
    }


@settings(max_examples=150, deadline=None)
@given(programs(), st.integers(0, 10**6), st.integers(0, 10**6), st.data())
def test_property_one_extra_write_is_that_access(
    program: list[list[Op]], s1: int, s2: int, data: st.DataObject
) -> None:
    t = data.draw(st.integers(0, len(program) - 1))
    i = data.draw(st.integers(0, len(program[t])))
    ops = program[t]
    # not between two polls of one register (one polling run in A, two in B)
    assume(not (0 < i < len(ops) and ops[i - 1][0] == ops[i][0] == "P" and ops[i - 1][1:3] == ops[i][1:3]))
    extra = [list(o) for o in program]
    extra[t].insert(i, ("W", 2, 4, FRESH))
    a, b = render(program, s1), render(extra, s2)
    res, out = run(a.text, b.text)
    assert changes(out) == [("+", b.lines[(t, i)])]
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 0, 0, 1)
    assert (res.writes, {k: (v.count, v.samples) for k, v in res.writes_only[1].items()}) == (
        {},
        {(BASE + 16, 4): (1, [FRESH])},
    )
    res2, out2 = run(b.text, a.text)  # and the other way round: a write only in A
    assert changes(out2) == [("-", b.lines[(t, i)])]
    assert (res2.divergences, res2.changed, res2.only_a, res2.only_b) == (1, 0, 1, 0)


# -- the command ------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["diff", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def logs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(EX_A)
    b.write_text(EX_B)
    return a, b


def test_cli_exit_statuses(capsys: pytest.CaptureFixture[str], logs: tuple[Path, Path]) -> None:
    a, b = logs
    assert _cli(capsys, str(a), str(a)) == (0, "", "")
    status, out, err = _cli(capsys, str(a), str(b))
    assert (status, err) == (1, "") and out == run(EX_A, EX_B, names=(str(a), str(b)))[1]
    status, out, _ = _cli(capsys, "-U", "0", "--max", "1", str(a), str(b))
    assert status == 1 and changes(out) == [("-", 7), ("+", 5)]


def test_cli_map(capsys: pytest.CaptureFixture[str], logs: tuple[Path, Path]) -> None:
    a, b = logs
    status, out, _ = _cli(capsys, "--map", f"{MAPS / 'tdev.rdl'}@{BASE:#x}", str(a), str(b))
    assert status == 1 and "  tdev.CTRL[31:16]/2  0x40 -> 0x41\n" in out


def test_cli_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, logs: tuple[Path, Path]
) -> None:
    a, _ = logs
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(EX_B.encode())))
    status, out, _ = _cli(capsys, str(a), "-")
    assert status == 1 and out.startswith(f"--- {a}\n+++ standard input\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{a}", "{tmp}/none.log"], "kmmio: cannot read {tmp}/none.log: No such file or directory"),
        (["-", "-"], "kmmio: only one of A and B can be standard input"),
        (["--context", "-1", "{a}", "{b}"], "kmmio: argument -U/--context: must not be negative, got -1"),
        (["--window", "0", "{a}", "{b}"], "kmmio: argument --window: must be at least 1"),
        (["--backlog", "0", "{a}", "{b}"], "kmmio: argument --backlog: must be at least 1"),
        (["{a}"], "kmmio: the following arguments are required: B"),
        (["{a}", "{bad}"], "kmmio: {bad}: line 2: W needs 7 fields, got 2"),
        (["{bad}", "{a}"], "kmmio: {bad}: line 2: W needs 7 fields, got 2"),
        (
            ["--map", "{tmp}/none.rdl", "{a}", "{b}"],
            "kmmio: {tmp}/none.rdl: cannot read it: No such file or directory",
        ),
    ],
)
def test_cli_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, logs: tuple[Path, Path], args: list[str], message: str
) -> None:
    a, b = logs
    bad = tmp_path / "bad.log"
    bad.write_text("VERSION 20070824\nW 4 oops\n")
    names = {"a": a, "b": b, "bad": bad, "tmp": tmp_path}
    status, _, err = _cli(capsys, *(x.format(**names) for x in args))
    assert (status, err) == (2, message.format(**names) + "\n")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_progress_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, logs: tuple[Path, Path]
) -> None:
    import kmmio.cli_diff

    a, _ = logs
    monkeypatch.setattr(kmmio.cli_diff, "PROGRESS_INTERVAL", 0.0)
    for quiet in (False, True):
        tty = _Tty()
        monkeypatch.setattr(sys, "stderr", tty)
        assert main(["diff", *(["-q"] if quiet else []), str(a), str(a)]) == 0
        shown = tty.getvalue()
        if quiet:
            assert shown == ""
            continue
        draws = shown.split("\r\x1b[K")
        assert draws[0] == "" and draws[-1] == "" and len(draws) >= 3, repr(shown)
        for d in draws[1:-1]:
            assert d.startswith(f"{a}: ") and f" | {a}: " in d and " lines/s" in d, d
        assert f"{a}: 100% 11 lines" in draws[-2]
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    assert _cli(capsys, str(a), str(a)) == (0, "", "")  # not a terminal: nothing


def test_cli_warns_of_lost_events(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, logs: tuple[Path, Path]
) -> None:
    a, _ = logs
    lost = tmp_path / "lost.log"
    lost.write_text(EX_A + "MARK 13.000000 Lost 7 events.\n")
    assert _cli(capsys, str(a), str(lost)) == (
        0,
        "",
        f"kmmio: warning: {lost} lost 7 events: accesses missing from it may show as differences\n",
    )


def test_line_numbers_of_records_around_the_kernels_header() -> None:
    """Records carry no line number from the reader: before the first access they are
    numbered back from it (the '#' header comes first), after it on from the last."""
    head = "# tracer: mmiotrace\n#\nVERSION 20070824\n"
    ka = KernelAccess(1, "write", "reads", 1, BASE + 0x10, 4, 100)
    log = head + text([ka, w(0, 1), Unknown(3, 1, BASE + 0xC, b"\x0f", 0, 100), w(0, 2)])
    assert [(t[1][0], t[2]) for t in tokens(log)] == [("K", 4), ("W", 5), ("U", 6), ("W", 7)]
    assert [(t[1][0], t[2]) for t in tokens(head + text([ka]))] == [("K", 4)]  # no access: back from the end
