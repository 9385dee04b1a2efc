"""``kmmio trace -o FILE``'s status line: redrawn on a terminal (a pseudo-terminal here) while
the program runs, erased before the summary; absent when standard error is not a terminal
and with ``-q``.  And the progress line's own behaviour, without a process."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kmmio.tools.progress import FileProgress, Progress, human
from kmmio.trace import Access, read_records

PROGRAM = Path(__file__).parent / "programs" / "poke_for.py"
STATUS = re.compile(r"\r\x1b\[Kkmmio: (\d+\.\d) s, ([\d,]+) accesses, ([\d.]+[kMG]?)/s, 0 lost, 1 mappings")
CLEAR = "\r\x1b[K"


@pytest.fixture
def shm(tmp_path: Path) -> Path:
    path = Path("/dev/shm") / f"kmmio-progress-{os.getpid()}-{tmp_path.name}"
    path.write_bytes(bytes(4096))
    yield path
    path.unlink()


def _trace(shm: Path, log: Path, quiet: bool, on_pty: bool) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "kmmio", "trace", "-o", str(log), "-m", shm.name]
    cmd += ["-q"] if quiet else []
    cmd += ["--", sys.executable, str(PROGRAM), str(shm), "1.6"]
    if not on_pty:
        run = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        return run.returncode, run.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode()


def _accesses(log: Path) -> int:
    with open(log) as f:
        return sum(isinstance(r, Access) for r in read_records(f))


@pytest.mark.ptrace
def test_the_status_line_is_redrawn_on_a_terminal_and_erased_before_the_summary(
    shm: Path, tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    status, err = _trace(shm, log, quiet=False, on_pty=True)
    assert status == 0, err
    total = _accesses(log)
    assert total > 0
    lines = STATUS.findall(err)
    # 1.6 s at four drawings a second: the line was redrawn while the program ran.
    assert len(lines) >= 3, repr(err)
    counts = [int(n.replace(",", "")) for _, n, _ in lines]
    assert counts == sorted(counts) and counts[-1] <= total
    assert [float(t) for t, _, _ in lines] == sorted(float(t) for t, _, _ in lines)
    # Erased, then the summary alone on its line (the terminal turns \n into \r\n).
    *_, last = STATUS.finditer(err)
    tail = err[last.end() :]
    assert re.fullmatch(
        rf"[^\r\n\x1b]*{re.escape(CLEAR)}kmmio: {total} accesses traced \([^\r\n\x1b]*exit status 0\r\n", tail
    ), repr(tail)


@pytest.mark.ptrace
def test_no_status_line_with_q_or_without_a_terminal(shm: Path, tmp_path: Path) -> None:
    status, err = _trace(shm, tmp_path / "q.log", quiet=True, on_pty=True)
    assert (status, err) == (0, "")
    status, err = _trace(shm, tmp_path / "p.log", quiet=False, on_pty=False)
    assert status == 0
    assert "\r" not in err and "\x1b" not in err
    assert err.startswith("kmmio: ") and err.count("\n") == 1, err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_terminals_and_erases_once() -> None:
    pipe = io.StringIO()
    p = Progress(lambda t: "x", pipe)
    p.draw()
    p.close()
    assert pipe.getvalue() == ""
    tty = _Tty()
    q = Progress(lambda t: "hello", tty)
    q.draw()
    q.draw()
    q.close()
    q.close()
    assert tty.getvalue() == CLEAR + "hello" + CLEAR + "hello" + CLEAR
    quiet = _Tty()
    Progress(lambda t: "x", quiet, quiet=True).draw()
    assert quiet.getvalue() == ""


def test_file_progress_text() -> None:
    tty = _Tty()
    p = FileProgress("big.log", 1000, tty)
    p.advance(410, 4_100_000)
    p.draw(p.start + 2.0)
    assert tty.getvalue() == CLEAR + "big.log: 41% 4.1M lines, 2.05M lines/s"
    assert [human(x) for x in (0, 999, 1000, 12_345, 2e9, 3e12)] == [
        "0",
        "999",
        "1k",
        "12.3k",
        "2G",
        "3e+03G",
    ]
