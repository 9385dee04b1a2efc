"""``kmmio summary`` on logs made by tracing real programs: a C program with a polling loop
and a second thread (programs/summary_poll.c, built at test time), and the bundled demo
driver.  Its counts equal those counted from the reader's records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from kmmio.cli import main
from kmmio.trace import Access, Kind, read_records

pytestmark = pytest.mark.ptrace

PROGRAM = Path(__file__).parent / "programs" / "summary_poll.c"

#: The program's registers, for --map (a regular file's mapping is logged at phys 0).
RDL = """addrmap poll {
    default regwidth = 32;
    reg { field { sw = rw; } EN[0:0]; field { sw = rw; } RST[1:1]; } CTRL @ 0x0;
    reg { field { sw = rw; } D[31:0]; } DATA @ 0x4;
    reg { field { sw = r; hw = w; } DONE[0:0]; } STATUS @ 0x8;
    reg { field { sw = r; hw = w; } N[31:0]; } COUNT @ 0xc;
    reg { field { sw = rw; } Q[31:0]; } QUEUE @ 0x10;
};
"""


@pytest.fixture(scope="module")
def poll_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc")
    assert cc is not None, "these tests need a C compiler (cc)"
    tmp = tmp_path_factory.mktemp("summary")
    exe = tmp / "summary_poll"
    subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(PROGRAM)], check=True)
    log = tmp / "poll.log"
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", "trace", "-o", str(log), "-m", "poll-regs.bin", "--",
         str(exe), str(tmp / "poll-regs.bin")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "polls 51\n", proc.stderr
    return log


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", "demo", "-o", str(log)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return log


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["summary", "--json", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return [json.loads(line) for line in out.splitlines()]


def counted(log: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """Per (map id, phys), from the reader's records: reads, writes, widths, values written,
    threads, first and last value."""
    rows: dict[tuple[int, int], dict[str, Any]] = defaultdict(
        lambda: {"reads": 0, "writes": 0, "widths": set(), "written": set(), "tids": set(), "values": []}
    )
    for rec in read_records(log.read_text().splitlines()):
        if isinstance(rec, Access):
            r = rows[(rec.map_id, rec.phys)]
            r["writes" if rec.kind is Kind.WRITE else "reads"] += 1
            r["widths"].add(rec.width)
            r["tids"].add(rec.pid)
            r["values"].append(rec.value)
            if rec.kind is Kind.WRITE:
                r["written"].add(rec.value)
    return rows


@pytest.mark.parametrize("which", ["poll", "demo"])
def test_counts_equal_the_records(
    capsys: pytest.CaptureFixture[str], poll_log: Path, demo_log: Path, which: str
) -> None:
    log = poll_log if which == "poll" else demo_log
    objs = _json(capsys, str(log))
    rows = [o for o in objs if o["type"] == "row"]
    want = counted(log)
    assert len(rows) == len(want)
    for o in rows:
        (map_id,) = o["maps"]
        w = want[(map_id, o["phys"])]
        assert o["register"] is None
        assert (o["reads"], o["writes"], o["widths"]) == (w["reads"], w["writes"], sorted(w["widths"]))
        assert (o["distinct"], o["threads"]) == (len(w["written"]), len(w["tids"]))
        assert (o["first_value"], o["last_value"]) == (w["values"][0], w["values"][-1])
    counts = [o["reads"] + o["writes"] for o in rows]
    assert counts == sorted(counts, reverse=True)
    (totals,) = [o for o in objs if o["type"] == "totals"]
    assert totals["accesses"] == sum(len(w["values"]) for w in want.values())
    assert totals["mappings"] == 1


def test_the_polling_loop_of_a_real_program(capsys: pytest.CaptureFixture[str], poll_log: Path) -> None:
    objs = _json(capsys, str(poll_log))
    rows = {o["phys"]: o for o in objs if o["type"] == "row"}
    runs = [o for o in objs if o["type"] == "run"]
    assert [(r["phys"], r["count"], r["first_value"], r["last_value"], r["width"]) for r in runs] == [
        (0x8, 51, 0, 1, 4),
        (0xC, 10, 0, 0, 4),
    ]
    assert runs[0]["tid"] != runs[1]["tid"]
    assert [
        (p, rows[p]["reads"], rows[p]["writes"], rows[p]["distinct"], rows[p]["threads"]) for p in rows
    ] == [
        (0x8, 51, 0, 0, 1),
        (0xC, 10, 0, 0, 1),
        (0x10, 0, 5, 5, 1),
        (0x0, 0, 3, 3, 2),
        (0x4, 0, 1, 1, 1),
    ]
    assert (rows[0x8]["runs"], rows[0x8]["polled"], rows[0x8]["longest_run"]) == (1, 51, 51)


def test_a_real_trace_with_a_map(capsys: pytest.CaptureFixture[str], poll_log: Path, tmp_path: Path) -> None:
    rdl = tmp_path / "poll.rdl"
    rdl.write_text(RDL)
    assert main(["summary", "--map", str(rdl), str(poll_log)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[2:7]] == [
        "REGISTER",
        "poll.STATUS",
        "poll.COUNT",
        "poll.QUEUE",
        "poll.CTRL",
    ]
    runs = [line.strip() for line in lines if line.startswith("  R ")]
    assert len(runs) == 2
    assert runs[0].startswith("R poll.STATUS x51 0x0 -> 0x1 after ")
    assert runs[1].startswith("R poll.COUNT x10 0x0 after ")
