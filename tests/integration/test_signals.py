"""How kmmio is stopped, and what it then reports (issue 13, the README's Usage bullets).

A spawned program cannot be let go untraced (its seccomp filter stays in it): SIGTERM and
SIGHUP to kmmio are passed on to it, ``--duration`` sends it SIGTERM, kmmio traces it until
it exits and exits with its status, whatever that is (128+N if signal N killed it, its own
exit code if it caught the signal); a second signal kills it with SIGKILL; Ctrl-C goes to
the program, not to kmmio; SIGKILL of kmmio kills it too.  An attached program (``-p``) is
let go by SIGTERM, SIGHUP, SIGINT and ``--duration``: pages restored, detached, kmmio exits
0, the program runs on.

Every program here is stoppable.c: it works on its traced mapping until told to stop and
never finishes by itself, and each signal is sent once kmmio has logged some of its
accesses, so the program is stopped in the middle of its work.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import ReadyProgram, kmmio_async, wait_for_lines

from kmmio.trace import Access, KernelAccess, Map, Mark, Record, read_records

DURATION = "--duration elapsed"
#: Seconds of ``--duration``: far more than the program needs to start and reach its loop,
#: so that the stop finds it at work.
SECONDS = "3"
#: Lines (header, MAP, accesses) to wait for before a signal is sent.
BEFORE = 50


def _records(log: Path) -> list[Record]:
    text = log.read_text()
    assert text.endswith("\n"), "the log ends in the middle of a line"
    return list(read_records(text.splitlines()))


def _marks(records: list[Record]) -> list[str]:
    """kmmio's own MARK lines (not the syscall ones)."""
    return [r.text for r in records if isinstance(r, Mark) and not isinstance(r, KernelAccess)]


def _state(pid: int) -> str | None:
    """The process's state letter (``R``, ``S``, ``Z``...), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def _wait_gone(pid: int, timeout: float = 60) -> str | None:
    """Wait until ``pid`` is gone or a zombie (dead, waiting to be reaped by whoever
    inherited it); its last state."""
    deadline = time.monotonic() + timeout
    while (state := _state(pid)) not in (None, "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


def _program_pid(log: Path) -> int:
    """The spawned program's pid: the thread that made its traced mapping (the MAP line,
    which reaches the log at once)."""
    maps = [r for r in _records(log) if isinstance(r, Map)]
    assert len(maps) == 1, maps
    return maps[0].pid


def _summary_status(err: str) -> str:
    """``exit status N`` of kmmio's one-line summary on standard error."""
    lines = [line for line in err.splitlines() if "accesses traced" in line]
    assert len(lines) == 1, err
    return lines[0].rsplit("; ", 1)[-1]


class Spawned:
    """kmmio tracing stoppable.c, which it started, in the background."""

    def __init__(self, exe: Path, tmp: Path, how: str, extra: Sequence[str] = (), **kw: object) -> None:
        self.log = tmp / "sig.log"
        program = [str(exe), str(tmp / "sig-regs.bin"), how]
        self.tracer = kmmio_async(
            # The ptrace backend: its spawned programs get the stop (the agent's let go and run
            # on: test_agent.py).
            [
                "trace",
                "--backend",
                "ptrace",
                "-o",
                str(self.log),
                *extra,
                "-m",
                "sig-regs.bin",
                "--",
                *program,
            ],
            **kw,
        )

    def at_work(self) -> int:
        """Wait until it is traced at work; its pid."""
        wait_for_lines(self.log, BEFORE)
        return _program_pid(self.log)

    def finish(self) -> tuple[int, str, str, list[Record]]:
        out, err = self.tracer.communicate(timeout=120)
        return self.tracer.returncode, out, err, _records(self.log)


def _caught(stop: str) -> str:
    return "SIGTERM" if stop == "duration" else stop


@pytest.mark.parametrize("how", ["die", "handle"])
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP", "duration"])
def test_a_spawned_program_is_sent_the_stop_and_kmmio_exits_with_its_own_status(
    build, tmp_path: Path, stop: str, how: str
) -> None:
    """SIGTERM and SIGHUP to kmmio reach the spawned program, ``--duration`` sends it
    SIGTERM; kmmio traces it until it exits and exits with the program's own status: 128+N
    when the signal killed it (143, 129, 143), 0 when it caught the signal, printed so and
    exited by itself — the truth, not a fixed 143.  The log's one MARK of kmmio's says what
    was sent, after the accesses of the program at work."""
    sig = signal.Signals[_caught(stop)]
    run = Spawned(build("stoppable"), tmp_path, how, ["--duration", SECONDS] if stop == "duration" else [])
    if stop != "duration":
        pid = run.at_work()
        run.tracer.send_signal(sig)
    status, out, err, records = run.finish()
    if stop == "duration":
        pid = _program_pid(run.log)
    expected = 128 + sig if how == "die" else 0
    assert status == expected, err
    assert _summary_status(err) == f"exit status {expected}"
    caught = "" if how == "die" else f"caught {sig.name}\n"
    assert out == f"ready {pid}\n{caught}"
    what = DURATION if stop == "duration" else stop
    assert _marks(records) == [f"{what}: {sig.name} sent to the program"]
    mark = next(i for i, r in enumerate(records) if isinstance(r, Mark) and not isinstance(r, KernelAccess))
    assert any(isinstance(r, Access) and r.pid == pid for r in records[:mark])  # stopped at work
    assert _wait_gone(pid) in (None, "Z", "X")


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_second_signal_kills_a_spawned_program_that_ignores_the_first(
    build, tmp_path: Path, first: signal.Signals
) -> None:
    """A program that ignores SIGTERM and SIGHUP gets the first signal passed on and runs
    on, traced; a second SIGTERM to kmmio sends it SIGKILL: kmmio exits 137 (128 + 9), and
    the log has two MARK lines, the first signal then the SIGKILL."""
    run = Spawned(build("stoppable"), tmp_path, "ignore")
    pid = run.at_work()
    run.tracer.send_signal(first)
    passed_on = f"{first.name}: {first.name} sent to the program"
    wait_for_lines(run.log, 0, f" {passed_on}\n")  # the program ignored it and works on
    assert run.tracer.poll() is None
    run.tracer.send_signal(signal.SIGTERM)
    status, out, err, records = run.finish()
    assert status == 137, err
    assert _summary_status(err) == "exit status 137"
    assert out == f"ready {pid}\n"
    assert _marks(records) == [passed_on, "SIGTERM: SIGKILL sent to the program"]
    assert _wait_gone(pid) in (None, "Z", "X")


