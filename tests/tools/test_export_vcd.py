"""``kmmio export --format vcd``: read back with pyvcd's own tokenizer, a variable per
register (or address) as wide as it should be, and exactly one value change per access
that changed its variable's value, at the access's time."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_export_common import (
    DEMO_RDL,
    TDEV_LOG,
    TDEV_SVD,
    generated_records,
    log_records,
    reference_changes,
    trace_demo,
    trace_driver,
    write_log,
)
from vcd.reader import TokenKind, tokenize

from kmmio.cli import main
from kmmio.maps import RegisterMap, load_map
from kmmio.tools import scan as scan_mod
from kmmio.trace import Access, Kind, Record
from kmmio.trace.records import Mark


@dataclass
class Dump:
    timescale: str = ""
    vars: dict[str, tuple[int, str]] = field(default_factory=dict)  # full name -> (bits, id)
    changes: list[tuple[int, str, int]] = field(default_factory=list)  # time, full name, value
    first_time: int | None = None


def read_vcd(path: Path) -> Dump:
    """The variables and the value changes of a VCD (``x`` values left out)."""
    dump = Dump()
    scope: list[str] = []
    names: dict[str, str] = {}
    now = 0
    with open(path, "rb") as f:
        for tok in tokenize(f):
            if tok.kind is TokenKind.TIMESCALE:
                dump.timescale = str(tok.timescale)
            elif tok.kind is TokenKind.SCOPE:
                scope.append(tok.scope.ident)
            elif tok.kind is TokenKind.UPSCOPE:
                scope.pop()
            elif tok.kind is TokenKind.VAR:
                full = ".".join([*scope, tok.var.reference])
                dump.vars[full] = (tok.var.size, tok.var.id_code)
                names[tok.var.id_code] = full
            elif tok.kind is TokenKind.CHANGE_TIME:
                now = tok.time_change
                if dump.first_time is None:
                    dump.first_time = now
            elif tok.kind is TokenKind.CHANGE_VECTOR:
                value = tok.vector_change.value
                if isinstance(value, int):
                    dump.changes.append((now, names[tok.vector_change.id_code], value))
                else:
                    assert set(value.lower()) == {"x"}, value
    return dump


def vcd_name(name: str, regmap: RegisterMap | None) -> str:
    """Where the documentation says a variable is: a register's path with brackets
    written ``_N``, an address as ``addresses.addr_0x...``."""
    if name.startswith("0x"):
        return f"addresses.addr_{name}"
    return name.replace("[", "_").replace("]", "")


def export(log: Path, out: Path, *args: str) -> None:
    assert main(["export", str(log), "--format", "vcd", "-o", str(out), "-q", *args]) == 0


def check(records: list[Record], out: Path, regmap: RegisterMap | None) -> Dump:
    """The dump holds exactly the reference model's variables, widths and changes."""
    dump = read_vcd(out)
    changes, bits = reference_changes(records, regmap)
    assert dump.timescale == "1 us"
    assert {name: size for name, (size, _) in dump.vars.items()} == {
        vcd_name(n, regmap): b for n, b in bits.items()
    }
    assert dump.changes == [(c.ts, vcd_name(c.name, regmap), c.value) for c in changes]
    first = next((r.ts for r in records if isinstance(r, Access)), None)
    assert dump.first_time == first
    return dump


def test_tdev_with_and_without_a_map(tmp_path: Path) -> None:
    recs = log_records(TDEV_LOG)
    out = tmp_path / "a.vcd"
    export(TDEV_LOG, out)
    dump = check(recs, out, None)
    assert len(dump.vars) == 9 and len(dump.changes) == 13
    export(TDEV_LOG, out, "--map", TDEV_SVD)
    dump = check(recs, out, load_map(TDEV_SVD))
    assert sorted(dump.vars) == [
        "addresses.addr_0xf7c0000a", "addresses.addr_0xf7c0000c",
        "tdev.CTRL", "tdev.LEN16", "tdev.QUEUE_0", "tdev.QUEUE_1", "tdev.STATUS",
    ]  # fmt: skip
    assert len(dump.changes) == 14
    assert dump.changes[:3] == [(12000104, "tdev.CTRL", 0x10000009), (12000141, "tdev.STATUS", 0x2000501),
                                (12000178, "tdev.CTRL", 0x1000FF09)]  # fmt: skip


@pytest.mark.parametrize("with_map", [False, True], ids=["addresses", "registers"])
def test_generated_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_map: bool) -> None:
    monkeypatch.setattr(scan_mod, "ROWS", 333)
    recs = generated_records(4000, seed=5)
    log = write_log(tmp_path / "gen.log", recs)
    out = tmp_path / "gen.vcd"
    regmap = load_map(TDEV_SVD) if with_map else None
    export(log, out, *(["--map", TDEV_SVD] if with_map else []))
    dump = check(recs, out, regmap)
    if not with_map:  # polls of an unchanged value are no change
        polls = sum(1 for r in recs if isinstance(r, Access) and r.phys == 0xF7C00004)
        assert 0 < sum(1 for c in dump.changes if c[1] == "addresses.addr_0xf7c00004") < polls
    widest = dump.vars["addresses.addr_0xf7c00080"][0]
    assert widest == 512  # a 64-byte access


