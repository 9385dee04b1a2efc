"""SystemRDL, IP-XACT and CMSIS-SVD files into the one register model, and their errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kmmio.maps import (
    MapError,
    MissingExtraError,
    RegisterMap,
    load_ipxact,
    load_map,
    load_rdl,
    load_svd,
    map_kind,
    parse_map_spec,
)

DATA = Path(__file__).parent / "data"
RDL, IPXACT, SVD = DATA / "tdev.rdl", DATA / "tdev.xml", DATA / "tdev.svd"
BASE = 0xF7C00000


def test_the_three_descriptions_give_the_same_model() -> None:
    rdl = load_map(str(RDL), BASE)
    assert load_map(str(IPXACT), BASE) == rdl
    assert load_map(str(SVD)) == rdl
    assert [(r.path, r.address - BASE, r.size, r.access) for r in rdl.registers] == [
        ("tdev.CTRL", 0x0, 4, "rw"),
        ("tdev.STATUS", 0x4, 4, "r"),
        ("tdev.LEN16", 0x8, 2, "rw"),
        ("tdev.QUEUE[0]", 0x10, 4, "rw"),
        ("tdev.QUEUE[1]", 0x14, 4, "rw"),
    ]
    ctrl = rdl.registers[0]
    assert [(f.name, f.lsb, f.width) for f in ctrl.fields] == [
        ("EN", 0, 1),
        ("RST", 1, 1),
        ("MODE", 2, 2),
        ("IRQ_MASK", 8, 8),
        ("DIV", 16, 16),
    ]
    assert [(e.name, e.value) for e in ctrl.fields[2].enums] == [("SLOW", 0), ("MEDIUM", 1), ("FAST", 2)]
    assert {f.access for f in rdl.registers[1].fields} == {"r"}


def test_each_loader_by_name() -> None:
    assert load_rdl(str(RDL)).rebased(BASE) == load_ipxact(str(IPXACT)).rebased(BASE) == load_svd(str(SVD))


SVD_FEATURES = """<?xml version="1.0" encoding="utf-8"?>
<device schemaVersion="1.3">
  <name>X</name><version>1</version><description>x</description>
  <addressUnitBits>8</addressUnitBits><width>32</width>
  <peripherals>
    <peripheral>
      <name>UART0</name><baseAddress>0x40000000</baseAddress>
      <registers>
        <register>
          <name>DATA</name><addressOffset>0x0</addressOffset><size>8</size>
          <fields><field><name>B</name><bitRange>[7:0]</bitRange></field></fields>
        </register>
        <register derivedFrom="DATA">
          <name>DATA2</name><description>copy</description><addressOffset>0x1</addressOffset>
        </register>
        <register>
          <name>CFG</name><addressOffset>0x4</addressOffset><access>write-only</access>
          <fields>
            <field>
              <dim>4</dim><dimIncrement>2</dimIncrement><name>PIN%s</name><bitOffset>0</bitOffset>
              <bitWidth>2</bitWidth>
              <enumeratedValues><usage>read</usage>
                <enumeratedValue><name>OFF</name><value>0</value></enumeratedValue>
              </enumeratedValues>
              <enumeratedValues><usage>write</usage>
                <enumeratedValue><name>LOW</name><value>0</value></enumeratedValue>
                <enumeratedValue><name>HIGH</name><value>1</value></enumeratedValue>
                <enumeratedValue><name>OTHER</name><isDefault>true</isDefault></enumeratedValue>
              </enumeratedValues>
            </field>
          </fields>
        </register>
        <cluster>
          <name>CH[%s]</name><dim>2</dim><dimIncrement>0x10</dimIncrement><addressOffset>0x20</addressOffset>
          <register><name>CTL</name><addressOffset>0x0</addressOffset></register>
          <register><name>ST</name><addressOffset>0x4</addressOffset><size>16</size></register>
        </cluster>
        <cluster>
          <name>DMA</name><addressOffset>0x80</addressOffset>
          <register><name>SRC</name><addressOffset>0x0</addressOffset></register>
          <cluster>
            <name>DESC</name><addressOffset>0x8</addressOffset>
            <register><name>LEN</name><addressOffset>0x4</addressOffset></register>
          </cluster>
        </cluster>
      </registers>
    </peripheral>
    <peripheral derivedFrom="UART0">
      <name>UART1</name><baseAddress>0x40001000</baseAddress>
    </peripheral>
  </peripherals>