def test_ctrl_c_goes_to_a_spawned_program_and_kmmio_reports_its_death(build, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) is the program's:
    kmmio ignores it, passes nothing on itself (no MARK), and exits 130, the status of the
    program SIGINT killed."""
    # it handles SIGTERM and SIGHUP, not SIGINT
    run = Spawned(build("stoppable"), tmp_path, "handle", start_new_session=True)
    pid = run.at_work()
    os.killpg(run.tracer.pid, signal.SIGINT)
    status, out, err, records = run.finish()
    assert status == 130, err
    assert _summary_status(err) == "exit status 130"
    assert out == f"ready {pid}\n"
    assert _marks(records) == []
    assert any(isinstance(r, Access) for r in records)


def test_sigkill_of_kmmio_takes_the_spawned_program_with_it(build, tmp_path: Path) -> None:
    """kmmio killed with SIGKILL cannot restore anything; PTRACE_O_EXITKILL kills the spawned
    program with it (here one that ignores SIGTERM and SIGHUP, so only SIGKILL ends it),
    which never runs on with armed pages.  The log keeps what was flushed, whole lines
    only."""
    run = Spawned(build("stoppable"), tmp_path, "ignore")
    pid = run.at_work()
    run.tracer.kill()
    run.tracer.communicate(timeout=60)
    assert run.tracer.returncode == -signal.SIGKILL
    assert _wait_gone(pid) in (None, "Z", "X"), f"program {pid} runs on after kmmio was killed"
    # every line whole and well-formed (the PCIDEV header aside)
    records = [r for r in _records(run.log) if type(r).__name__ != "PciDev"]
    assert len(records) > BEFORE
    assert [type(r).__name__ for r in records[:3]] == ["Version", "Map", "MapInfo"]
    assert all(isinstance(r, Access) and r.pid == pid for r in records[3:])
    assert _marks(records) == []


class Attached(ReadyProgram):
    """stoppable.c started by the test, dying of SIGTERM/SIGHUP/SIGINT should one reach it,
    running until its stop file appears."""

    def __init__(self, exe: Path, tmp: Path) -> None:
        self.stopfile = tmp / "stop"
        dev = tmp / "att-regs.bin"
        super().__init__([str(exe), str(dev), "die", str(self.stopfile)], dev)

    def finish(self) -> str:
        self.stopfile.touch()
        return super().finish()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP", "SIGINT", "duration"])
def test_an_attached_program_is_let_go_and_runs_on(build, tmp_path: Path, stop: str) -> None:
    """SIGTERM, SIGHUP, SIGINT (Ctrl-C) and ``--duration`` end the trace of an attached
    program without passing anything on to it (it would die of any of them): every page
    gets its protection back (its maps as before), kmmio detaches (TracerPid 0) and exits
    0, the log ends with the MARK saying why, and the program, still running, finishes its
    work normally ("ok": every read-back matched) when told to."""
    prog = Attached(build("stoppable"), tmp_path)
    before = prog.maps()
    log = tmp_path / "att.log"
    extra = ["--duration", SECONDS] if stop == "duration" else []
    tracer = kmmio_async(["trace", "-o", str(log), *extra, "-m", prog.dev.name, "-p", str(prog.pid)])
    if stop != "duration":
        wait_for_lines(log, BEFORE)
        tracer.send_signal(signal.Signals[stop])
    out, err = tracer.communicate(timeout=120)
    assert (tracer.returncode, out) == (0, ""), err
    assert _summary_status(err) == "exit status 0"
    assert prog.maps() == before
    assert prog.tracer_pid() == 0
    assert prog.proc.poll() is None  # it runs on: nothing killed it, and it never ends by itself
    records = _records(log)
    what = DURATION if stop == "duration" else stop
    last = records[-1]
    assert isinstance(last, Mark) and last.text == f"detached ({what}): the program runs on untraced"
    assert _marks(records) == [last.text]
    maps = [r for r in records if isinstance(r, Map)]
    assert len(maps) == 1 and maps[0].pid == prog.pid
    assert any(isinstance(r, Access) and r.pid == prog.pid for r in records)
    assert prog.finish() == "ok\n"
    assert prog.proc.returncode == 0
