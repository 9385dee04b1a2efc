"""Processes under the tracer: vfork and exec, job control, a reader fuzzed with 100,000 inputs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import trace, wait_for_lines

from kmmio.errors import TraceFormatError
from kmmio.trace import Access, Map, Unmap, read_records


def test_vfork_and_exec(build, tmp_path: Path, mode: str) -> None:
    exe = build("execs")
    run = trace([str(exe), str(tmp_path / "ex-regs.bin"), "first"], "ex-regs.bin", tmp_path, mode)
    assert run.status == 0, run.stderr
    assert "second R 11 22 33" in run.stdout
    maps = [r for r in run.records if isinstance(r, Map)]
    unmaps = [r for r in run.records if isinstance(r, Unmap)]
    first, child, second = maps
    assert child.pid != first.pid and second.pid == first.pid
    assert [u.map_id for u in unmaps] == [child.map_id, first.map_id, second.map_id]
    logged = [(r.map_id, r.kind.value, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    assert logged == [
        (first.map_id, "W", 0, 0x11),
        (child.map_id, "W", 4, 0x22),
        (first.map_id, "W", 8, 0x33),  # the vfork child's exec did not end its parent's mapping
        (second.map_id, "R", 8, 0x33),
        (second.map_id, "R", 4, 0x22),
        (second.map_id, "R", 0, 0x11),
        (second.map_id, "W", 12, 0x44),
    ]


def _traced_attachee(
    build, tmp_path: Path, name: str, rounds: int, **popen: object
) -> tuple[subprocess.Popen[str], int, Path]:  # type: ignore[no-untyped-def]
    """attachee.c (2 threads) spawned under kmmio; the tracer, the program's pid, the log."""
    log = tmp_path / f"{name}.log"
    argv = ["trace", "-o", str(log), "-m", f"{name}-regs.bin", "--"]
    program = [str(build("attachee")), str(tmp_path / f"{name}-regs.bin"), "2", str(rounds)]
    tracer = subprocess.Popen(
        [sys.executable, "-m", "kmmio", *argv, *program], stdout=subprocess.PIPE, text=True, **popen
    )  # type: ignore[call-overload]
    assert tracer.stdout is not None
    return tracer, int(tracer.stdout.readline().split()[1]), log


def test_job_control_stop_and_continue(build, tmp_path: Path) -> None:
    tracer, pid, log = _traced_attachee(build, tmp_path, "jc", 20000)
    time.sleep(0.3)
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    time.sleep(0.3)
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    assert state in ("T", "t")
    count = log.read_text().count("\n")
    time.sleep(0.3)
    assert log.read_text().count("\n") <= count + 256  # stopped: (almost) nothing more
    subprocess.run(["kill", "-CONT", str(pid)], check=True)
    out, _ = tracer.communicate(timeout=300)
    assert tracer.returncode == 0
    assert out.strip() == "ok"


VALID = [
    "VERSION 20070824",
    "PCIDEV 0010 80865a84 86 91000004 0 8000000c 0 f001 0 c0002 1000000 0 10000000 0 40 0 20000 i915",
    "MAP 1037.681661 1 0x90000000 0xffffb7b187000000 0x1000000 0x0 0",
    "R 4 1037.681772 1 0x90000300 0x37002 0x0 0",
    "W 1 0.000001 12 0x0 0x80 0x55d0c0de 4242",
    "UNMAP 12.000100 -1 0x0 0",
    "UNKNOWN 3.000000 1 0x400 c4,e2,69 0x401000 7",
    "MARK 0.000000 Lost 3 events.",
    "# tracer: mmiotrace",
]


