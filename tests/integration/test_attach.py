"""kmmio trace -p: join a running program, trace it, leave it running exactly as before."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NOBODY, ReadyProgram, kmmio, kmmio_async, wait_for_lines

from kmmio.trace import Access, Map, Mark, read_records


class Program(ReadyProgram):
    """attachee.c running in the background: its pid, mapping and protections."""

    def __init__(self, exe: Path, dev: Path, threads: int, rounds: int) -> None:
        super().__init__([str(exe), str(dev), str(threads), str(rounds)], dev)


@pytest.mark.parametrize("mode", ["step", "auto"])  # -p: ptrace (the agent is not injected)
def test_attach_mid_way_and_detach_with_sigint(build, tmp_path: Path, mode: str) -> None:
    prog = Program(build("attachee"), tmp_path / "att-regs.bin", 4, 600_000)
    before = prog.maps()
    log = tmp_path / "att.log"
    tracer = kmmio_async(["trace", "--mode", mode, "-o", str(log), "-m", "att-regs.bin", "-p", str(prog.pid)])
    wait_for_lines(log, 300)
    tracer.send_signal(signal.SIGINT)
    _, err = tracer.communicate(timeout=60)
    assert tracer.returncode == 0, err
    assert " 0 lost" in err
    assert prog.maps() == before  # every page has its protection back
    with open(f"/proc/{prog.pid}/status") as f:
        assert "TracerPid:\t0\n" in f.read()
    assert prog.finish() == "ok\n"
    assert prog.proc.returncode == 0
    records = list(read_records(log.read_text().splitlines()))
    last = records[-1]
    assert isinstance(last, Mark) and last.text == "detached (SIGINT): the program runs on untraced"
    maps = [r for r in records if isinstance(r, Map)]
    assert len(maps) == 1 and maps[0].pid == prog.pid
    accesses = [r for r in records if isinstance(r, Access)]
    assert len(accesses) >= 300
    # each thread's accesses are its own counter, written then read back, in order
    per_tid: dict[int, list[tuple[str, int]]] = {}
    for a in accesses:
        per_tid.setdefault(a.pid, []).append((a.kind.value, a.value))
    for seq in per_tid.values():
        writes = [v for k, v in seq if k == "W"]
        assert writes == sorted(writes) and len(set(writes)) == len(writes)


DURATION = "--duration elapsed"


def test_fifty_attach_detach_cycles_leave_the_program_healthy(build, tmp_path: Path) -> None:
    prog = Program(build("attachee"), tmp_path / "cyc-regs.bin", 2, 0)  # runs until SIGUSR1
    before = prog.maps()
    for cycle in range(50):
        log = tmp_path / f"cycle{cycle}.log"
        run = kmmio(
            ["trace", "-q", "--duration", "0.05", "-o", str(log), "-m", "cyc-regs.bin", "-p", str(prog.pid)],
            log,
        )
        assert run.status == 0, (cycle, run.stderr)
        assert prog.maps() == before, cycle
        last = run.records[-1]
        assert isinstance(last, Mark) and last.text == f"detached ({DURATION}): the program runs on untraced"
        assert any(isinstance(r, Map) for r in run.records)
    prog.proc.send_signal(signal.SIGUSR1)
    assert prog.finish() == "ok\n"


def test_attach_refusals_are_one_line_and_exit_2(build, tmp_path: Path) -> None:
    log = tmp_path / "none.log"
    for args, words in [
        (["trace", "-m", "x", "-p", "999999999"], "no process"),
        (["trace", "-m", "x", "-p", "1", "--", "true"], "not both"),
        (["trace", "-m", "x", "--duration", "-1", "-p", "1"], "positive"),
    ]:
        run = kmmio(args, log)
        assert run.status == 2 and words in run.stderr and len(run.stderr.strip().splitlines()) == 1, (
            run.stderr
        )
    prog = Program(build("attachee"), tmp_path / "busy-regs.bin", 1, 2_000_000)
    first = kmmio_async(
        ["trace", "-q", "-o", str(tmp_path / "a.log"), "-m", "busy-regs.bin", "-p", str(prog.pid)]
    )
    wait_for_lines(tmp_path / "a.log", 10)
    second = kmmio(["trace", "-m", "busy-regs.bin", "-p", str(prog.pid)], log)
    assert second.status == 2 and "already traced by process" in second.stderr
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert prog.finish() == "ok\n"


def _yama_scope() -> int:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run kmmio as user nobody on a root program")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to run as nobody")
def test_attach_refusals_as_an_unprivileged_user(build, tmp_path: Path) -> None:
    prog = Program(build("attachee"), tmp_path / "priv-regs.bin", 1, 2_000_000)
    run = subprocess.run(
        [*NOBODY, sys.executable, "-m", "kmmio", "trace", "-m", "priv-regs.bin", "-p", str(prog.pid)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    scope = _yama_scope()
    if scope >= 1:
        why = f"Yama ptrace_scope is {scope} (try as root)"
    else:
        why = "not privileged (it is not yours, or it gained privileges)"
    assert (run.returncode, run.stdout) == (2, ""), run.stderr
    assert run.stderr == f"kmmio: cannot attach to process {prog.pid}: {why}\n"
    with open(f"/proc/{prog.pid}/status") as f:
        assert "TracerPid:\t0\n" in f.read()
    assert prog.finish() == "ok\n"


def test_attaching_to_a_stopped_program_leaves_it_stopped(build, tmp_path: Path) -> None:
    prog = Program(build("attachee"), tmp_path / "stop-regs.bin", 2, 400_000)
    before = prog.maps()
    os.kill(prog.pid, signal.SIGSTOP)
    time.sleep(0.2)
    log = tmp_path / "stop.log"
    run = kmmio(
        ["trace", "-q", "--duration", "0.3", "-o", str(log), "-m", "stop-regs.bin", "-p", str(prog.pid)], log
    )
    assert run.status == 0, run.stderr
    time.sleep(0.2)
    with open(f"/proc/{prog.pid}/status") as f:
        assert "State:\tT (stopped)" in f.read()
    assert prog.maps() == before
    os.kill(prog.pid, signal.SIGCONT)
    assert prog.finish() == "ok\n"


def test_a_failure_inside_restores_and_detaches_before_exit_3(build, tmp_path: Path) -> None:
    """The log's disk is full (/dev/full): kmmio says so in one line and exits 3, having
    given every page its protection back and detached; the program finishes fine."""
    prog = Program(build("attachee"), tmp_path / "full-regs.bin", 2, 200_000)
    before = prog.maps()
    run = kmmio(["trace", "-o", "/dev/full", "-m", "full-regs.bin", "-p", str(prog.pid)], tmp_path / "none")
    assert run.status == 3
    assert run.stderr.strip().splitlines() == ["kmmio: cannot write the log: No space left on device"]
    assert prog.maps() == before
    with open(f"/proc/{prog.pid}/status") as f:
        assert "TracerPid:\t0\n" in f.read()
    assert prog.finish() == "ok\n"
