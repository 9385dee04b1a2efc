"""``kmmio export --format parquet``: one row per record, read back with pyarrow and
compared row by row with ``read_records``; registers with a map; row groups and batches
of any size."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_export_common import TDEV_LOG, TDEV_SVD, generated_records, log_records, trace_driver, write_log

from kmmio.cli import main
from kmmio.maps import RegisterMap, load_map
from kmmio.tools import scan as scan_mod
from kmmio.tools.export.names import Namer
from kmmio.tools.export.to_parquet import export_parquet
from kmmio.trace import Access, Kind, Record
from kmmio.trace.records import KernelAccess, Map, MapInfo, Mark, PciDev, Unknown, Unmap, Version
from kmmio.trace.writer import format_record

COLUMNS = [
    "kind",
    "width",
    "ts_us",
    "map_id",
    "phys",
    "value",
    "wide_value",
    "pc",
    "tid",
    "virt",
    "length",
    "text",
]


def expected_row(rec: Record, regmap: RegisterMap | None = None) -> dict[str, Any]:
    """The row the documentation promises for a record."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    match rec:
        case Access():
            row.update(kind=rec.kind.value, width=rec.width, ts_us=rec.ts, map_id=rec.map_id, phys=rec.phys,
                       value=rec.value & (2**64 - 1), pc=rec.pc, tid=rec.pid)  # fmt: skip
            if rec.width > 8:
                row["wide_value"] = rec.value.to_bytes(rec.width, "little")
        case Map():
            row.update(kind="MAP", ts_us=rec.ts, map_id=rec.map_id, phys=rec.phys, pc=rec.pc, tid=rec.pid,
                       virt=rec.virt, length=rec.length)  # fmt: skip
        case Unmap():
            row.update(kind="UNMAP", ts_us=rec.ts, map_id=rec.map_id, pc=rec.pc, tid=rec.pid)
        case Unknown():
            row.update(kind="UNKNOWN", ts_us=rec.ts, map_id=rec.map_id, phys=rec.phys, pc=rec.pc, tid=rec.pid,
                       text=",".join(f"{b:02x}" for b in rec.code))  # fmt: skip
        case KernelAccess():
            row.update(kind="MARK", ts_us=rec.ts, map_id=rec.map_id, phys=rec.phys, length=rec.length,
                       tid=rec.tid, text=rec.text)  # fmt: skip
        case MapInfo():
            row.update(kind="MARK", ts_us=rec.ts, map_id=rec.map_id, text=rec.text)
        case Mark():
            row.update(kind="MARK", ts_us=rec.ts, text=rec.text)
        case Version():
            row.update(kind="VERSION", text=rec.version)
        case PciDev():
            row.update(kind="PCIDEV", text=format_record(rec).removeprefix("PCIDEV "))
    if regmap is not None:
        row["register"] = (
            regmap.decode(rec.phys, rec.width, 0, rec.kind.value).register
            if isinstance(rec, Access)
            else None
        )
    return row


def export(log: Path, out: Path, *args: str) -> None:
    assert main(["export", str(log), "--format", "parquet", "-o", str(out), "-q", *args]) == 0


def test_every_record_is_a_row_with_its_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 700)  # many batches, cut anywhere
    recs = generated_records(5000)
    log = write_log(tmp_path / "gen.log", recs)
    out = tmp_path / "gen.parquet"
    with open(log, "rb") as f, open(out, "wb") as sink:
        rows = export_parquet(f, sink, None, row_group=1000)
    assert rows == len(recs) == len(log_records(log))
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == len(recs) and meta.num_row_groups == (len(recs) + 999) // 1000
    table = pq.read_table(out)
    assert table.column_names == COLUMNS
    assert table.to_pylist() == [expected_row(r) for r in recs]
    kinds = table.column("kind").to_pylist()
    assert {k: kinds.count(k) for k in set(kinds)} == {"VERSION": 1, "PCIDEV": 1, "MAP": 1, "UNMAP": 1,
        "R": sum(1 for r in recs if isinstance(r, Access) and r.kind.value == "R"),
        "W": sum(1 for r in recs if isinstance(r, Access) and r.kind.value == "W"),
        "MARK": sum(1 for r in recs if isinstance(r, Mark | MapInfo | KernelAccess)),
        "UNKNOWN": sum(1 for r in recs if isinstance(r, Unknown))}  # fmt: skip


