"""``kmmio diff``: written values compared at aligned places (substitutions), the summary's
sections, and the memory bound of a thread whose partner is missing or late.

Logs are generated (no process traced); the helpers come from ``test_diff``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_diff import BASE, changes, r, run, text, w

from kmmio.cli import main
from kmmio.tools import diff
from kmmio.tools.diff_align import RUN, Aligner
from kmmio.tools.diff_tokens import Token
from kmmio.trace import Access, Record


def dma(seed: int, n: int) -> tuple[list[Record], list[int]]:
    """The reviewer's ``gen.py``: ``n`` DMA descriptors, each a start write, an address
    write whose value is drawn from ``seed``, 1 to 5 polls and a doorbell write; and the
    drawn values."""
    rng = random.Random(seed)
    out: list[Record] = []
    values = []
    ts = 1_000_000
    for _ in range(n):
        values.append(rng.getrandbits(32))
        out += [w(0x0, 1, ts=ts), w(0x4, values[-1], ts=ts + 1)]
        out += [r(0x8, 0, ts=ts + 2) for _ in range(rng.randint(1, 5))]
        out.append(w(0xC, 1, ts=ts + 3))
        ts += 10
    return out, values


def test_a_value_that_differs_every_iteration_is_a_substitution_each_time() -> None:
    """20,000 iterations, their address written with other values, their numbers of polls
    different: each differing write is one substitution, nothing is only in one log."""
    (a, va), (b, vb) = dma(1, 20_000), dma(2, 20_000)
    differ = [i for i in range(20_000) if va[i] != vb[i]]
    assert len(differ) == 20_000
    res, out = run(text(a), text(b), max_shown=2, context=1)
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (20_000, 20_000, 0, 0)
    assert res.writes_only == ({}, {})
    wd = res.writes[(BASE + 4, 4)]
    assert (list(res.writes), wd.count, wd.samples) == (
        [(BASE + 4, 4)],
        20_000,
        [(va[i], vb[i]) for i in differ[:4]],
    )
    lines_a = [n for n, rec in enumerate(a, 1) if isinstance(rec, Access) and rec.phys == BASE + 4]
    lines_b = [n for n, rec in enumerate(b, 1) if isinstance(rec, Access) and rec.phys == BASE + 4]
    assert changes(out) == [("-", lines_a[0]), ("+", lines_b[0]), ("-", lines_a[1]), ("+", lines_b[1])]
    assert out.splitlines()[-4:] == [
        "20000 divergences: 20000 writes with different values, 0 accesses only in A, 0 only in B"
        " (polling runs folded)",
        "the first 2 shown (--max)",
        "writes whose values differ at the same place, per register (A -> B):",
        f"  0xf7c00004/4  {va[0]:#x} -> {vb[0]:#x}, {va[1]:#x} -> {vb[1]:#x}, {va[2]:#x} -> {vb[2]:#x}, "
        f"{va[3]:#x} -> {vb[3]:#x} (+19996 more)",
    ]
    assert run(text(a), text(dma(1, 20_000)[0]))[1] == ""  # the same values: equal


def test_a_substitution_is_a_pair_marked_on_its_plus_line() -> None:
    a = text([w(0, 1), w(4, 2), w(8, 3)])
    b = text([w(0, 1), w(4, 7), w(8, 3)])
    res, out = run(a, b)
    assert out.splitlines()[4:6] == [
        "-       2           W 4 1.000000 1 0xf7c00004 0x2 0x401000 100",
        "+                2  W 4 1.000000 1 0xf7c00004 0x7 0x401000 100  [value differs]",
    ]
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 1, 0, 0)


def test_adjacent_substitutions_are_one_divergence() -> None:
    a = text([w(0, 1), w(4, 2), w(8, 3), w(0xC, 4)])
    b = text([w(0, 1), w(4, 5), w(8, 6), w(0xC, 4)])
    res, out = run(a, b)
    assert changes(out) == [("-", 2), ("+", 2), ("-", 3), ("+", 3)]
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 2, 0, 0)


def test_a_write_missing_among_writes_to_one_register_is_a_deletion() -> None:
    """x=1, x=2, x=3 against x=2, x=3: the first write is missing, not three values changed."""
    a = text([w(0, 1), w(0, 2), w(0, 3), w(4, 9)])
    b = text([w(0, 2), w(0, 3), w(4, 9)])
    res, out = run(a, b)
    assert changes(out) == [("-", 1)]
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 0, 1, 0)
    assert {k: (v.count, v.samples) for k, v in res.writes_only[0].items()} == {(BASE, 4): (1, [1])}


def test_swapped_writes_are_listed_as_found_in_one_log_only() -> None:
    """The reviewer's swap: no write has another value at an aligned place."""
    base = [w(0x10, 1), w(0x14, 2), r(0x18), w(0x1C, 3), w(0x20, 4), w(0x24, 5), w(0x28, 6)]
    swap = [base[1], base[0], *base[2:]]
    res, out = run(text(base), text(swap))
    assert changes(out) == [("+", 1), ("-", 2)]
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (2, 0, 1, 1)
    assert res.writes == {}
    assert out.splitlines()[-5:] == [
        "2 divergences: 0 writes with different values, 1 access only in A, 1 only in B"
        " (polling runs folded)",
        "writes only in A, per register:",
        "  0xf7c00014/4  0x2",
        "writes only in B, per register:",
        "  0xf7c00014/4  0x2",
    ]


