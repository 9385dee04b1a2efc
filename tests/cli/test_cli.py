"""The command line without tracing: ``--version``, bare ``kmmio``, refused patterns, ``check``.

``main`` is called in-process: it returns the status and never exits, also for ``-h``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import kmmio
from kmmio.cli import build_parser, main

ROOT = Path(__file__).parents[2]
KERNEL_SAMPLE = ROOT / "tests" / "trace" / "data" / "kernel-trace-pipe.txt"


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmmio: ") and "Traceback" not in err, err
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"kmmio {kmmio.__version__}\n", "")
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert kmmio.__version__ == tomllib.load(f)["project"]["version"]


def test_help_returns_0_without_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-h"]) == 0
    assert capsys.readouterr().out == build_parser().format_help()
    assert main(["trace", "--help"]) == 0
    assert "-m PATTERN" in capsys.readouterr().out


def test_no_arguments_print_the_usage_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == build_parser().format_help()
    assert err.startswith("usage: kmmio ") and "trace" in err and "check" in err


def test_bare_kmmio_as_a_user_runs_it() -> None:
    run = subprocess.run([sys.executable, "-m", "kmmio"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("usage: kmmio ") and "Traceback" not in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "-m", "", "--", "true"],
        ["trace", "--map=", "--", "true"],
        ["trace", "-m", "regs", "-m", "", "-p", "1"],
    ],
)
def test_an_empty_pattern_is_refused(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "PATTERN must not be empty" in _one_line(err)


def _check(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> tuple[int, str, str]:
    log = tmp_path / "check.log"
    log.write_text(text)
    status = main(["check", str(log)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# tracer: mmiotrace\n#\n#           TASK-PID     CPU#  TIMESTAMP  FUNCTION\n"],
    ids=["empty", "blank", "ftrace-header-only"],
)
def test_check_refuses_a_log_without_records(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    status, out, err = _check(capsys, tmp_path, text)
    assert (status, out) == (2, "")
    assert _one_line(err) == f"kmmio: {tmp_path / 'check.log'}: no records"


def test_check_counts_reads_writes_threads_and_lost(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (
        "VERSION 20070824\n"
        "MAP 1.000000 1 0x0 0x7f0000000000 0x1000 0x401000 100\n"
        "W 4 1.000001 1 0x4 0xdeadbeef 0x401010 100\n"
        "R 4 1.000002 1 0x4 0xdeadbeef 0x401020 101\n"
        "R 1 1.000003 1 0x8 0x1 0x401030 102\n"
        "MARK 1.000004 a marker\n"
        "UNMAP 1.000005 1 0x401040 100\n"
        "MARK 1.000006 Lost 3 events.\n"
        "MARK 1.000007 Lost 2 events.\n"
    )
    status, out, err = _check(capsys, tmp_path, text)
    assert (status, err) == (0, "")
    assert out == "Access=3 Map=1 Mark=3 Unmap=1 Version=1 reads=2 writes=1 threads=3 lost=5\n"


def test_check_takes_the_kernel_trace_form_without_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (
        "# tracer: mmiotrace\n#\n"
        "R 4 1037.681772 1 0x90000300 0x37002 0x0 0\nW 4 1037.681777 1 0x9000009c 0x17 0x0 0\n"
    )
    status, out, err = _check(capsys, tmp_path, text)
    assert (status, err) == (0, "")
    assert out == "Access=2 reads=1 writes=1 threads=1 lost=0\n"


def test_check_the_kernel_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(KERNEL_SAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == "Access=30 Map=1 PciDev=12 Version=1 reads=11 writes=19 threads=1 lost=0\n"


def test_check_as_a_user_runs_it(tmp_path: Path) -> None:
    """``python -m kmmio check``: the kernel sample's counts on stdout; a bad line, exit 2."""
    check = [sys.executable, "-m", "kmmio", "check"]
    run = subprocess.run([*check, str(KERNEL_SAMPLE)], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == "Access=30 Map=1 PciDev=12 Version=1 reads=11 writes=19 threads=1 lost=0\n"
    bad = tmp_path / "bad.log"
    bad.write_text("VERSION 20070824\nR 4 x\n")
    run = subprocess.run([*check, str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and _one_line(run.stderr).startswith(f"kmmio: {bad}: line 2: ")


def test_check_reads_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["check", "-"]) == 2
    assert _one_line(capsys.readouterr().err) == "kmmio: standard input: no records"
    monkeypatch.setattr(sys, "stdin", io.StringIO("VERSION 20070824\nR 4 x\n"))
    assert main(["check", "-"]) == 2
    assert _one_line(capsys.readouterr().err).startswith("kmmio: standard input: line 2: ")
    monkeypatch.setattr(sys, "stdin", io.StringIO("W 8 0.000001 1 0x0 0x1 0x0 7\n"))
    assert main(["check", "-"]) == 0
    assert capsys.readouterr().out == "Access=1 reads=0 writes=1 threads=1 lost=0\n"


def test_check_of_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "nope.log")]) == 2
    assert "cannot read" in _one_line(capsys.readouterr().err)


def test_a_refused_attach_leaves_no_header_behind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel refuses the attach once the log is open: the log stays empty, no VERSION."""
    from kmmio import cli_trace
    from kmmio.ptrace.tracer import Tracer

    def refuse(tracer: object, pid: int) -> None:
        raise kmmio.UsageError(f"cannot attach to process {pid}: not privileged")

    monkeypatch.setattr(cli_trace, "check_attachable", lambda pid: pid)
    monkeypatch.setattr(Tracer, "attach", refuse)
    log = tmp_path / "refused.log"
    assert main(["trace", "-o", str(log), "-m", "regs", "-p", "4242"]) == 2
    assert _one_line(capsys.readouterr().err) == "kmmio: cannot attach to process 4242: not privileged"
    assert log.read_text() == ""


def test_the_license_is_an_spdx_string_and_setuptools_knows_it() -> None:
    """setuptools warns on every install about a ``license`` table; a string needs >= 77."""
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert project["project"]["license"] == "GPL-2.0-only"
    assert "setuptools>=77" in project["build-system"]["requires"]
