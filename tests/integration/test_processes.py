"""Processes under the tracer: vfork and exec, job control, Ctrl-C, signals, madvise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import trace, wait_for_lines

from kmmio.trace import Access, Map, Unmap


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
    """SIGSTOP stops the traced program (the log stops growing), SIGCONT lets it go on."""
    tracer, pid, log = _traced_attachee(build, tmp_path, "jc", 0)  # runs until SIGUSR1
    wait_for_lines(log, 100)
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            break
        time.sleep(0.02)
    assert state in ("T", "t")
    # Stopped: once what was traced before reached the log, nothing more comes.
    count, settled = -1, log.read_text().count("\n")
    while count != settled:
        count = settled
        time.sleep(0.3)
        settled = log.read_text().count("\n")
    time.sleep(0.3)
    assert log.read_text().count("\n") == count
    subprocess.run(["kill", "-CONT", str(pid)], check=True)
    wait_for_lines(log, count + 100)  # it runs again
    os.kill(pid, signal.SIGUSR1)
    out, _ = tracer.communicate(timeout=300)
    assert tracer.returncode == 0
    assert out.strip() == "ok"


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


@pytest.mark.parametrize("stack", ["armed", "autodisarm"])
def test_signals_on_an_alternate_stack_and_the_programs_own_sigsegv_handler(
    build, tmp_path: Path, mode: str, stack: str
) -> None:
    """signals.c: a timer's handler on a sigaltstack touches the traced mapping, and so does
    the program's own SIGSEGV handler (guard page) with SIGSEGV blocked, as it is inside
    that handler: every access is traced, SIGSEGV stays blocked there, and every fault of
    the program's own reaches its handler.  With ``autodisarm`` the alternate stack is
    disarmed while a handler runs on it, and must be armed again after each (the agent's
    handler runs on it too)."""
    rounds = 5000
    args = [str(rounds)] + ([stack] if stack == "autodisarm" else [])
    run = trace([str(build("signals")), str(tmp_path / "sig-regs"), *args], "sig-regs", tmp_path, mode)
    assert run.status == 0, run.stderr
    got = _signals_report(run.stdout)
    assert got["verdict"] == "ok" and got["altstack"] == "yes"
    made = int(got["rounds"])  # ROUNDS, or more until the timer fired 64 times
    assert made >= rounds and int(got["alarms"]) >= 64
    guard = (made + 99) // 100  # the rounds i with i % 100 == 0
    assert int(got["guard"]) == guard
    # one traced increment in the SIGSEGV handler a guard fault, with SIGSEGV blocked
    assert int(got["blocked"]) == guard
    accesses = [r for r in run.records if isinstance(r, Access)]
    # the loop's write and read, the SIGALRM handler's read and write, the SIGSEGV
    # handler's read and write, the 2 final reads of the counters
    assert len(accesses) == 2 * made + 2 * int(got["alarms"]) + 2 * guard + 2
    # the SIGSEGV handler's counter: read n, write n + 1, each time; read at the end
    counter = [(a.kind.value, a.value) for a in accesses if a.phys == 0x200]
    assert counter == [*(step for n in range(guard) for step in (("R", n), ("W", n + 1))), ("R", guard)]
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
    assert got["verdict"] == "ok" and got["altstack"] == "yes"
    guard = (int(got["rounds"]) + 99) // 100
    assert int(got["guard"]) == int(got["blocked"]) == guard


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
