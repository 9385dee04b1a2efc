"""kmmio trace on real processes: every form, threads, lifecycles, faults, Python, the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import PROGRAMS, Run, kmmio, trace

from kmmio.trace import Access, Kind, Map, PciDev, Unknown, Unmap, Version


def _account(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line[:1] in ("R", "W", "U") and line[1:2] == " "]


def _logged(records: list, map_ids: set[int] | None = None) -> list[list[str]]:
    out = []
    for r in records:
        if isinstance(r, Access) and (map_ids is None or r.map_id in map_ids):
            out.append([r.kind.value, str(r.width), hex(r.phys), hex(r.value)])
        elif isinstance(r, Unknown):
            out.append(["U", hex(r.phys)])
    return out


def _plain_and_traced(
    argv: list[str], name: str, tmp_path: Path, mode: str
) -> tuple[subprocess.CompletedProcess[str], Run]:
    """Run ``argv + [FILE]`` untraced, then traced with FILE (named ``name``) as the pattern."""
    dev = str(tmp_path / name)
    plain = subprocess.run([*argv[:1], dev, *argv[1:]], capture_output=True, text=True)
    return plain, trace([*argv[:1], dev, *argv[1:]], name, tmp_path, mode)


def test_every_instruction_form(build, tmp_path: Path, mode: str) -> None:
    plain, run = _plain_and_traced([str(build("forms"))], "forms-regs.bin", tmp_path, mode)
    assert plain.returncode == 0 and run.status == 0, run.stderr
    # the program computed the same results under the tracer
    assert [ln for ln in run.stdout.splitlines() if ln.startswith("result")] == [
        ln for ln in plain.stdout.splitlines() if ln.startswith("result")
    ]
    assert _logged(run.records) == _account(run.stdout)
    assert isinstance(run.records[0], Version)
    maps = [r for r in run.records if isinstance(r, Map)]
    assert len(maps) == 1 and maps[0].phys == 0 and maps[0].length == 8192
    pcs = {r.pc for r in run.records if isinstance(r, Access)}
    assert all(pc > 0 for pc in pcs)
    tids = {r.pid for r in run.records if isinstance(r, Access)}
    assert tids == {maps[0].pid}
    assert isinstance(run.records[-1], Unmap) and run.records[-1].map_id == 1


@pytest.mark.parametrize("mode", ["step", "auto", "emulate", "agent"])
def test_four_threads_lose_nothing(build, tmp_path: Path, mode: str) -> None:
    n, threads = 20000, 4
    exe = build("threads")
    run = trace(
        [str(exe), str(tmp_path / "thr-regs.bin"), str(n), str(threads)], "thr-regs.bin", tmp_path, mode
    )
    assert run.status == 0 and "done" in run.stdout, run.stderr
    writes = [r for r in run.records if isinstance(r, Access) and r.kind is Kind.WRITE]
    assert len(writes) == n * threads
    assert f"{n * threads} accesses traced" in run.stderr and " 0 lost" in run.stderr
    if mode == "agent":  # each thread's stores performed in that thread, none relocated
        assert f"{n * threads} accesses performed in the program, 0 instructions relocated" in run.stderr
    elif mode != "step":  # the page never opens: no other thread can slip past
        assert f"{n * threads} instructions emulated, 0 stepped" in run.stderr
    per_tid: dict[int, list[int]] = defaultdict(list)
    for w in writes:
        assert w.width == 4 and w.phys == (w.value >> 24) * 64
        per_tid[w.pid].append(w.value)
    assert len(per_tid) == threads
    for values in per_tid.values():
        ident = values[0] >> 24
        assert values == [ident << 24 | k for k in range(n)]


def test_mappings_come_and_go(build, tmp_path: Path, mode: str) -> None:
    plain, run = _plain_and_traced([str(build("lifecycle"))], "life-regs.bin", tmp_path, mode)
    assert plain.returncode == 0 and run.status == 0, run.stderr
    assert run.stdout == plain.stdout
    maps = [r for r in run.records if isinstance(r, Map)]
    unmaps = [r for r in run.records if isinstance(r, Unmap)]
    # the 3-page mapping, the page moved by mremap, the child's copies of what was left
    assert [m.length for m in maps][:2] == [3 * 4096, 4096]
    assert {u.map_id for u in unmaps} == {m.map_id for m in maps}
    parent = maps[0].pid
    got = [
        (r.kind.value, hex(r.phys), hex(r.value))
        for r in run.records
        if isinstance(r, Access) and r.pid == parent
    ]
    want = [(k, o, v) for k, o, v in (ln.split() for ln in run.stdout.splitlines() if ln[:2] in ("R ", "W "))]
    assert got == want
    child = [
        (r.kind.value, hex(r.phys), hex(r.value))
        for r in run.records
        if isinstance(r, Access) and r.pid != parent
    ]
    assert child == [("R", "0x2008", "0x302"), ("W", "0x200c", "0x403")]


def test_genuine_segfault_is_handled_by_the_program(build, tmp_path: Path, mode: str) -> None:
    plain, run = _plain_and_traced([str(build("segv")), "handler"], "segv-regs.bin", tmp_path, mode)
    assert (run.status, run.stdout) == (plain.returncode, plain.stdout) == (0, plain.stdout)
    assert "caught SIGSEGV at offset 0x20 code 2" in run.stdout
    logged = [(r.kind.value, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    assert logged == [("W", 0x10, 0x11), ("R", 0x10, 0x11), ("W", 0x20, 0x22), ("R", 0x20, 0x22)]


def test_genuine_segfault_kills_the_program(build, tmp_path: Path, mode: str) -> None:
    plain, run = _plain_and_traced([str(build("segv")), "die"], "segv-regs.bin", tmp_path, mode)
    assert plain.returncode == -signal.SIGSEGV
    assert run.status == 128 + signal.SIGSEGV
    assert run.stdout == plain.stdout


def test_a_file_shrinking_under_its_mapping_gives_the_program_its_sigbus(
    build, tmp_path: Path, mode: str
) -> None:
    plain, run = _plain_and_traced([str(build("shrink"))], "shrink-regs", tmp_path, mode)
    assert plain.returncode == -signal.SIGBUS
    assert run.status == 128 + signal.SIGBUS, run.stderr  # the program's SIGBUS, kmmio alive
    assert run.stdout == plain.stdout == "before 1 2\n"
    logged = [(r.kind.value, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    assert logged == [("W", 0, 1), ("W", 0x1000, 2), ("R", 0x1000, 2), ("R", 0, 1)]
    assert isinstance(run.records[-1], Unmap)


def test_python_program_with_mmap_and_ctypes(tmp_path: Path, mode: str) -> None:
    script = PROGRAMS / "mmio_driver.py"
    dev = tmp_path / "py-regs.bin"
    plain = subprocess.run(
        [sys.executable, str(script), str(dev)], capture_output=True, text=True, check=True
    )
    run = trace([sys.executable, str(script), str(dev)], "py-regs.bin", tmp_path, mode)
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout
    accesses = [r for r in run.records if isinstance(r, Access)]
    # every single-register access the script reports is in the log, in order, exact width
    logged = [(r.kind.value, r.width, r.phys, r.value) for r in accesses if r.phys < 0x100]
    for kind, width, off, value in (ln.split() for ln in run.stdout.splitlines() if ln[:2] in ("R ", "W ")):
        item = (kind, int(width), int(off, 16), int(value, 16))
        assert item in logged
        logged = logged[logged.index(item) + 1 :]
    # the block copy wrote all 64 bytes, whatever widths memcpy chose
    block = bytearray(64)
    for r in accesses:
        if r.kind is Kind.WRITE and 0x100 <= r.phys < 0x140:
            block[r.phys - 0x100 : r.phys - 0x100 + r.width] = r.value.to_bytes(r.width, "little")
    assert bytes(block) == bytes(range(64))


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    log = tmp_path / "none.log"
    cases = [
        ["trace", "-m", "x"],
        ["trace", "-m", "x", "--", "/nonexistent/program"],
        ["trace", "-m", "x", "--", "no-such-command-kmmio"],
        ["trace", "-m", "x", "--", str(PROGRAMS / "forms.c")],
        ["trace", "--bogus", "-m", "x", "--", "true"],
        ["trace", "-o", "/nonexistent/dir/log", "-m", "x", "--", "true"],
        ["trace", "--", "true"],
        ["trace", "-m", "", "--", "true"],
    ]
    for args in cases:
        run = kmmio(args, log)
        assert run.status == 2, args
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kmmio: "), (args, run.stderr)
        assert "Traceback" not in run.stderr
    bare = kmmio([], log)  # no arguments at all: the usage
    assert bare.status == 2 and bare.stderr.startswith("usage: kmmio ") and "Traceback" not in bare.stderr
    for where, why in (("/dev/full", "No space left on device"), ("/proc/version", "Input/output error")):
        run = kmmio(["trace", "-q", "-o", where, "-m", "x", "--", "true"], log)
        assert (run.status, run.stderr) == (3, f"kmmio: cannot write the log: {why}\n"), where


def test_exit_status_and_unmatched_pattern(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    run = kmmio(["trace", "-o", str(log), "-m", "nothing-maps-this", "--", "sh", "-c", "exit 7"], log)
    assert run.status == 7
    assert "no mapping matched 'nothing-maps-this'" in run.stderr
    # the header alone: VERSION, then the machine's PCI devices
    assert [type(r) for r in run.records if not isinstance(r, PciDev)] == [Version]


def test_demo_runs_without_hardware_or_compiler(tmp_path: Path) -> None:
    out = tmp_path / "demo.log"
    run = kmmio(["demo", "-o", str(out)], out)
    assert run.status == 0, run.stderr
    assert "checksum" in run.stdout and "STATUS" in run.stdout
    writes = [r for r in run.records if isinstance(r, Access) and r.kind is Kind.WRITE]
    assert any(w.phys == 0x18 and w.value == 0xC5 for w in writes)  # CMD


SQL = """PRAGMA journal_mode=WAL;
CREATE TABLE t(a INTEGER, b TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<300)
  INSERT INTO t SELECT x, 'row'||x FROM c;