def test_one_more_of_100_identical_writes() -> None:
    """100 against 101 writes of 0 to one register: one write only in B, none differs."""
    a, b = text([w(0x40, 0)] * 100), text([w(0x40, 0)] * 101)
    res, out = run(a, b)
    assert changes(out) == [("+", 101)]
    assert (res.divergences, res.changed, res.only_a, res.only_b, res.writes) == (1, 0, 0, 1, {})
    assert out.splitlines()[-3:] == [
        "1 divergence: 0 writes with different values, 0 accesses only in A, 1 only in B"
        " (polling runs folded)",
        "writes only in B, per register:",
        "  0xf7c00040/4  0x0",
    ]
    res, out = run(b, a)
    assert changes(out) == [("-", 101)]
    assert out.splitlines()[-2:] == ["writes only in A, per register:", "  0xf7c00040/4  0x0"]


def test_the_summary_lists_the_first_registers_and_counts_the_others() -> None:
    a = text([w(4 * i, i) for i in range(diff.REGISTERS + 5)])
    b = text([w(4 * i, i + 1) for i in range(diff.REGISTERS + 5)])
    res, out = run(a, b)
    assert (res.changed, len(res.writes), res.writes_elsewhere) == (
        diff.REGISTERS + 5,
        diff.REGISTERS,
        [5, 0, 0],
    )
    assert out.splitlines()[-1] == "  ... and 5 writes at other registers or addresses"


# -- memory -----------------------------------------------------------------------------


def test_an_unpaired_threads_queue_is_capped_and_streamed_out() -> None:
    """The reviewer's gen2.py: A's second thread has no partner in B; its tokens are
    declared only in A as its queue reaches the cap, not kept until B ends."""
    n, window = 5000, 50
    a: list[Record] = []
    b: list[Record] = []
    for i in range(n):
        a += [w(4 * (i % 64), i & 0xFF, tid=100), w(0x400 + 4 * (i % 64), i & 0xFF, tid=101)]
        b.append(w(4 * (i % 64), i & 0xFF, tid=200))
    res, out = run(text(a), text(b), window=window, max_shown=0)
    cap = window + RUN + diff.CHUNK
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 0, n, 0)
    assert res.peak_queue == cap
    assert out.splitlines()[:2] == [
        "1 divergence: 0 writes with different values, 5000 accesses only in A, 0 only in B"
        " (polling runs folded)",
        "the first 0 shown (--max)",
    ]


def late_partner(n: int) -> tuple[str, str]:
    """Two threads, each ``n`` writes after a first one; A runs thread 1's, then thread
    2's, B the other way round."""
    start = [w(0, 0, tid=1), w(4, 0, tid=2)]
    one = [w(0x100, i, tid=1) for i in range(n)]
    two = [w(0x200, i, tid=2) for i in range(n)]
    return text(start + one + two), text(start + two + one)


def test_a_late_partners_queue_is_capped_by_the_backlog() -> None:
    """Two threads that run their long stretches in the other order in B: each thread's
    queue waits for its partner up to ``backlog`` tokens (equal logs); past it, the
    queue is taken as found in one log only (the price of bounded memory): thread 1's
    first 2000 writes in A; its last 1000 are then paired with B's first 1000 (one
    register: other values), B's last 2000 are only in B."""
    a, b = late_partner(3000)
    res, out = run(a, b, window=50)
    assert (out, res.peak_queue) == ("", 3000)
    res, _ = run(a, b, window=50, backlog=2000)
    assert res.peak_queue == 2000
    assert (res.divergences, res.changed, res.only_a, res.only_b) == (1, 1000, 2000, 2000)


def test_aligner_push_caps_each_queue() -> None:
    seen: list[tuple[list[int], list[int]]] = []

    def diverge(xa: list[Token], xb: list[Token]) -> None:
        seen.append(([t.line for t in xa], [t.line for t in xb]))

    al = Aligner(lambda ta, tb: None, diverge, window=2, run=1, unpaired=4, backlog=6)
    for line in range(1, 10):
        al.push(0, Token(("W", 0, 4, None), line, ("W", 4, 0, 1, 0, 0, 0, 1), 0))
    assert (seen, al.peak) == ([([1, 2, 3, 4], []), ([5, 6, 7, 8], [])], 4)
    al.push(1, Token(("W", 8, 4, None), 1, ("W", 4, 0, 1, 8, 0, 0, 1), 0))
    for line in range(10, 16):
        al.push(0, Token(("W", 0, 4, None), line, ("W", 4, 0, 1, 0, 0, 0, 1), 0))
    assert (seen[2:], al.peak) == ([([9, 10, 11, 12, 13, 14], [])], 6)  # B has had a token: the backlog


def test_cli_backlog(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--backlog`` reaches the alignment: the late partner above, through the command."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    for path, log in zip((a, b), late_partner(3000), strict=True):
        path.write_text(log)
    assert main(["diff", "--window", "50", str(a), str(b)]) == 0
    assert main(["diff", "--window", "50", "--backlog", "2000", "--max", "0", str(a), str(b)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "1 divergence: 1000 writes with different values, 2000 accesses only in A, 2000 only in B"
        " (polling runs folded)"
    )