def _mutate(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[rng.randrange(len(data))]
        elif op == 1:
            data.insert(at, rng.randrange(256))
        elif op == 2 and data:
            data[rng.randrange(len(data))] = rng.choice(b" \t\n\r0x-.,#9fFgz\x00\xff")
        elif op == 3:
            data[at:at] = rng.choice([b" ", b"0x", b"-1", b"99999999999999999999", b"\n", b"."])
        else:
            cut = rng.randrange(len(data) + 1)
            data = data[:cut]
    return bytes(data)


def test_reader_survives_100000_fuzzed_inputs() -> None:
    rng = random.Random(20261126)
    parsed = refused = 0
    for _ in range(100_000):
        lines = rng.sample(VALID, rng.randint(1, 3))
        blob = _mutate(rng, "\n".join(lines).encode())
        try:
            list(read_records(blob.splitlines()))
            parsed += 1
        except TraceFormatError as exc:
            assert exc.line_no >= 1
            refused += 1
    assert parsed > 1000 and refused > 1000  # both outcomes are exercised


def test_sigint_to_a_spawned_program_reaches_it_and_the_log_is_complete(build, tmp_path: Path) -> None:
    """Ctrl-C as strace: the terminal sends it to the whole group; kmmio waits for the end."""
    tracer, _, log = _traced_attachee(build, tmp_path, "int", 3_000_000, start_new_session=True)
    time.sleep(0.3)

    os.killpg(tracer.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    tracer.communicate(timeout=120)
    assert tracer.returncode == 128 + signal.SIGINT  # the program died of it, as untraced
    text = log.read_text()
    assert text.endswith("\n") and text.rstrip().splitlines()[-1].startswith("UNMAP")


def _signals_report(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line) | {
        "verdict": out.splitlines()[-1]
    }


def test_signals_on_an_alternate_stack_and_the_programs_own_sigsegv_handler(
    build, tmp_path: Path, mode: str
) -> None:
    """signals.c: a timer's handler on a sigaltstack touches the traced mapping, also while
    the program's own SIGSEGV handler (guard page) runs with SIGSEGV blocked: every access
    is traced and every fault of the program's own reaches its handler."""
    rounds = 5000
    run = trace([str(build("signals")), str(tmp_path / "sig-regs"), str(rounds)], "sig-regs", tmp_path, mode)
    assert run.status == 0, run.stderr
    got = _signals_report(run.stdout)
    assert got["verdict"] == "ok" and got["altstack"] == "yes"
    assert int(got["guard"]) == rounds // 100
    alarms = int(got["alarms"])
    assert alarms > 50, "the timer hardly fired during the traced accesses"
    accesses = [r for r in run.records if isinstance(r, Access)]
    assert len(accesses) == 2 * rounds + 2 * alarms + 1
    assert " 0 lost" in run.stderr


def test_attach_keeps_the_programs_sigsegv_handler(build, tmp_path: Path) -> None:
    """Attached mid-way, kmmio reads the program's SIGSEGV action and keeps it."""
    dev = tmp_path / "sig-regs"
    prog = subprocess.Popen(
        [str(build("signals")), str(dev), "300000", "slow"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert prog.stdout is not None
        pid = int(prog.stdout.readline().split()[1])
        log = tmp_path / "sig.log"
        tracer = subprocess.Popen(
            [sys.executable, "-m", "kmmio", "trace", "-o", str(log), "-m", "sig-regs", "-p", str(pid)],
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_lines(log, 3000)
        tracer.send_signal(signal.SIGINT)
        _, err = tracer.communicate(timeout=60)
        assert tracer.returncode == 0 and " 0 lost" in err, err
        out, _ = prog.communicate(timeout=120)
    finally:
        if prog.poll() is None:
            prog.kill()
            prog.wait()
    assert prog.returncode == 0
    got = _signals_report(out)
    assert got["verdict"] == "ok" and got["altstack"] == "yes" and int(got["guard"]) == 3000


def test_madvise_over_traced_pages_while_a_thread_touches_them(build, tmp_path: Path, mode: str) -> None:
    """madvise.c: DONTNEED, REMOVE, WILLNEED and COLD over traced pages keep them traced and
    the data right; a DONTFORK mapping is not the child's."""
    run = trace([str(build("madvise")), str(tmp_path / "madv-regs"), "4000"], "madv-regs", tmp_path, mode)
    assert run.status == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "child ok" in lines and lines[-1] == "ok"
    made = int(next(ln for ln in lines if ln.startswith("accesses")).split()[1])
    assert sum(isinstance(r, Access) for r in run.records) == made
    assert " 0 lost" in run.stderr
    maps = [r for r in run.records if isinstance(r, Map)]
    parent = maps[0].pid
    # the parent's two mappings, and in the child only the one without MADV_DONTFORK
    assert [(m.pid == parent, m.length) for m in maps] == [(True, 4 * 4096), (True, 4096), (False, 4 * 4096)]
    assert {u.map_id for u in run.records if isinstance(u, Unmap)} == {m.map_id for m in maps}