UPDATE t SET b = b || '!' WHERE a % 7 = 0;
SELECT count(*), sum(a), max(b), (SELECT b FROM t WHERE a = 14) FROM t;
"""


def test_real_program_sqlite_wal_shared_memory(tmp_path: Path) -> None:
    """sqlite3 (nobody here wrote it) keeps its WAL index in a shared mapping of ``*-shm``."""
    import shutil

    sqlite3 = shutil.which("sqlite3")
    assert sqlite3 is not None, "the end-to-end tests need the sqlite3 program (Debian: sqlite3)"
    plain_db, traced_db = tmp_path / "plain.db", tmp_path / "traced.db"
    plain = subprocess.run([sqlite3, str(plain_db)], input=SQL, capture_output=True, text=True, check=True)
    log = tmp_path / "sqlite.log"
    run = kmmio(
        ["trace", "-o", str(log), "-m", "traced.db-shm", "--", sqlite3, str(traced_db)], log, input=SQL
    )
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout
    records = run.records
    maps = [r for r in records if isinstance(r, Map)]
    assert maps and all(m.phys % 4096 == 0 for m in maps)
    accesses = [r for r in records if isinstance(r, Access)]
    assert (
        sum(a.kind is Kind.READ for a in accesses) > 10 and sum(a.kind is Kind.WRITE for a in accesses) > 10
    )
    assert not any(isinstance(r, Unknown) for r in records)
    check = subprocess.run(
        [sqlite3, str(traced_db), "PRAGMA integrity_check;"], capture_output=True, text=True
    )
    assert check.stdout.strip() == "ok"


def test_read_only_mapping_and_one_made_writable(build, tmp_path: Path, mode: str) -> None:
    plain, run = _plain_and_traced([str(build("readonly"))], "ro-regs.bin", tmp_path, mode)
    assert plain.returncode == run.status == 0, run.stderr
    assert run.stdout == plain.stdout == "read 0x1234\nwrote, read 0x77\n"
    logged = [(r.map_id, r.kind.value, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    assert logged == [(1, "R", 0, 0x1234), (2, "W", 4, 0x77), (2, "R", 4, 0x77)]


def test_program_reprotecting_while_its_threads_write_loses_nothing(build, tmp_path: Path, mode: str) -> None:
    """mprotect over traced pages by one thread while three others write to them."""
    threads, writes = 3, 2000 if mode == "step" else 30000
    exe = build("protect")
    run = trace(
        [str(exe), str(tmp_path / "prot-regs.bin"), str(threads), str(writes)],
        "prot-regs.bin",
        tmp_path,
        mode,
    )
    assert run.status == 0 and run.stdout == f"writes {threads * writes}\n", run.stderr
    logged = [r for r in run.records if isinstance(r, Access) and r.kind is Kind.WRITE]
    assert len(logged) == threads * writes
    calls = int(run.stderr.split("mprotect calls ")[1].split()[0])
    assert calls > 10  # the window was really exercised


def test_new_code_at_an_old_address_is_decoded_anew(build, tmp_path: Path, mode: str) -> None:
    """newcode.c patches the instruction at one address (re-protecting a file-backed code
    page, then in JIT memory with no syscall): each run is logged as what ran."""
    dev = tmp_path / "regs"
    run = trace([str(build("newcode")), str(dev)], "regs", tmp_path, mode)
    assert run.status == 0, run.stderr
    assert run.stdout.strip() == "00000055beef0c0d"
    got = [(r.kind.value, r.width, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    assert got == [
        *[("W", 4, 0, 0x11223344)] * 3,
        *[("W", 1, 4, 0x55)] * 3,
        ("W", 4, 0, 0x0A0B0C0D),
        ("W", 2, 2, 0xBEEF),
        ("R", 8, 0, 0x55BEEF0C0D),
    ]


def test_a_file_that_is_no_program_is_one_line_and_exit_2_with_no_log(tmp_path: Path) -> None:
    script = tmp_path / "not-a-program"
    script.write_text("hello\n")
    script.chmod(0o755)
    log = tmp_path / "none.log"
    run = kmmio(["trace", "-o", str(log), "-m", "x", "--", str(script)], log, timeout=60)
    assert (run.status, run.stderr) == (2, f"kmmio: cannot run {script}: Exec format error\n")
    assert log.read_text() == ""


def test_the_i386_mapping_calls_of_a_64_bit_program(build, tmp_path: Path, mode: str) -> None:
    exe = build("int80")
    dev = tmp_path / "i80-regs.bin"
    plain = subprocess.run([str(exe), str(dev)], capture_output=True, text=True, check=True)
    if plain.stdout == "no int 0x80\n":
        pytest.skip("this kernel has no i386 entry (IA32_EMULATION)")
    run = trace([str(exe), str(dev)], "i80-regs", tmp_path, mode)
    assert run.status == 0 and run.stdout == plain.stdout == "mapped\nread cafef00d\nread 0\ndone\n"
    (m,) = [r for r in run.records if isinstance(r, Map)]
    assert m.virt < 1 << 32 and m.length == 0x1000
    accesses = [(a.kind.value, a.width, a.phys, a.value) for a in run.records if isinstance(a, Access)]
    assert accesses == [("W", 4, 0x10, 0xCAFEF00D), ("R", 4, 0x10, 0xCAFEF00D), ("R", 4, 0x20, 0)]
    assert isinstance(run.records[-1], Unmap)
