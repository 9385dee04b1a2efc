"""``kmmio diff`` on logs made by tracing a real program: ``programs/diffdrv.c`` (built at
test time), a small driver whose variants, chosen by its arguments, differ from each other
in one written value, in one extra write, in their numbers of polls, or in a second
thread.  Each variant is traced with ``kmmio trace`` (its device a file, whose offsets are
the logged physical addresses), then diffed with ``kmmio diff`` as a user runs both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kmmio.trace import Access, Kind, read_records

pytestmark = pytest.mark.ptrace

PROGRAM = Path(__file__).parent / "programs" / "diffdrv.c"
TDEV = Path(__file__).parents[1] / "maps" / "data" / "tdev.rdl"


@pytest.fixture(scope="module")
def diffdrv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc")
    assert cc is not None, "these tests need a C compiler (cc)"
    exe = tmp_path_factory.mktemp("bin") / "diffdrv"
    subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(PROGRAM)], check=True)
    return exe


@pytest.fixture(scope="module")
def traced(diffdrv: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``traced(name, *variant)``: the log of one run of ``diffdrv`` (traced once per name)."""
    tmp = tmp_path_factory.mktemp("traces")
    logs: dict[str, Path] = {}

    def trace(name: str, *variant: str) -> Path:
        if name not in logs:
            dev, log = tmp / f"{name}.dev", tmp / f"{name}.log"
            cmd = [sys.executable, "-m", "kmmio", "trace", "-q", "-o", str(log), "-m", dev.name]
            proc = subprocess.run(
                [*cmd, "--", str(diffdrv), str(dev), *variant], capture_output=True, text=True, timeout=300
            )
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")
            logs[name] = log
        return logs[name]

    return trace


def kmmio_diff(*args: str | Path) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", "diff", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def changes(out: str) -> list[tuple[str, int]]:
    """The ``-`` and ``+`` lines of a diff: (sign, line number in its log)."""
    got = []
    for line in out.splitlines():
        if line.startswith("-") and not line.startswith("---"):
            got.append(("-", int(line[1:9])))
        elif line.startswith("+") and not line.startswith("+++"):
            got.append(("+", int(line[10:18])))
    return got


def accesses(log: Path) -> list[tuple[int, Access]]:
    """(line number, access) of every access of a log."""
    lines = log.read_text().splitlines()
    return [
        (n, rec) for n, line in enumerate(lines, 1) for rec in read_records([line]) if isinstance(rec, Access)
    ]


def line_of(log: Path, kind: Kind, phys: int, value: int) -> int:
    """The line of the only access of ``kind`` at ``phys`` moving ``value``."""
    found = [n for n, a in accesses(log) if (a.kind, a.phys, a.value) == (kind, phys, value)]
    assert len(found) == 1, found
    return found[0]


def test_a_trace_against_itself_and_two_runs_of_one_program(traced: Callable[..., Path]) -> None:
    base, again = traced("base"), traced("base2")
    assert kmmio_diff(base, base) == (0, "", "")
    # another process: other tids, timestamps, virtual addresses; the same accesses
    assert {a.pid for _, a in accesses(base)} != {a.pid for _, a in accesses(again)}
    assert kmmio_diff(base, again) == (0, "", "")


def test_a_different_number_of_polls_is_no_difference(traced: Callable[..., Path]) -> None:
    base, polls = traced("base"), traced("polls", "polls=1", "polls2=12")
    reads = [sum(a.kind is Kind.READ for _, a in accesses(log)) for log in (base, polls)]
    assert reads == [3 + 5, 1 + 12]
    assert kmmio_diff(base, polls) == (0, "", "")
    assert kmmio_diff(polls, base) == (0, "", "")


