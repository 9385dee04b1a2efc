"""``kmmio summary`` on the command line: the table with and without a map, JSON, polling
runs, and one line with exit 2 for every bad input (``main`` is called in-process)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pty_util import read_all

from kmmio.cli import main
from kmmio.tools.summary_format import seconds_text, value_text
from kmmio.trace import Access, KernelAccess, Kind, Mark, Record, format_record

DATA = Path(__file__).parents[1] / "maps" / "data"
LOG = DATA / "tdev.log"
SVD = str(DATA / "tdev.svd")
RDL = f"{DATA / 'tdev.rdl'}@0xf7c00000"

TDEV_TABLE = """\
14 accesses (7 reads, 7 writes) in 6 rows, 12.000104 to 12.000585; 1 mapping

REGISTER       MAP  READS  WRITES  WIDTHS   DISTINCT  FIRST              LAST               FIRST TIME  LAST TIME  THREADS
tdev.CTRL      1        3       3  1,2,4,8         3  0x10000009         0x200050100400009  12.000104   12.000326        2
tdev.STATUS    1        2       0  4               0  0x2000501          0x81230200         12.000141   12.000363        1
tdev.LEN16     1        1       1  2,4             1  0x8010             0x8010             12.000400   12.000437        1
tdev.QUEUE[0]  1        1       1  4,8             1  0x300000102abcdef  0x0                12.000548   12.000585        2
0xf7c0000c     1        0       1  4               1  0x5                0x5                12.000474   12.000474        1
tdev.QUEUE[1]  1        0       1  4               1  0x3123456          0x3123456          12.000511   12.000511        1
"""  # noqa: E501


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["summary", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["summary", *args]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("kmmio: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("spec", [SVD, RDL], ids=["svd", "rdl"])
def test_the_table_with_a_map(capsys: pytest.CaptureFixture[str], spec: str) -> None:
    assert _run(capsys, "--map", spec, str(LOG)) == TDEV_TABLE


def test_the_table_without_a_map(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _run(capsys, "-q", str(LOG)).splitlines()
    assert lines[0] == "14 accesses (7 reads, 7 writes) in 9 rows, 12.000104 to 12.000585; 1 mapping"
    assert [line.split()[:4] for line in lines[3:]] == [
        ["0xf7c00000", "1", "2", "1"],
        ["0xf7c00001", "1", "1", "1"],
        ["0xf7c00008", "1", "1", "1"],
        ["0xf7c00010", "1", "1", "1"],
        ["0xf7c00004", "1", "1", "0"],
        ["0xf7c00002", "1", "0", "1"],
        ["0xf7c00006", "1", "1", "0"],
        ["0xf7c0000c", "1", "0", "1"],
        ["0xf7c00014", "1", "0", "1"],
    ]


def _polling_log(tmp_path: Path) -> Path:
    recs: list[Record] = [Access(Kind.WRITE, 4, 12_000_000, 1, 0xF7C00000, 1, 0x401000, 42)]
    recs += [Access(Kind.READ, 4, 12_000_104 + i, 1, 0xF7C00004, 0, 0x401008, 42) for i in range(10_230)]
    recs.append(Access(Kind.READ, 4, 13_203_104, 1, 0xF7C00004, 0x1, 0x401008, 42))
    recs.append(KernelAccess(13_203_105, "write", "reads", 1, 0xF7C00000, 4, 42))
    recs += [Access(Kind.READ, 2, 13_203_110 + i, 1, 0xF7C00008, 0x8010, 0x401010, 43) for i in range(3)]
    recs.append(Mark(13_203_200, "Lost 7 events."))
    log = tmp_path / "poll.log"
    log.write_text("VERSION 20070824\n" + "".join(format_record(r) + "\n" for r in recs))
    return log


def test_polling_runs_are_folded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = _polling_log(tmp_path)
    out = _run(capsys, "--map", SVD, str(log)).splitlines()
    assert out[0] == (
        "10,235 accesses (10,234 reads, 1 writes) in 3 rows, 12.000000 to 13.203112; 0 mappings; "
        "7 events lost"
    )
    assert out[-3:] == [
        "2 polling runs of 3+ reads (10,234 reads folded):",
        "  R tdev.STATUS x10,231 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 42, lines 3-10233)",
        "  R tdev.LEN16 x3 0x8010 after 0.000002 s  (2 bytes, tid 43, lines 10235-10237)",
    ]
    top1 = _run(capsys, "--runs", "1", str(log)).splitlines()
    assert top1[-2:] == [
        "2 polling runs of 3+ reads (10,234 reads folded), the 1 longest:",
        "  R 0xf7c00004 x10,231 0x0 -> 0x1 after 1.203 s  (4 bytes, tid 42, lines 3-10233)",
    ]
    none = _run(capsys, "--runs", "0", str(log)).splitlines()
    assert none[-1] == "2 polling runs of 3+ reads (10,234 reads folded), the 0 longest"


def test_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    objs: list[dict[str, Any]] = [
        json.loads(line)
        for line in _run(capsys, "--json", "--map", SVD, str(_polling_log(tmp_path))).splitlines()
    ]
    assert [o["type"] for o in objs] == ["row", "row", "row", "run", "run", "totals"]
    assert objs[0] == {
        "type": "row",
        "register": "tdev.STATUS",
        "phys": 0xF7C00004,
        "maps": [1],
        "maps_capped": False,
        "reads": 10_231,
        "writes": 0,
        "widths": [4],
        "distinct": 0,
        "distinct_capped": False,
        "first_value": 0,
        "last_value": 1,
        "first_ts": "12.000104",
        "last_ts": "13.203104",
        "first_line": 3,
        "last_line": 10233,
        "threads": 1,
        "threads_capped": False,
        "runs": 1,
        "polled": 10_231,
        "longest_run": 10_231,
    }
    assert objs[3] == {
        "type": "run",
        "register": "tdev.STATUS",
        "map": 1,
        "phys": 0xF7C00004,
        "width": 4,
        "tid": 42,
        "count": 10_231,
        "first_value": 0,
        "last_value": 1,
        "first_ts": "12.000104",
        "last_ts": "13.203104",
        "seconds": "1.203000",
        "first_line": 3,
        "last_line": 10233,
    }
    assert objs[-1] == {
        "type": "totals",
        "accesses": 10_235,
        "reads": 10_234,
        "writes": 1,
        "rows": 3,
        "runs": 2,
        "polled": 10_234,
        "min_run": 3,
        "mappings": 0,
        "lost": 7,
        "first_ts": "12.000000",
        "last_ts": "13.203112",
    }
    plain = [json.loads(x) for x in _run(capsys, "--json", str(LOG)).splitlines()]
    assert all(o["register"] is None for o in plain if o["type"] == "row")
    assert {o["phys"] for o in plain if o["type"] == "row"} == {
        0xF7C00000 + a for a in (0, 1, 2, 4, 6, 8, 12, 16, 20)
    }


def test_wide_values_are_cut_in_the_table_and_whole_in_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    value = int("1122334455667788" * 4, 16)
    log = tmp_path / "wide.log"
    log.write_text(format_record(Access(Kind.WRITE, 32, 5, 1, 0x40, value, 0x1, 2)) + "\n")
    row = _run(capsys, str(log)).splitlines()[3]
    assert row.split()[6:8] == ["0x112233..55667788", "0x112233..55667788"]
    (obj, _) = [json.loads(x) for x in _run(capsys, "--json", str(log)).splitlines()]
    assert obj["first_value"] == obj["last_value"] == value and obj["widths"] == [32]


def test_caps_and_map_ids_in_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One address mapped three times (UNMAP, MAP again) is one row listing its map ids; at
    a cap (here 2 values, 2 threads, 2 map ids) the table says "2 or more"."""
    from kmmio.tools import summary as summary_mod

    for name in ("DISTINCT_CAP", "THREADS_CAP", "MAPS_CAP"):
        monkeypatch.setattr(summary_mod, name, 2)
    recs: list[Record] = [
        Access(Kind.WRITE, 4, 1_000_000 + i, 1 + i % 3, 0x40, i, 0x1, 7 + i) for i in range(3)
    ]
    recs.append(Access(Kind.WRITE, 4, 2_000_000, 1, 0x44, 5, 0x1, 7))
    log = tmp_path / "caps.log"
    log.write_text("".join(format_record(r) + "\n" for r in recs))
    assert _run(capsys, str(log)).splitlines()[2:] == [
        "REGISTER  MAP   READS  WRITES  WIDTHS  DISTINCT  FIRST  LAST  FIRST TIME  LAST TIME  THREADS",
        "0x40      1,2+      0       3  4             ≥2  0x0    0x2   1.000000    1.000002        ≥2",
        "0x44      1         0       1  4              1  0x5    0x5   2.000000    2.000000         1",
    ]
    row = json.loads(_run(capsys, "--json", str(log)).splitlines()[0])
    assert (row["maps"], row["maps_capped"], row["distinct"], row["distinct_capped"]) == (
        [1, 2],
        True,
        2,
        True,
    )
    assert (row["threads"], row["threads_capped"]) == (2, True)


