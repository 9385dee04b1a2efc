"""``kmmio plot``: PNG and SVG of exactly the size asked, the raster's counts and the
plotted values equal to those counted from the records, bounded memory (columns that
double, rows and value changes capped with a note), and bad input in one line."""

from __future__ import annotations

import io
import struct
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_export_common import (
    TDEV_LOG,
    TDEV_SVD,
    accesses,
    generated_records,
    log_records,
    reference_changes,
    reference_states,
    trace_driver,
    write_log,
)

from kmmio.cli import main
from kmmio.maps import load_map
from kmmio.tools import scan as scan_mod
from kmmio.tools.export.names import Namer
from kmmio.tools.export.plot import Plot
from kmmio.trace import Access, Kind, Record


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def colors(path: Path) -> tuple[bool, bool]:
    """Whether the image has the raster's write red and read blue."""
    from matplotlib.image import imread

    img = imread(str(path))[:, :, :3]
    red = (img[:, :, 0] > 0.6) & (img[:, :, 1] < 0.4) & (img[:, :, 2] < 0.4)
    blue = (img[:, :, 2] > 0.6) & (img[:, :, 0] < 0.4)
    return bool(red.any()), bool(blue.any())


def plot(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["plot", *args]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    return err


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["plot", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("kmmio: "), err
    return err.strip()


def test_png_is_the_size_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.png"
    err = plot(capsys, str(TDEV_LOG), "-o", str(out), "--size", "6x4", "--dpi", "50", "--map", TDEV_SVD,
               "--registers", "CTRL,0xf7c0000c")  # fmt: skip
    assert err == f"kmmio: {out}: 14 accesses\n"
    assert png_size(out) == (300, 200)
    assert colors(out) == (True, True)


def test_default_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d.png"
    plot(capsys, str(TDEV_LOG), "-o", str(out), "-q")
    # 12 inches wide; 2.5 + 0.22 per row (9 addresses) high; 100 dpi
    assert png_size(out) == (1200, 448)
    plot(capsys, str(TDEV_LOG), "-o", str(out), "-q", "--registers", "0xf7c00000", "--dpi", "80")
    assert png_size(out) == (960, round((2.5 + 0.22 * 9 + 2.2) * 80))


def test_svg_is_xml_of_the_size_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.svg"
    plot(capsys, str(TDEV_LOG), "-o", str(out), "--size", "6x4", "-q", "--registers", "0xf7c00004")
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("432pt", "288pt", "0 0 432 288")
    assert len(list(root.iter("{http://www.w3.org/2000/svg}g"))) > 10  # axes, ticks, the raster...


def test_only_reads_have_no_red(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(
        tmp_path / "r.log", [Access(Kind.READ, 4, 10 + i, 1, 0x10 + 4 * (i % 3), i, 0, 1) for i in range(50)]
    )
    out = tmp_path / "r.png"
    plot(capsys, str(log), "-o", str(out), "-q", "--size", "5x3")
    assert png_size(out) == (500, 300) and colors(out) == (False, True)


@pytest.mark.parametrize("with_map", [False, True], ids=["addresses", "registers"])
def test_raster_counts_every_access_in_its_rows(monkeypatch: pytest.MonkeyPatch, with_map: bool) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 300)
    recs = generated_records(3000, seed=2)
    data = "".join(line + "\n" for line in _lines(recs)).encode()
    regmap = load_map(TDEV_SVD) if with_map else None
    p = Plot(Namer(regmap), [], columns=16)
    p.read(io.BytesIO(data))
    ras = p.raster
    acc = accesses(recs)
    assert ras.accesses == len(acc) and ras.t0 == acc[0].ts
    span = max(a.ts for a in acc) - ras.t0
    step = 1
    while span // step >= 16:
        step *= 2
    assert ras.step == step
    expected = np.zeros_like(ras.counts)
    for a, touched in reference_states(recs, regmap):
        for name, _value, _bits in touched:
            row = next(r for v, r in ras.rows.items() if v.name == name)
            expected[1 if a.kind is Kind.WRITE else 0, row, (a.ts - ras.t0) // step] += 1
    assert (ras.counts == expected).all()
    assert sorted(v.name for v in ras.rows) == sorted(
        {n for _, t in reference_states(recs, regmap) for n, _, _ in t}
    )


def _lines(recs: list[Record]) -> list[str]:
    from kmmio.trace.writer import format_record

    return [format_record(r) for r in recs]


def test_values_of_the_registers_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 128)
    regmap = load_map(TDEV_SVD)
    recs = generated_records(2000, seed=9)
    data = "".join(line + "\n" for line in _lines(recs)).encode()
    namer = Namer(regmap)
    wanted = [namer.find("CTRL"), namer.find("QUEUE[1]"), namer.find("0xf7c0000c")]
    p = Plot(namer, wanted)
    p.read(io.BytesIO(data))
    changes, _ = reference_changes(recs, regmap)
    for var in wanted:
        s = p.series[var]
        assert list(zip(s.times, s.values, strict=True)) == [
            (c.ts, c.value) for c in changes if c.name == var.name
        ]
        assert not s.thinned
    fig = p.figure((8, 6), 50, "gen")
    assert [ax.get_title(loc="left") for ax in fig.axes[1:]] == ["tdev.CTRL", "tdev.QUEUE[1]", "0xf7c0000c"]


def test_value_changes_are_thinned_past_the_cap() -> None:
    recs: list[Record] = [Access(Kind.WRITE, 4, 100 + i, 1, 0x10, i, 0, 1) for i in range(1000)]
    data = "".join(line + "\n" for line in _lines(recs)).encode()
    namer = Namer(None)
    p = Plot(namer, [namer.find("0x10")], max_changes=100)
    p.read(io.BytesIO(data))
    s = p.series[namer.find("0x10")]
    assert s.changes == 1000 and s.stride == 16
    assert s.values == list(range(0, 1000, 16)) and s.times == [100 + v for v in s.values]
    title = p.figure((6, 4), 50, "t").axes[1].get_title(loc="left")
    assert title == "0x10 (thinned: 63 of 1,000 changes shown)"


def test_rows_past_the_cap_share_one(tmp_path: Path) -> None:
    recs: list[Record] = [Access(Kind.WRITE, 4, 100 + i, 1, 0x1000 + 4 * i, 1, 0, 1) for i in range(10)]
    data = "".join(line + "\n" for line in _lines(recs)).encode()
    p = Plot(Namer(None), [], max_rows=4)
    p.read(io.BytesIO(data))
    assert p.raster.counts[1, 4].sum() == 6 and p.raster.counts[1, :4].sum() == 4
    ax = p.figure((6, 4), 50, "t").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "0x1000",
        "0x1004",
        "0x1008",
        "0x100c",
        "(6 more)",
    ]
    assert "only 4 rows are drawn; the others share the last one" in [t.get_text() for t in ax.texts]


def test_no_access_is_a_figure_that_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "e.log"
    log.write_text("VERSION 20070824\n")
    out = tmp_path / "e.png"
    plot(capsys, str(log), "-o", str(out), "-q", "--size", "4x3", "--dpi", "40")
    assert png_size(out) == (160, 120)


def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = str(TDEV_LOG)
    assert one_line_error(capsys, log, "-o", str(tmp_path / "x.jpg")) == (
        f"kmmio: plot writes .png or .svg files (from -o's extension), not '{tmp_path / 'x.jpg'}'"
    )
    assert "--size wants WIDTHxHEIGHT" in one_line_error(capsys, log, "-o", "x.png", "--size", "12")
    assert "--dpi wants 10 to 1000" in one_line_error(capsys, log, "-o", "x.png", "--dpi", "0")
    assert "needs --map" in one_line_error(capsys, log, "-o", str(tmp_path / "x.png"), "--registers", "CTRL")
    assert one_line_error(
        capsys, log, "-o", str(tmp_path / "x.png"), "--map", TDEV_SVD, "--registers", "NOPE"
    ) == ("kmmio: no register 'NOPE' in the map")
    assert one_line_error(capsys, str(tmp_path / "none.log"), "-o", str(tmp_path / "x.png")) == (
        f"kmmio: cannot read {tmp_path / 'none.log'}: No such file or directory"
    )
    bad = tmp_path / "bad.log"
    bad.write_text("VERSION 20070824\nW 4 oops\n")
    assert one_line_error(capsys, str(bad), "-o", str(tmp_path / "x.png")) == (
        f"kmmio: {bad}: line 2: W needs 7 fields, got 2"
    )
    assert not (tmp_path / "x.png").exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temporary file left behind
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert one_line_error(capsys, log, "-o", str(tmp_path / "x.png")) == (
        "kmmio: plot needs matplotlib, which is not installed: pip install 'kmmio[plot]'"
    )


def test_numpy_missing_names_the_plot_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """numpy comes with either extra (export, plot): plot names its own."""
    import matplotlib.figure  # noqa: F401  (loaded: only numpy is missing)

    monkeypatch.setitem(sys.modules, "numpy", None)
    assert one_line_error(capsys, str(TDEV_LOG), "-o", str(tmp_path / "x.png")) == (
        "kmmio: plot needs numpy, which is not installed: pip install 'kmmio[plot]'"
    )


@pytest.mark.ptrace
def test_a_real_trace_of_a_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = trace_driver(tmp_path)
    recs = log_records(log)
    base = next(r.phys for r in recs if isinstance(r, Access))
    out = tmp_path / "driver.png"
    err = plot(capsys, str(log), "-o", str(out), "--size", "8x6", "--dpi", "60", "--registers",
               f"{base:#x},{base + 0x80:#x}")  # fmt: skip
    assert err == f"kmmio: {out}: {len(accesses(recs))} accesses\n"
    assert png_size(out) == (480, 360) and colors(out) == (True, True)
    namer = Namer(None)
    p = Plot(namer, [namer.find(f"{base:#x}")])
    with open(log, "rb") as f:
        p.read(f)
    kinds = Counter(a.kind for a in accesses(recs))
    assert (
        int(p.raster.counts[1].sum()) == kinds[Kind.WRITE]
        and int(p.raster.counts[0].sum()) == kinds[Kind.READ]
    )
    changes, _ = reference_changes(recs, None)
    assert p.series[namer.find(f"{base:#x}")].values == [c.value for c in changes if c.name == f"{base:#x}"]
