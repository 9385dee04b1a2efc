"""``kmmio export`` on the command line: the format from the option or the extension,
the summary line, the progress line on a terminal, and bad input in one line (exit 2)
leaving no output behind."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace
from pty_util import read_all
from test_export_common import TDEV_LOG, TDEV_SVD

from kmmio.cli import main
from kmmio.trace import Access, Kind
from kmmio.trace.writer import format_record


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["export", *args]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    return err


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["export", *args]) == 2
    out, err = capsys.readouterr()
    assert (
        out == "" and len(err.splitlines()) == 1 and err.startswith("kmmio: ") and "Traceback" not in err
    ), err
    return err.strip()


def test_format_from_the_extension_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = str(TDEV_LOG)
    pf, vcd, parquet = tmp_path / "t.pftrace", tmp_path / "t.vcd", tmp_path / "t.parquet"
    assert run(capsys, log, "-o", str(pf)) == (
        f"kmmio: {pf}: 17 instants in 2 threads, 7 values in 7 counters (perfetto)\n"
    )
    trace = Trace()
    trace.ParseFromString(pf.read_bytes())
    assert len(trace.packet) == 1 + 2 + 2 + 7 + 24  # start, log tracks, threads, counters, events
    assert (
        run(capsys, log, "-o", str(vcd), "--map", TDEV_SVD)
        == f"kmmio: {vcd}: 7 variables, 14 value changes (vcd)\n"
    )
    assert vcd.read_text().startswith("$timescale 1 us $end\n")
    assert run(capsys, log, "-o", str(parquet)) == f"kmmio: {parquet}: 18 rows (parquet)\n"
    assert pq.read_table(parquet).num_rows == 18
    other = tmp_path / "t.bin"
    assert run(capsys, log, "-f", "parquet", "-o", str(other), "-q") == ""
    assert pq.read_table(other).num_rows == 18


def test_bad_options_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = str(TDEV_LOG)
    assert one_line_error(capsys, log, "-o", str(tmp_path / "t.txt")) == (
        f"kmmio: --format is needed (perfetto, vcd, parquet): '{tmp_path / 't.txt'}' does not say which"
    )
    assert "invalid choice: 'csv'" in one_line_error(capsys, log, "--format", "csv", "-o", "x")
    assert "-o/--output" in one_line_error(capsys, log, "--format", "vcd")
    assert one_line_error(capsys, log, "-o", "-", "--format", "parquet") == (
        "kmmio: -o needs a file name (an export is not written to standard output)"
    )
    assert one_line_error(capsys, log, "-o", str(tmp_path), "--format", "parquet") == (
        f"kmmio: cannot write {tmp_path}: Is a directory"
    )
    assert one_line_error(capsys, log, "-o", str(tmp_path / "no" / "t.vcd")) == (
        f"kmmio: cannot write {tmp_path / 'no' / 't.vcd'}: No such file or directory"
    )
    for fmt in ("vcd", "parquet", "perfetto"):
        assert one_line_error(capsys, str(tmp_path / "none.log"), "-f", fmt, "-o", str(tmp_path / "o")) == (
            f"kmmio: cannot read {tmp_path / 'none.log'}: No such file or directory"
        )
        assert one_line_error(
            capsys, log, "-f", fmt, "-o", str(tmp_path / "o"), "--map", str(tmp_path / "m.svd")
        ) == (f"kmmio: {tmp_path / 'm.svd'}: cannot read it: No such file or directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["vcd", "parquet", "perfetto"])
def test_a_malformed_log_leaves_the_old_output_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    log = tmp_path / "bad.log"
    good = "".join(format_record(Access(Kind.WRITE, 4, i, 1, 0x10, i, 0, 1)) + "\n" for i in range(100))
    log.write_text("VERSION 20070824\n" + good + "W 4 oops\n")
    out = tmp_path / "out"
    out.write_text("before")
    assert one_line_error(capsys, str(log), "-f", fmt, "-o", str(out)) == (
        f"kmmio: {log}: line 102: W needs 7 fields, got 2"
    )
    assert out.read_text() == "before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.log", "out"]  # no temporary file left


@pytest.mark.parametrize(("fmt", "module", "package"), [("parquet", "pyarrow", "pyarrow"),
                                                         ("perfetto", "perfetto", "perfetto"),
                                                         ("vcd", "numpy", "numpy")])  # fmt: skip
def test_a_missing_library_is_one_line_naming_the_extra(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    module: str,
    package: str,
) -> None:
    for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    assert one_line_error(capsys, str(TDEV_LOG), "-f", fmt, "-o", str(tmp_path / "o")) == (
        f"kmmio: export --format {fmt} needs {package}, which is not installed: pip install 'kmmio[export]'"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["parquet", "vcd"])
@pytest.mark.parametrize("quiet", [False, True])
def test_progress_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quiet: bool, fmt: str
) -> None:
    """On a terminal's standard error (a pty) the progress line is drawn as the log is read
    (a clock that jumps a second per look) and erased before the summary; none with -q."""
    import pty
    from itertools import count
    from types import SimpleNamespace

    from kmmio.tools import progress as progress_mod

    log = tmp_path / "big.log"
    lines = (
        format_record(Access(Kind.WRITE, 4, i // 100, 1, 0x10 + 4 * (i % 8), i, 0, 1)) for i in range(200_000)
    )
    log.write_text("".join(line + "\n" for line in lines))  # a few chunks of the reader
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w")
    clock = count(0.0, 1.0)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(progress_mod, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    out = tmp_path / f"big.{fmt}"
    assert main(["export", str(log), "-o", str(out), *(["-q"] if quiet else [])]) == 0
    tty.close()
    shown = read_all(master)
    if quiet:
        assert shown == ""
        return
    *draws, summary = shown.split("\r\x1b[K")
    assert summary.startswith(f"kmmio: {out}: ")
    assert draws[0] == "" and all(d == "" or " lines, " in d for d in draws)
    names = {d.split(":")[0] for d in draws if d}
    assert names == ({f"{log} (pass 1 of 2)", f"{log} (pass 2 of 2)"} if fmt == "vcd" else {str(log)})
