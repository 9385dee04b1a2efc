"""``kmmio decode``: tdev.log decoded with tdev.rdl, tdev.xml and tdev.svd alike.

``tdev.decoded.txt`` is the expected text output; ``main`` is called in-process.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmmio.cli import main
from kmmio.maps import Decoder, RegisterMap, decode_log, load_map

DATA = Path(__file__).parent / "data"
LOG = DATA / "tdev.log"
BASE = "0xf7c00000"
#: The same device three ways: SystemRDL and IP-XACT start at 0, the SVD at 0xf7c00000.
MAPS = [f"{DATA / 'tdev.rdl'}@{BASE}", f"{DATA / 'tdev.xml'}@{BASE}", str(DATA / "tdev.svd")]


def _decode(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["decode", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["decode", *args]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("kmmio: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("spec", MAPS, ids=["rdl", "ipxact", "svd"])
def test_text_is_the_same_whichever_map(capsys: pytest.CaptureFixture[str], spec: str) -> None:
    assert _decode(capsys, "--map", spec, str(LOG)) == (DATA / "tdev.decoded.txt").read_text()


def test_json_is_the_same_whichever_map(capsys: pytest.CaptureFixture[str]) -> None:
    outs = [_decode(capsys, "--json", "--map", spec, str(LOG)) for spec in MAPS]
    assert outs[0] == outs[1] == outs[2]
    objs = [json.loads(line) for line in outs[0].splitlines()]
    assert len(objs) == sum(1 for line in LOG.read_text().splitlines() if line[:2] in ("R ", "W "))
    first = objs[0]
    assert first == {
        "kind": "W",
        "width": 4,
        "ts": 12.000104,
        "map": 1,
        "phys": 0xF7C00000,
        "value": 0x10000009,
        "register": "tdev.CTRL",
        "registers": [{"path": "tdev.CTRL", "address": 0xF7C00000, "lsb": 0, "msb": 31}],
        "fields": {"EN": 1, "RST": 0, "MODE": 2, "IRQ_MASK": 0, "DIV": 0x1000},
        "enums": {"MODE": "FAST"},
        "partial": [],
        "unmapped": [],
        "pc": 0x4011A0,
        "tid": 4242,
    }
    by_phys_width = {(o["phys"] - 0xF7C00000, o["width"]): o for o in objs}
    narrow = by_phys_width[(0x1, 2)]
    assert narrow["fields"] == {"IRQ_MASK": 0xFF} and narrow["partial"] == ["DIV"]
    assert narrow["registers"] == [{"path": "tdev.CTRL", "address": 0xF7C00000, "lsb": 8, "msb": 23}]
    unnamed = by_phys_width[(0x0, 1)]
    assert unnamed["fields"]["MODE"] == 3 and unnamed["enums"] == {}
    straddle = by_phys_width[(0x6, 4)]
    assert straddle["register"] == "tdev.STATUS"
    assert [r["path"] for r in straddle["registers"]] == ["tdev.STATUS", "tdev.LEN16"]
    assert straddle["fields"] == {"STATUS.VERSION": 2, "LEN16.LEN": 0x123, "LEN16.POL": 1}
    gap = by_phys_width[(0xC, 4)]
    assert gap["register"] is None and gap["registers"] == [] and gap["fields"] == {}
    assert gap["unmapped"] == [{"address": 0xF7C0000C, "length": 4}]
    half_gap = by_phys_width[(0x8, 4)]
    assert half_gap["register"] == "tdev.LEN16" and half_gap["unmapped"] == [
        {"address": 0xF7C0000A, "length": 2}
    ]


def test_text_examples(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _decode(capsys, "--map", MAPS[2], str(LOG)).splitlines()
    ctrl = "tdev.CTRL 0x10000009 EN=1 RST=0 MODE=FAST(2) IRQ_MASK=0x00 DIV=0x1000"
    assert f"W 4 12.000104 {ctrl} pc 0x4011a0 tid 4242" in lines
    assert "R 2 12.000289 tdev.CTRL[23:8] 0x40ff IRQ_MASK=0xff DIV=partial pc 0x4011c8 tid 4243" in lines
    assert "W 4 12.000474 ?@0xf7c0000c 0x5 pc 0x4011f0 tid 4242" in lines
    assert "R 4 12.000437 tdev.LEN16,?@0xf7c0000a 0x8010 LEN=0x010 POL=1 pc 0x4011e8 tid 4242" in lines
    # other lines pass through unchanged
    log = LOG.read_text().splitlines()
    assert [x for x in lines if x.split()[0] in ("VERSION", "MAP", "MARK", "UNMAP")] == [
        x for x in log if x.split()[0] in ("VERSION", "MAP", "MARK", "UNMAP")
    ]


def test_without_base_a_map_at_0_meets_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        x
        for x in _decode(capsys, "--map", str(DATA / "tdev.rdl"), str(LOG)).splitlines()
        if x[:2] in ("R ", "W ")
    ]
    assert lines and all(x.split()[3].startswith("?@0xf7c") for x in lines)


def test_several_maps(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "two.log"
    log.write_text("W 4 1.000000 1 0xf7c00000 0x1 0x0 1\nW 4 1.000001 2 0x10000004 0x1 0x0 1\n")
    out = _decode(capsys, "--map", MAPS[2], "--map", f"{DATA / 'tdev.rdl'}@0x10000000", str(log))
    assert [x.split()[3] for x in out.splitlines()] == ["tdev.CTRL", "tdev.STATUS"]


def test_log_from_standard_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(LOG.read_text()))
    assert _decode(capsys, "--map", MAPS[2], "-") == (DATA / "tdev.decoded.txt").read_text()


def test_kernel_lines_pass_through(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = (
        "# tracer: mmiotrace\n"
        "#\n"
        "VERSION 20070824\n"
        "PCIDEV 0100 80861539 16 f7c00000 0 e001 92220000 0 0 0 20000 0 20 4000 0 0 0 igb\n"
        "\n"
        "R 4 1037.681772 1 0xf7c00004 0x37002 0x0 0\n"
        "UNKNOWN 1037.681800 1 0xf7c00004 8b,04,24 0x0 0\n"
        "MARK 1037.681900 syscall write reads map 1 0xf7c00000+0x4 tid 7"
    )
    log = tmp_path / "k.log"
    log.write_text(text)
    out = _decode(capsys, "--map", MAPS[2], str(log)).splitlines()
    src = text.splitlines()
    assert out[:5] == src[:5] and out[6:] == src[6:]
    assert out[5] == "R 4 1037.681772 tdev.STATUS 0x37002 READY=0 ERR=1 COUNT=0x70 VERSION=0x00 pc 0x0 tid 0"
    assert [
        json.loads(x)["register"] for x in _decode(capsys, "--json", "--map", MAPS[2], str(log)).splitlines()
    ] == ["tdev.STATUS"]


def test_malformed_map_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.rdl"
    bad.write_text("addrmap x {\n  reg { field {} A[0:0]; } R @ 0x0;\n  bogus;\n};\n")
    line = _one_line_error(capsys, "--map", str(bad), str(LOG))
    assert line.startswith(f"kmmio: {bad}:3: ")
    bad_svd = tmp_path / "bad.svd"
    bad_svd.write_text("<device><peripherals>")
    assert _one_line_error(capsys, "--map", str(bad_svd), str(LOG)).startswith(
        f"kmmio: {bad_svd}:1: not well-formed"
    )


@pytest.mark.parametrize(("index", "module"), [(0, "systemrdl"), (1, "peakrdl_ipxact"), (2, "cmsis_svd")])
def test_missing_extra_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, index: int, module: str
) -> None:
    for name in [n for n in sys.modules if n.startswith(module + ".")] + [module]:
        monkeypatch.setitem(sys.modules, name, None)
    line = _one_line_error(capsys, "--map", MAPS[index], str(LOG))
    assert "pip install 'kmmio[maps]'" in line and "not installed" in line


def test_missing_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _one_line_error(capsys, "--map", MAPS[2], str(tmp_path / "no.log")) == (
        f"kmmio: cannot read {tmp_path / 'no.log'}: No such file or directory"
    )
    assert _one_line_error(capsys, "--map", str(tmp_path / "no.svd"), str(LOG)) == (
        f"kmmio: {tmp_path / 'no.svd'}: cannot read it: No such file or directory"
    )


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--map" in _one_line_error(capsys, str(LOG))


def test_malformed_log_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text("VERSION 20070824\nW 4 oops\n")
    assert main(["decode", "--map", MAPS[2], str(log)]) == 2
    out, err = capsys.readouterr()
    assert out == "VERSION 20070824\n"
    assert err.splitlines() == [f"kmmio: {log}: line 2: W needs 7 fields, got 2"]


def test_decoding_streams_line_by_line() -> None:
    """Each line's result is written before the next line is read."""
    regmap = load_map(MAPS[2])
    written: list[str] = []

    def lines() -> Iterator[str]:
        for i, line in enumerate(LOG.read_text().splitlines(keepends=True)):
            assert len(written) == i
            yield line

    count = decode_log(lines(), regmap, written.append)
    assert count == 14 and "".join(written) == (DATA / "tdev.decoded.txt").read_text()


def test_decoder_caches_stay_bounded() -> None:
    from kmmio.trace import Access, Kind

    decoder = Decoder(load_map(MAPS[2]), cache_size=4)
    for i in range(50):
        acc = Access(Kind.READ, 4, 0, 1, 0xF7C00000 + 4 * (i % 8), i, 0, 0)
        assert decoder.text(acc) == decoder.text(acc)
    assert len(decoder._hits) <= 4 and len(decoder._texts) <= 4
    assert isinstance(decoder.regmap, RegisterMap)


def test_the_readme_excerpt_is_what_decode_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """Every line of the README's ``kmmio decode`` example is a line of the real output."""
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    command = r"\$ kmmio decode --map tdev\.rdl@0xf7c00000 tdev\.log\n"
    block = re.search(r"```console\n" + command + r"(.*?)```", readme, re.S)
    assert block is not None
    shown = block.group(1).splitlines()
    out = _decode(capsys, "--map", MAPS[0], str(LOG)).splitlines()
    assert len(shown) >= 5 and all(line in out for line in shown), [x for x in shown if x not in out]
    assert [out.index(line) for line in shown] == sorted(out.index(line) for line in shown)