def test_one_different_written_value_is_that_access(traced: Callable[..., Path]) -> None:
    base, value = traced("base"), traced("value", "value")
    status, out, err = kmmio_diff(base, value)
    assert (status, err) == (1, "")
    a_line = line_of(base, Kind.WRITE, 0x10, 0x00ABCDEF)
    b_line = line_of(value, Kind.WRITE, 0x10, 0x00ABCDEE)
    assert changes(out) == [("-", a_line), ("+", b_line)]
    lines = out.splitlines()
    assert lines[-3:] == [
        "1 divergence: 1 write with a different value, 0 accesses only in A, 0 only in B"
        " (polling runs folded)",
        "writes whose values differ at the same place, per register (A -> B):",
        "  0x10/4  0xabcdef -> 0xabcdee",
    ]
    # the hunk: three tokens of context each side, polling runs folded, the log's own lines
    text_a = base.read_text().splitlines()
    text_b = value.read_text().splitlines()
    minus = next(x for x in lines if x.startswith("-") and not x.startswith("---"))
    plus = next(x for x in lines if x.startswith("+") and not x.startswith("+++"))
    assert minus.endswith("  " + text_a[a_line - 1])
    assert plus.endswith("  " + text_b[b_line - 1] + "  [value differs]")
    ctx = [x for x in lines if x.startswith(" ") and x[1:9].strip().isdigit()]
    assert [x.split()[5:8] for x in ctx] == [
        ["1", "0x0", "0x2"],
        ["1", "0x4", "0x0"],
        ["1", "0x0", "0x10000009"],
        ["1", "0x14", "0x3123456"],
        ["1", "0x4", "0x0"],
        ["1", "0x8", "0x8010"],
    ]
    assert ctx[1].endswith("  [x3 reads]") and ctx[4].endswith("  [x5 reads]")


def test_one_extra_write_is_that_access(traced: Callable[..., Path]) -> None:
    base, extra = traced("base"), traced("extra", "extra")
    status, out, err = kmmio_diff(base, extra)
    assert (status, err) == (1, "")
    assert changes(out) == [("+", line_of(extra, Kind.WRITE, 0x14, 0x1))]
    assert out.splitlines()[-2:] == ["writes only in B, per register:", "  0x14/4  0x1"]
    status, out, _ = kmmio_diff(extra, base)
    assert status == 1 and changes(out) == [("-", line_of(extra, Kind.WRITE, 0x14, 0x1))]
    assert out.splitlines()[-2:] == ["writes only in A, per register:", "  0x14/4  0x1"]


def test_with_the_devices_register_map(traced: Callable[..., Path]) -> None:
    """tdev's map at 0 (a file's offsets): registers named, in the hunk and the summary;
    different polls still no difference."""
    base, value, polls = traced("base"), traced("value", "value"), traced("polls", "polls=1", "polls2=12")
    status, out, _ = kmmio_diff("--map", TDEV, "-U", "0", base, value)
    assert status == 1
    lines = out.splitlines()
    assert [x.split()[5:9] for x in lines if x[:1] in "-+" and x[:3] not in ("---", "+++")] == [
        ["tdev.QUEUE[0]", "0xabcdef", "ADDR=0xabcdef", "PRIO=0x0"],
        ["tdev.QUEUE[0]", "0xabcdee", "ADDR=0xabcdee", "PRIO=0x0"],
    ]
    assert lines[-1] == "  tdev.QUEUE[0]/4  0xabcdef -> 0xabcdee"
    assert kmmio_diff("--map", TDEV, base, polls) == (0, "", "")


def test_threads_are_paired_by_first_appearance(traced: Callable[..., Path]) -> None:
    """Two threads, interleaved as they happen to run: two runs do not differ; a changed
    value is in the main thread's pair; without the helper thread, its accesses are what
    differs."""
    t1, t2 = traced("thread", "thread"), traced("thread2", "thread", "polls=2")
    tv, base = traced("thread_value", "thread", "value"), traced("base")
    assert len({a.pid for _, a in accesses(t1)}) == 2
    assert kmmio_diff(t1, t2) == (0, "", "")
    status, out, _ = kmmio_diff(t1, tv)
    assert status == 1
    assert changes(out) == [
        ("-", line_of(t1, Kind.WRITE, 0x10, 0x00ABCDEF)),
        ("+", line_of(tv, Kind.WRITE, 0x10, 0x00ABCDEE)),
    ]
    main_tid = next(a.pid for _, a in accesses(t1))
    assert f"thread 1: tid {main_tid} in A, " in out
    status, out, _ = kmmio_diff(t1, base)
    assert status == 1
    helper = [(n, a) for n, a in accesses(t1) if a.pid != main_tid]
    first_poll = helper[0][0]
    assert changes(out) == [("-", first_poll), ("-", helper[4][0]), ("-", helper[5][0])]
    assert [(a.kind, a.phys, a.value) for _, a in helper[4:]] == [
        (Kind.WRITE, 0x8, 0x10),
        (Kind.WRITE, 0x8, 0x20),
    ]
    assert "1 divergence: 0 writes with different values, 6 accesses only in A, 0 only in B" in out
    assert "threads: 2 in A, 1 in B (paired by order of first appearance)" in out