</device>
"""


def test_svd_derived_from_arrays_and_clusters(tmp_path: Path) -> None:
    path = tmp_path / "x.xml"  # SVD files are often named .xml: told apart by their root
    path.write_text(SVD_FEATURES)
    regmap = load_map(str(path))
    got = {r.path: (r.address, r.size, r.access) for r in regmap.registers}
    for base, p in [(0x40000000, "UART0"), (0x40001000, "UART1")]:
        assert got[f"{p}.DATA"] == (base, 1, "rw")
        assert got[f"{p}.DATA2"] == (base + 1, 1, "rw")
        assert got[f"{p}.CFG"] == (base + 4, 4, "w")
        assert got[f"{p}.CH[0].CTL"] == (base + 0x20, 4, "rw")
        assert got[f"{p}.CH[1].ST"] == (base + 0x34, 2, "rw")
        assert got[f"{p}.DMA.SRC"] == (base + 0x80, 4, "rw")
        assert got[f"{p}.DMA.DESC.LEN"] == (base + 0x8C, 4, "rw")
    assert len(got) == 2 * 9
    (data2,) = [r for r in regmap.registers if r.path == "UART1.DATA2"]
    assert [(f.name, f.lsb, f.width) for f in data2.fields] == [("B", 0, 8)]
    (cfg,) = [r for r in regmap.registers if r.path == "UART0.CFG"]
    assert [(f.name, f.lsb, f.access) for f in cfg.fields] == [
        ("PIN0", 0, "w"),
        ("PIN1", 2, "w"),
        ("PIN2", 4, "w"),
        ("PIN3", 6, "w"),
    ]
    assert [(e.name, e.value) for e in cfg.fields[1].enums] == [("OFF", 0), ("HIGH", 1)]


def test_rdl_read_only_and_write_only_registers_at_one_address(tmp_path: Path) -> None:
    path = tmp_path / "fifo.rdl"
    path.write_text(
        "addrmap fifo {\n"
        "  reg { field { sw = r; hw = w; } DATA[31:0]; } RX @ 0x0;\n"
        "  reg { field { sw = w; hw = r; } DATA[31:0]; } TX @ 0x0;\n"
        "};\n"
    )
    regmap = load_map(str(path))
    assert [(r.path, r.access) for r in regmap.registers] == [("fifo.RX", "r"), ("fifo.TX", "w")]
    assert regmap.decode(0, 4, 7, "R").paths == ("fifo.RX",)
    assert regmap.decode(0, 4, 7, "W").paths == ("fifo.TX",)


def _error(path: Path) -> MapError:
    with pytest.raises(MapError) as info:
        load_map(str(path))
    assert "\n" not in str(info.value)
    return info.value


def test_malformed_rdl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.rdl"
    path.write_text("addrmap x {\n  reg { field {} A[0:0]; } R @ 0x0;\n  bogus;\n};\n")
    err = _error(path)
    assert err.line == 3 and str(err).startswith(f"{path}:3: ") and "bogus" in str(err)


def test_several_rdl_errors_say_how_many_more(tmp_path: Path) -> None:
    path = tmp_path / "bad.rdl"
    path.write_text(
        "addrmap x {\n"
        "  reg { field {} A[3:0]; field {} B[2:0]; } R @ 0x0;\n"
        "  reg { field {} A[3:0]; field {} B[2:0]; } S @ 0x4;\n"
        "};\n"
    )
    err = _error(path)
    assert err.line == 2 and "overlaps" in str(err) and "more error" in str(err)


def test_malformed_svd_xml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.svd"
    path.write_text('<?xml version="1.0"?>\n<device>\n<name>X</name>\n<peripherals>\n</device>\n')
    err = _error(path)
    assert err.line == 5 and "not well-formed XML" in str(err)


def test_svd_peripheral_without_base_address(tmp_path: Path) -> None:
    path = tmp_path / "bad.svd"
    path.write_text(
        "<device><name>X</name><peripherals><peripheral><name>P</name></peripheral></peripherals></device>"
    )
    assert "'P' has no <baseAddress>" in str(_error(path))


def test_malformed_ipxact(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(
        '<?xml version="1.0"?>\n'
        '<ipxact:component xmlns:ipxact="http://www.accellera.org/XMLSchema/IPXACT/1685-2014">\n'
        "<ipxact:name>c</ipxact:name><ipxact:memoryMaps><ipxact:memoryMap>\n"
        "</ipxact:memoryMap></ipxact:memoryMaps></ipxact:component>\n"
    )
    assert "memoryMap is missing required tag 'name'" in str(_error(path))
    path.write_text('<?xml version="1.0"?>\n<ipxact:component xmlns:ipxact="x">\n<a>\n</ipxact:component>\n')
    err = _error(path)
    assert err.line == 4 and str(err).endswith("not well-formed XML: mismatched tag")


def test_not_a_map_and_no_such_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a register map kmmio reads" in str(_error(tmp_path / "notes.txt"))
    (tmp_path / "page.xml").write_text("<!-- a comment --><html><body/></html>")
    assert "root is <html>" in str(_error(tmp_path / "page.xml"))
    err = _error(tmp_path / "nope.rdl")
    assert str(err) == f"{tmp_path / 'nope.rdl'}: cannot read it: No such file or directory"


def test_map_kind() -> None:
    assert map_kind("a.RDL", b"") == "rdl"
    assert map_kind("a.svd", b"<component/>") == "svd"
    assert (
        map_kind("a.xml", b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- <device> -->\n<spirit:component>')
        == "ipxact"
    )
    assert map_kind("a", b"<!DOCTYPE x>\n<device schemaVersion='1.1'>") == "svd"


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("igb.rdl@0xf7c00000", ("igb.rdl", 0xF7C00000)),
        ("igb.rdl@4096", ("igb.rdl", 4096)),
        ("igb.rdl", ("igb.rdl", 0)),
        ("dir@home/igb.rdl", ("dir@home/igb.rdl", 0)),
        ("@0x10", ("@0x10", 0)),
    ],
)
def test_parse_map_spec(spec: str, want: tuple[str, int]) -> None:
    assert parse_map_spec(spec) == want


def test_negative_base_is_refused() -> None:
    with pytest.raises(MapError, match="negative"):
        parse_map_spec("igb.rdl@-0x10")


@pytest.mark.parametrize(
    ("path", "module"),
    [(RDL, "systemrdl"), (IPXACT, "peakrdl_ipxact"), (SVD, "cmsis_svd")],
)
def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch, path: Path, module: str) -> None:
    for name in [n for n in sys.modules if n.startswith(module + ".")] + [module]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    with pytest.raises(MissingExtraError) as info:
        load_map(str(path))
    assert info.value.module == module
    assert "pip install 'kmmio[maps]'" in str(info.value) and "\n" not in str(info.value)


def test_importing_kmmio_needs_none_of_the_libraries() -> None:
    code = (
        "import sys\n"
        "for m in ('systemrdl', 'peakrdl_ipxact', 'cmsis_svd', 'lxml'):\n"
        "    sys.modules[m] = None\n"
        "import kmmio, kmmio.maps, kmmio.cli, kmmio.cli_decode\n"
        "kmmio.cli.build_parser()\n"
        "from kmmio.maps import RegisterMap, Register\n"
        "assert RegisterMap((Register('a.B', 0, 4),)).decode(0, 4, 1).register == 'a.B'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_map_decodes_nothing() -> None:
    assert RegisterMap(()).decode(0, 4, 0).register is None