def test_types_are_the_documented_ones(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    export(TDEV_LOG, out, "--map", TDEV_SVD)
    schema = pq.read_schema(out)
    assert {f.name: str(f.type) for f in schema} == {
        "kind": "dictionary<values=string, indices=int8, ordered=0>",
        "width": "uint8",
        "ts_us": "int64",
        "map_id": "int32",
        "phys": "uint64",
        "value": "uint64",
        "wide_value": "binary",
        "pc": "uint64",
        "tid": "uint32",
        "virt": "uint64",
        "length": "uint64",
        "text": "string",
        "register": "dictionary<values=string, indices=int32, ordered=0>",
    }


def test_registers_from_a_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 500)
    regmap = load_map(TDEV_SVD)
    recs = generated_records(3000, seed=3)
    log = write_log(tmp_path / "gen.log", recs)
    out = tmp_path / "gen.parquet"
    with open(log, "rb") as f, open(out, "wb") as sink:
        export_parquet(f, sink, Namer(regmap), row_group=777)
    table = pq.read_table(out)
    assert table.to_pylist() == [expected_row(r, regmap) for r in recs]
    regs = table.column("register").to_pylist()
    assert regs[4:8] == [expected_row(r, regmap)["register"] for r in recs[4:8]]
    assert {"tdev.CTRL", "tdev.STATUS", "tdev.LEN16", "tdev.QUEUE[0]", "tdev.QUEUE[1]", None} == set(regs)
    tdev = tmp_path / "tdev.parquet"
    export(TDEV_LOG, tdev, "--map", TDEV_SVD)
    ctrl, status, len16, q0, q1 = "tdev.CTRL", "tdev.STATUS", "tdev.LEN16", "tdev.QUEUE[0]", "tdev.QUEUE[1]"
    assert pq.read_table(tdev).column("register").to_pylist() == [
        None, None, ctrl, status, ctrl, ctrl, ctrl, ctrl, ctrl,
        None, status, len16, len16, None, q1, q0, q0, None,
    ]  # fmt: skip


def test_wide_values_and_64_bit_extremes(tmp_path: Path) -> None:
    recs: list[Record] = [
        Access(Kind.WRITE, 8, 0, 1, 2**64 - 1, 2**64 - 1, 2**64 - 1, 2**32 - 1),
        Access(Kind.READ, 16, 1, -1, 0x1000, (1 << 127) | 5, 0, 1),
        Access(Kind.WRITE, 64, 2, 2, 0x2000, 2**512 - 1, 0, 1),
        Access(Kind.WRITE, 32, 2, 2, 0x3000, 7, 0, 1),
    ]
    log = write_log(tmp_path / "w.log", recs)
    out = tmp_path / "w.parquet"
    export(log, out)
    got = pq.read_table(out).to_pylist()
    assert got == [expected_row(r) for r in recs]
    assert got[1]["value"] == 5 and int.from_bytes(got[1]["wide_value"], "little") == (1 << 127) | 5
    assert got[3]["wide_value"] == (7).to_bytes(32, "little")


def test_empty_and_header_only_logs(tmp_path: Path) -> None:
    for text, n in (("", 0), ("# tracer: mmiotrace\n\nVERSION 20070824\n", 1)):
        log = tmp_path / "e.log"
        log.write_text(text)
        out = tmp_path / "e.parquet"
        export(log, out)
        assert pq.read_table(out).num_rows == n


def test_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = TDEV_LOG.read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "s.parquet"
    assert main(["export", "-", "-o", str(out), "-q"]) == 0
    assert pq.read_table(out).to_pylist() == [expected_row(r) for r in log_records(TDEV_LOG)]


@pytest.mark.ptrace
def test_a_real_trace_of_a_program(tmp_path: Path) -> None:
    log = trace_driver(tmp_path)
    recs = log_records(log)
    out = tmp_path / "driver.parquet"
    export(log, out)
    table = pq.read_table(out)
    assert table.num_rows == len(recs)
    assert table.to_pylist() == [expected_row(r) for r in recs]
    widths = [r["width"] for r in table.to_pylist() if r["kind"] in ("R", "W")]
    assert 16 in widths and 8 in widths and 1 in widths
    assert len({r["tid"] for r in table.to_pylist() if r["kind"] == "W"}) == 3
    assert table.column("ts_us").type == pa.int64()


def test_a_failure_while_closing_closes_the_writer_quietly(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from kmmio.tools.export.to_parquet import ParquetExport

    def broken(self: ParquetExport, final: bool = False) -> None:
        raise RuntimeError("flush failed")

    monkeypatch.setattr(ParquetExport, "_flush", broken)
    data = b"R 4 1.000000 1 0x10 0x1 0x0 1\n"
    with pytest.raises(RuntimeError, match="flush failed"):
        export_parquet(io.BytesIO(data), io.BytesIO())
    import gc

    gc.collect()
    assert capfd.readouterr().err == ""  # no "Exception ignored in ParquetWriter.__del__"


def test_wide_values_straight_from_the_wide_area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W 16, W 32 and W 64 rows among narrow ones, across batches: the ``wide_value``
    column is each row's bytes (null for the narrow ones)."""
    monkeypatch.setattr(scan_mod, "ROWS", 64)
    recs: list[Record] = []
    for i in range(300):
        width = (4, 16, 32, 64, 8)[i % 5]
        value = ((i + 1) * 0x0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF) % (1 << (8 * width))
        recs.append(Access(Kind.WRITE if i % 2 else Kind.READ, width, i, 1, 0x1000 + i, value, 0x400000, 7))
    log = write_log(tmp_path / "w.log", recs)
    out = tmp_path / "w.parquet"
    assert main(["export", str(log), "-o", str(out), "-q"]) == 0
    table = pq.read_table(out)
    got = table.column("wide_value").to_pylist()
    assert got == [r.value.to_bytes(r.width, "little") if r.width > 8 else None for r in recs]
    assert table.column("value").to_pylist() == [r.value & (1 << 64) - 1 for r in recs]
