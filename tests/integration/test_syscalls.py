"""Traced memory handed to the kernel: buffers, futexes, robust lists, spawned and attached.

Every program here runs untraced and traced; its output must not change, and the log
must say, with a ``MARK`` line, each time the kernel reached traced bytes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROGRAMS, backend_args, kmmio, trace, wait_for_lines

from kmmio.trace import KernelAccess, Map, Mark, read_records

#: What bufsys.c makes the kernel reach, in order: syscall, direction, map id, offset in
#: the file, length (None: not known).  Map 1 is the file's 4 pages, map 2 its page 3
#: mapped again right after an untraced page.
BUFSYS_MARKS = [
    ("write", "reads", 1, 0x0, 0x3E8),
    ("read", "writes", 1, 0x1000, 0x3E8),
    ("pwrite64", "reads", 1, 0x64, 0x2BC),
    ("pread64", "writes", 1, 0x2000, 0x2BC),
    ("writev", "reads", 1, 0xC8, 0x12C),
    ("readv", "writes", 1, 0x15DC, 0x12C),
    ("pwritev2", "reads", 1, 0xC8, 0x12C),
    ("preadv2", "writes", 1, 0x15DC, 0x12C),
    ("writev", "reads", 1, 0xBB8, 0x20),  # the iovec array itself
    ("writev", "reads", 1, 0x0, 0xA),
    ("sendto", "reads", 1, 0x32, 0x190),
    ("recvfrom", "writes", 1, 0x17D0, 0x190),
    ("sendmsg", "reads", 1, 0x1A28, 0x40),
    ("recvmsg", "writes", 1, 0x1AF0, 0x40),
    ("recvmsg", "updates", 1, 0xDAC, 0x38),  # the msghdr itself
    ("recvmsg", "writes", 1, 0x3064, 0x40),  # its control buffer
    ("sendmmsg", "reads", 1, 0x12C, 0x20),
    ("recvfrom", "writes", 1, 0x1BB8, 0x40),
    ("recvmmsg", "writes", 1, 0x1C1C, 0x14),
    ("ioctl", "accesses", 1, 0x23E8, None),
    ("getrandom", "writes", 1, 0x27D0, 0x20),
    ("clock_gettime", "writes", 1, 0x2BB8, 0x10),
    ("access", "reads", 1, 0xF3C, None),
    ("prctl", "accesses", 1, 0x2DAC, None),
    ("futex", "accesses", 1, 0x2ED8, 0x4),
    ("futex", "reads", 1, 0x2ED8, 0x4),
    ("futex", "reads", 1, 0x2ED8, 0x4),
    ("write", "reads", 2, 0x3000, 0x60),  # straddling: only the traced part
    ("read", "writes", 2, 0x3000, 0x80),
    ("pwrite64", "reads", 2, 0x3000, 0x60),
    ("pread64", "writes", 2, 0x3000, 0xA0),
    ("sendto", "reads", 2, 0x3000, 0x28),
    ("recvfrom", "writes", 2, 0x3000, 0x3C),
    ("getrandom", "writes", 2, 0x3000, 0x8),
]


def kernel_accesses(records: list[object]) -> list[KernelAccess]:
    return [r for r in records if isinstance(r, KernelAccess)]


def test_every_buffer_syscall_on_traced_pages_works_and_is_marked(build, tmp_path: Path, mode: str) -> None:
    exe = build("bufsys")
    dev = tmp_path / "bufsys-regs.bin"
    plain = subprocess.run([str(exe), str(dev)], capture_output=True, text=True, check=True, cwd=tmp_path)
    run = trace([str(exe), str(dev)], "bufsys-regs", tmp_path, mode)
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout
    assert "0 lost" in run.stderr
    pid = next(r.pid for r in run.records if isinstance(r, Map))
    marks = kernel_accesses(run.records)
    assert [(m.syscall, m.direction, m.map_id, m.phys, m.length) for m in marks] == BUFSYS_MARKS
    assert {m.tid for m in marks} == {pid}
    # Each is a MARK line a reader that knows only the kernel's records can read.
    lines = [line for line in run.log.splitlines() if line.startswith("MARK ")]
    assert [line.split(" ", 2)[2] for line in lines[:3]] == [
        f"map 1 {tmp_path / 'bufsys-regs.bin'} file",
        f"map 2 {tmp_path / 'bufsys-regs.bin'} file",
        f"syscall write reads map 1 0x0+0x3e8 tid {pid}",
    ]
    assert all(isinstance(r, Mark) for r in read_records(lines, typed_marks=False))


def _locks(tmp_path: Path, exe: Path, rounds: int) -> list[str]:
    return [str(exe), str(tmp_path / "shl-regs.bin"), str(rounds)]


def _check_locks(out: str, rounds: int, records: list[object]) -> None:
    assert out.splitlines()[-4:] == [
        f"counter {4 * rounds}",
        f"turns {4 * (rounds // 10)}",
        "robust EOWNERDEAD",
        "ok",
    ]
    marks = kernel_accesses(records)
    assert {m.syscall for m in marks} >= {"futex", "robust_list"}
    assert [(m.direction, m.length) for m in marks if m.syscall == "robust_list"] == [("updates", 4)]
    assert not any(isinstance(r, Mark) and "Lost" in r.text for r in records)


ROUNDS = {"auto": 2000, "step": 300, "agent": 2000}


def test_process_shared_locks_in_traced_memory_spawned(build, tmp_path: Path, mode: str) -> None:
    rounds = ROUNDS[mode]
    log = tmp_path / "locks.log"
    run = kmmio(
        [
            "trace",
            *backend_args(mode),
            "-o",
            str(log),
            "-m",
            "shl-regs",
            "--",
            *_locks(tmp_path, build("shlocks"), rounds),
        ],
        log,
        input="go\n",
    )
    assert run.status == 0, run.stdout + run.stderr
    assert "0 lost" in run.stderr
    _check_locks(run.stdout, rounds, run.records)


def _attached(program: list[str], pattern: str, tmp_path: Path, mode: str) -> tuple[str, int, list[object]]:
    """Start ``program`` (it prints "ready PID" and waits for a line), attach kmmio, let it go."""
    prog = subprocess.Popen(program, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    assert prog.stdout is not None and prog.stdin is not None
    ready = prog.stdout.readline().split()
    assert ready[0] == "ready", ready
    log = tmp_path / "attached.log"
    tracer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kmmio",
            "trace",
            "--mode",
            mode,
            "-o",
            str(log),
            "-m",
            pattern,
            "-p",
            ready[1],
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_lines(log, 0, "\nMAP ")
        prog.stdin.write("go\n")
        prog.stdin.flush()
        out, _ = prog.communicate(timeout=600)
        _, err = tracer.communicate(timeout=60)
    finally:
        for p in (prog, tracer):
            if p.poll() is None:
                p.kill()
    assert tracer.returncode == 0, err
    assert "0 lost" in err
    return out, prog.returncode, list(read_records(log.read_text().splitlines()))


@pytest.mark.parametrize("mode", ["step", "auto"])  # -p: ptrace
def test_process_shared_locks_in_traced_memory_attached(build, tmp_path: Path, mode: str) -> None:
    rounds = ROUNDS[mode]
    out, status, records = _attached(_locks(tmp_path, build("shlocks"), rounds), "shl-regs", tmp_path, mode)
    assert status == 0, out
    _check_locks(out, rounds, records)


MPLOCK = [sys.executable, str(PROGRAMS / "mplock.py")]
MP_ROUNDS = {"auto": 1500, "step": 200, "agent": 1500}


def test_a_multiprocessing_lock_spawned(tmp_path: Path, mode: str) -> None:
    rounds = MP_ROUNDS[mode]
    run = trace([*MPLOCK, str(rounds)], "/dev/shm/", tmp_path, mode)
    assert run.status == 0, run.stdout + run.stderr
    assert run.stdout.split() == ["counter", str(4 * rounds), "ok"]
    assert "futex" in {m.syscall for m in kernel_accesses(run.records)}
    assert "0 lost" in run.stderr and "Lost" not in run.log


@pytest.mark.parametrize("mode", ["step", "auto"])  # -p: ptrace
def test_a_multiprocessing_lock_attached(tmp_path: Path, mode: str) -> None:
    rounds = MP_ROUNDS[mode]
    out, status, records = _attached([*MPLOCK, str(rounds), "wait"], "/dev/shm/", tmp_path, mode)
    assert status == 0, out
    assert out.split()[-3:] == ["counter", str(4 * rounds), "ok"]
    assert "futex" in {m.syscall for m in kernel_accesses(records)}


def test_every_buffer_syscall_on_traced_pages_attached(build, tmp_path: Path) -> None:
    exe = build("bufsys")
    dev = tmp_path / "bufsys-regs.bin"
    plain = subprocess.run([str(exe), str(dev)], capture_output=True, text=True, check=True, cwd=tmp_path)
    out, status, records = _attached([str(exe), str(dev), "wait"], "bufsys-regs", tmp_path, "auto")
    assert status == 0
    assert out == plain.stdout
    # Attached, the mappings are found in address order: name them by their size.
    which = {r.map_id: 1 if r.length == 0x4000 else 2 for r in records if isinstance(r, Map)}
    marks = [(m.syscall, m.direction, which[m.map_id], m.phys, m.length) for m in kernel_accesses(records)]
    assert marks == BUFSYS_MARKS


@pytest.mark.parametrize("mode", ["step", "auto"])  # the agent holds no threads (test_agent.py)
def test_a_blocking_syscall_on_lent_pages_lets_the_other_threads_go(build, tmp_path: Path, mode: str) -> None:
    """A private mapping has no alias: its pages are lent to the syscall with the other
    threads held.  This read waits for another thread: after a while they are let go, the
    pages armed again, and the read, failing on them, runs again lent."""
    exe = build("lendblock")
    run = trace([str(exe), str(tmp_path / "lb-regs")], "lb-regs", tmp_path, mode, timeout=120)
    assert run.status == 0 and run.stdout == "read 32 the other thread wrote this line\nok\n"
    marks = [r for r in run.records if isinstance(r, Mark | KernelAccess)]
    pid = next(r.pid for r in run.records if isinstance(r, Map))
    held = f"tid {pid} held its other threads 50 ms in read with traced pages lent"
    assert isinstance(marks[0], Mark) and marks[0].text == f"{held}: they run on, the pages armed again"
    assert [(m.syscall, m.direction, m.phys, m.length) for m in marks[1:]] == [("read", "writes", 0x64, 0x20)]


def test_asynchronous_io_on_traced_memory_is_reported(build, tmp_path: Path) -> None:
    """AIO and io_uring reach their buffers later, from the kernel's own context: kmmio
    cannot redirect that, and says so, in the log per request and once on stderr."""
    exe = build("asyncio")
    plain = subprocess.run(
        [str(exe), str(tmp_path / "aio-regs")], capture_output=True, text=True, cwd=tmp_path
    )
    if "no aio" in plain.stdout or "no io_uring" in plain.stdout:
        pytest.skip(f"this kernel lacks one: {plain.stdout!r}")
    assert plain.stdout == "aio 64\nuring 64\n"
    run = trace([str(exe), str(tmp_path / "aio-regs")], "aio-regs", tmp_path)
    assert run.status == 0 and run.stdout == "aio -14\nuring -14\n"
    pid = next(r.pid for r in run.records if isinstance(r, Map))
    tail = "to the kernel for asynchronous I/O: not redirected, the request fails with EFAULT"
    assert [r.text for r in run.records if isinstance(r, Mark)] == [
        f"tid {pid}: io_submit opcode 0 hands traced memory (map 1 0x100+0x40) {tail}",
        f"tid {pid}: io_uring opcode 22 hands traced memory (map 1 0x200+0x40) {tail}",
    ]
    assert run.stderr.count("asynchronous I/O") == 1