def test_time_never_goes_back(tmp_path: Path) -> None:
    recs: list[Record] = [
        Access(Kind.WRITE, 4, 100, 1, 0x10, 1, 0, 1),
        Access(Kind.WRITE, 4, 90, 1, 0x10, 2, 0, 1),  # another CPU's older event, printed later
        Access(Kind.WRITE, 4, 120, 1, 0x10, 3, 0, 1),
    ]
    out = tmp_path / "b.vcd"
    export(write_log(tmp_path / "b.log", recs), out)
    assert read_vcd(out).changes == [(100, "addresses.addr_0x10", 1), (100, "addresses.addr_0x10", 2),
                                     (120, "addresses.addr_0x10", 3)]  # fmt: skip


def test_no_access_is_an_empty_dump(tmp_path: Path) -> None:
    out = tmp_path / "e.vcd"
    export(write_log(tmp_path / "e.log", [Mark(5, "nothing")]), out)
    dump = read_vcd(out)
    assert dump.vars == {} and dump.changes == []


def test_standard_input_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(TDEV_LOG.read_bytes())))
    out = tmp_path / "s.vcd"
    assert main(["export", "-", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "kmmio: export --format vcd reads the log twice: give a log file, not standard input\n"
    assert not out.exists()


@pytest.mark.ptrace
def test_a_real_trace_of_a_program(tmp_path: Path) -> None:
    log = trace_driver(tmp_path)
    recs = log_records(log)
    out = tmp_path / "driver.vcd"
    export(log, out)
    dump = check(recs, out, None)
    base = next(r.phys for r in recs if isinstance(r, Access))  # regs[0]: the first access
    assert dump.vars[f"addresses.addr_{base + 0x20:#x}"][0] == 128  # the 16-byte store
    # the polled register: written once, read twice with the value written: one change
    status = f"addresses.addr_{base + 4:#x}"
    written = next(r.ts for r in recs if isinstance(r, Access) and r.phys == base + 4)
    assert [c for c in dump.changes if c[1] == status] == [(written, status, 0x2000501)]


@pytest.mark.ptrace
def test_the_demo_driver_with_its_map(tmp_path: Path) -> None:
    log = trace_demo(tmp_path)
    rdl = tmp_path / "demo.rdl"
    rdl.write_text(DEMO_RDL)
    regmap = load_map(str(rdl))
    recs = log_records(log)
    out = tmp_path / "demo.vcd"
    export(log, out, "--map", str(rdl))
    dump = check(recs, out, regmap)
    regs = {name for name in dump.vars if not name.startswith("addresses.")}
    assert regs == {f"demo.{r}" for r in ("ID", "CTRL", "STATUS", "IRQ_MASK", "SRC", "LEN", "CMD", "RESULT")}
    ctrl = [v for _, name, v in dump.changes if name == "demo.CTRL"]
    assert ctrl[-2:] == [1, 0]  # enabled, then disabled (ctypes may read it first)
    assert 0xC5 in [v for _, name, v in dump.changes if name == "demo.CMD"]
    assert any(name == "addresses.addr_0x100" for _, name, _ in dump.changes)  # the data window


class Discard:
    """A text sink that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def peak_bytes(n: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """tracemalloc's peak while dumping ``n`` writes to ``n`` distinct addresses."""
    import contextlib
    import tracemalloc
    from collections.abc import Iterator
    from typing import IO, Any

    from kmmio.tools.export.names import Namer
    from kmmio.tools.export.to_vcd import export_vcd

    monkeypatch.setattr(scan_mod, "ROWS", 1024)  # a batch (and its rows as integers): bounded
    text = "".join(
        f"W 4 1.{i % 1_000_000:06d} 1 {0x80000000 + 4 * i:#x} 0x{i:x} 0x401000 7\n" for i in range(n)
    )
    data = text.encode()

    @contextlib.contextmanager
    def open_pass(_n: int) -> Iterator[tuple[IO[bytes], Any]]:
        yield io.BytesIO(data), None

    tracemalloc.start()
    try:
        assert export_vcd(open_pass, Discard(), Namer(None, cache_size=256)) == (n, n)  # type: ignore[arg-type]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_per_distinct_address_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable per address is the format's; what the exporter keeps for each is a dict
    entry (int to int) and a list slot with its value: under 200 bytes an address, measured
    as the growth of the peak from 20,000 to 60,000 addresses.  It was about 800 bytes
    with pyvcd's objects and a ``Var`` per address."""
    peak_bytes(1000, monkeypatch)  # imports done before measuring
    small = peak_bytes(20_000, monkeypatch)
    grow = (peak_bytes(60_000, monkeypatch) - small) / 40_000
    assert grow < 200, grow