def test_a_temporary_directory_that_cannot_be_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log small enough needs no temporary file; one that spills (here: a budget of 0)
    into a missing directory is one line and exit 2."""
    import tempfile

    from kmmio.tools import summary as summary_mod

    missing = tmp_path / "missing"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    assert _run(capsys, "--map", SVD, str(LOG)) == TDEV_TABLE
    monkeypatch.setattr(summary_mod, "BUDGET", 0)
    assert _one_line_error(capsys, str(LOG)) == (
        f"kmmio: {missing}: cannot write a temporary file: No such file or directory (set TMPDIR elsewhere)"
    )


def test_log_from_standard_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    class Stdin:
        buffer = io.BytesIO(LOG.read_bytes())

    monkeypatch.setattr(sys, "stdin", Stdin())
    assert _run(capsys, "--map", SVD, "-") == TDEV_TABLE


def test_an_empty_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "empty.log"
    log.write_text("VERSION 20070824\n")
    assert _run(capsys, str(log)) == "no accesses; 0 mappings\n"


def test_a_malformed_log_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text("VERSION 20070824\nR 4 1.000000 1 0x10 0x0 0x0 0\nW 4 oops\n")
    assert _one_line_error(capsys, str(log)) == f"kmmio: {log}: line 3: W needs 7 fields, got 2"


@pytest.mark.parametrize("module", ["systemrdl", "cmsis_svd"])
def test_a_missing_map_extra_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    for name in [n for n in sys.modules if n.startswith(module + ".")] + [module]:
        monkeypatch.setitem(sys.modules, name, None)
    line = _one_line_error(capsys, "--map", RDL if module == "systemrdl" else SVD, str(LOG))
    assert "pip install 'kmmio[maps]'" in line and "not installed" in line


def test_missing_files_and_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _one_line_error(capsys, str(tmp_path / "no.log")) == (
        f"kmmio: cannot read {tmp_path / 'no.log'}: No such file or directory"
    )
    assert _one_line_error(capsys, "--map", str(tmp_path / "no.svd"), str(LOG)) == (
        f"kmmio: {tmp_path / 'no.svd'}: cannot read it: No such file or directory"
    )
    assert "must not be negative" in _one_line_error(capsys, "--runs", "-1", str(LOG))
    assert "expected a number" in _one_line_error(capsys, "--runs", "many", str(LOG))
    assert "required" in _one_line_error(capsys)


def test_text_helpers() -> None:
    assert [seconds_text(us) for us in (0, 52, 1_203_000, 10_000_000, 12_000_104)] == [
        "0",
        "0.000052",
        "1.203",
        "10",
        "12.000104",
    ]
    assert value_text(0x1234) == "0x1234"
    assert value_text((1 << 64) - 1) == "0xffffffffffffffff"
    assert value_text(1 << 64) == "0x100000..00000000"


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quiet: bool) -> None:
    """On a terminal's standard error (a pty) the progress line is drawn as the log is read
    (here a clock that jumps a second per look) and erased at the end; none with -q."""
    import os
    import pty
    from itertools import count
    from types import SimpleNamespace

    from kmmio.tools import progress as progress_mod

    log = tmp_path / "big.log"
    line = format_record(Access(Kind.READ, 4, 1, 1, 0x10, 0, 0x0, 1)) + "\n"
    log.write_text(line * 400_000)  # a few chunks of the reader
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w")
    clock = count(0.0, 1.0)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(progress_mod, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert main(["summary", *(["-q"] if quiet else []), str(log)]) == 0
    tty.close()
    shown = read_all(master)
    if quiet:
        assert shown == ""
    else:
        draws = shown.split("\r\x1b[K")
        assert draws[0] == "" and draws[-1] == ""
        assert len(draws) >= 4 and draws[1].startswith(f"{log}: ") and " lines, " in draws[1]
