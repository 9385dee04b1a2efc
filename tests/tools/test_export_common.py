"""What the exports share: naming accesses (registers or addresses) and their values; and
the helpers of the export and plot tests (imported by them).

Helpers: a generated log (every kind of record, several threads, narrow, straddling and
wide accesses, polls, equal timestamps), a real trace (``kmmio trace`` of a small C
program built at test time, or of the demo driver), and a reference model of what each
variable holds, written independently of ``kmmio.tools.export`` (bytes in a memory).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmmio.errors import UsageError
from kmmio.maps import RegisterMap, load_map
from kmmio.maps.format import register_column
from kmmio.tools.export.names import Namer, Slot, Values, Var, address_var, parse_selection
from kmmio.trace import Access, Kind, Record, read_records
from kmmio.trace.records import KernelAccess, Map, MapInfo, Mark, PciDev, Unknown, Unmap, Version
from kmmio.trace.writer import TraceWriter

DATA = Path(__file__).parents[1] / "maps" / "data"
TDEV_LOG = DATA / "tdev.log"
TDEV_SVD = str(DATA / "tdev.svd")  # at 0xf7c00000
BASE = 0xF7C00000


# --- logs --------------------------------------------------------------------------------


def generated_records(n: int = 3000, seed: int = 7) -> list[Record]:
    """A log of about ``n`` accesses to tdev at ``BASE``, with every record kind."""
    r = random.Random(seed)
    recs: list[Record] = [
        Version(),
        PciDev(0x0300, 0x80861533, 0x10, (BASE, 0, 0, 0, 0, 0, 0), (0x1000, 0, 0, 0, 0, 0, 0), "igb"),
        Map(1_000_000, 1, BASE, 0x7F0000000000, 0x1000, 0x401000, 4242),
        MapInfo(1_000_000, 1, "/sys/bus/pci/devices/0000:03:00.0/resource0", "pci", "0000:03:00.0", "bar 0"),
    ]
    ts = 1_000_001
    shapes = [(0x0, 4), (0x4, 4), (0x8, 2), (0x10, 4), (0x14, 4), (0x1, 1), (0x1, 2), (0x0, 8), (0x6, 4),
              (0x8, 4), (0xC, 4), (0x10, 8), (0x40, 16), (0x60, 32), (0x80, 64), (0x200, 4)]  # fmt: skip
    for i in range(n):
        ts += r.choice((0, 0, 1, 2, 5))
        tid = r.choice((4242, 4242, 4243, 4244))
        off, width = r.choice(shapes)
        kind = Kind.WRITE if r.random() < 0.4 else Kind.READ
        value = r.choice((0, 1, 0x10000009, r.getrandbits(8 * width))) & ((1 << (8 * width)) - 1)
        if off == 0x4 and kind is Kind.READ:  # a polled status: few distinct values
            value = r.choice((0x2000501, 0x2000501, 0x2000503))
        recs.append(Access(kind, width, ts, 1, BASE + off, value, 0x401100 + 4 * (i % 50), tid))
        if i % 500 == 250:
            recs.append(Mark(ts, f"checkpoint {i}"))
        if i % 700 == 350:
            recs.append(KernelAccess(ts, "write", "reads", 1, BASE + 0x40, 0x10, tid))
        if i % 900 == 450:
            recs.append(Unknown(ts, 1, BASE + 0x8, b"\x0f\xc1\x07", 0x401200, tid))
    recs.append(Unmap(ts + 10, 1, 0x401300, 4242))
    return recs


def write_log(path: Path, records: Iterable[Record]) -> Path:
    with open(path, "w") as f:
        w = TraceWriter(f, header=None)
        for rec in records:
            w.write(rec)
        w.flush()
    return path


def log_records(path: Path) -> list[Record]:
    with open(path) as f:
        return list(read_records(f))


def accesses(records: Iterable[Record]) -> list[Access]:
    return [r for r in records if isinstance(r, Access)]


#: A small driver for real traces: two threads, a polled register, a byte write into a
#: word, 16-byte and 8-byte accesses, all to a file mapped shared (``FILE``, 4 KiB).
DRIVER_C = r"""
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
typedef uint32_t v4 __attribute__((vector_size(16)));
static volatile uint32_t *regs;
static void *worker(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < 3; i++) regs[0x20 + id] = (uint32_t)(id << 8 | i);
    (void)regs[0x20 + id];
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    regs = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (regs == MAP_FAILED) return 1;
    regs[0] = 0x10000009;
    regs[1] = 0x2000501;
    uint32_t s = regs[1];
    s += regs[1];
    ((volatile uint8_t *)regs)[1] = 0xff;
    s += regs[0];
    *(volatile v4 *)(regs + 8) = (v4){1, 2, 3, 0x80000000u};
    v4 back = *(volatile v4 *)(regs + 8);
    *(volatile uint64_t *)(regs + 16) = 0x1122334455667788ULL;
    regs[5] = 7;
    pthread_t th[2];
    for (long i = 0; i < 2; i++) pthread_create(&th[i], 0, worker, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(th[i], 0);
    munmap((void *)regs, 4096);
    printf("ok %u\n", s + back[2]);
    return 0;
}
"""


def trace_driver(tmp: Path) -> Path:
    """``kmmio trace`` of :data:`DRIVER_C` (built here); the log's path."""
    cc = shutil.which("cc")
    assert cc is not None, "these tests need a C compiler (cc)"
    src, exe, log = tmp / "driver.c", tmp / "driver", tmp / "driver.log"
    src.write_text(DRIVER_C)
    subprocess.run([cc, "-O1", "-pthread", "-o", str(exe), str(src)], check=True)
    regs = tmp / "export-regs.bin"
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", "trace", "-q", "-o", str(log), "-m", "export-regs.bin", "--",
         str(exe), str(regs)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok "), proc.stdout
    return log


def trace_demo(tmp: Path) -> Path:
    """``kmmio demo -o LOG``: the bundled Python driver traced on its simulated device."""
    log = tmp / "demo.log"
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", "demo", "-o", str(log)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return log


#: The demo device's registers (kmmio.demo.registers) as SystemRDL, from offset 0.
DEMO_RDL = """addrmap demo {
    default regwidth = 32;
    reg { field { sw = r; } V[31:0]; } ID @ 0x0;
    reg { field { sw = rw; } V[31:0]; } CTRL @ 0x4;
    reg { field { sw = r; } V[31:0]; } STATUS @ 0x8;
    reg { field { sw = rw; } V[31:0]; } IRQ_MASK @ 0xc;
    reg { field { sw = rw; } V[31:0]; } SRC @ 0x10;
    reg { field { sw = rw; } V[31:0]; } LEN @ 0x14;
    reg { field { sw = rw; } V[31:0]; } CMD @ 0x18;
    reg { field { sw = r; } V[31:0]; } RESULT @ 0x1c;
};
"""


# --- the reference model -------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    ts: int
    name: str  # register path or hex address
    value: int
    kind: Kind
    tid: int


def reference_states(
    records: Iterable[Record], regmap: RegisterMap | None
) -> list[tuple[Access, list[tuple[str, int, int]]]]:
    """Each access with what it left in every variable it touched, ``(name, value, bits)``,
    computed from bytes: the accesses write a byte memory; a register's value is its bytes
    there (0 where never seen), an address's the bytes of the last access starting there
    (or, with a map, the run of bytes no register covers)."""
    mem: dict[int, int] = {}
    out: list[tuple[Access, list[tuple[str, int, int]]]] = []
    for acc in accesses(records):
        data = acc.value.to_bytes(acc.width, "little")
        for i, b in enumerate(data):
            mem[acc.phys + i] = b
        touched: list[tuple[str, int, int]] = []
        if regmap is None:
            touched.append((f"{acc.phys:#x}", acc.value, 8 * acc.width))
        else:
            covered: set[int] = set()
            for h in regmap.lookup(acc.phys, acc.width):
                reg = h.register
                covered.update(range(h.start, h.end))
                value = int.from_bytes(bytes(mem.get(a, 0) for a in range(reg.address, reg.end)), "little")
                touched.append((reg.path, value, 8 * reg.size))
            run: list[int] = []
            for a in [*range(acc.phys, acc.phys + acc.width), None]:
                if a is not None and a not in covered:
                    run.append(a)
                    continue
                if run:
                    chunk = bytes(data[x - acc.phys] for x in run)
                    touched.append((f"{run[0]:#x}", int.from_bytes(chunk, "little"), 8 * len(run)))
                    run = []
        out.append((acc, touched))
    return out


def reference_changes(
    records: Iterable[Record], regmap: RegisterMap | None
) -> tuple[list[Change], dict[str, int]]:
    """Every value change (:func:`reference_states`), and each variable's width in bits."""
    current: dict[str, int] = {}
    bits: dict[str, int] = {}
    out: list[Change] = []
    for acc, touched in reference_states(records, regmap):
        for name, value, nbits in touched:
            bits[name] = max(bits.get(name, 0), nbits)
            if current.get(name) != value:
                current[name] = value
                out.append(Change(acc.ts, name, value, acc.kind, acc.pid))
    return out, bits


def labels(records: Iterable[Record], regmap: RegisterMap | None) -> list[str]:
    """Each access's label: its address, or the registers it touched as ``kmmio decode``
    writes them."""
    if regmap is None:
        return [f"{a.phys:#x}" for a in accesses(records)]
    return [register_column(regmap.decode(a.phys, a.width, a.value, a.kind.value)) for a in accesses(records)]


@pytest.fixture(scope="module")
def tdev_map() -> RegisterMap:
    return load_map(TDEV_SVD)


# --- tests of kmmio.tools.export.names -------------------------------------------------


def test_without_a_map_an_access_is_its_address() -> None:
    n = Namer(None)
    naming = n.naming(1, BASE + 4, 4)
    assert naming.label == "0xf7c00004" and naming.register is None
    assert naming.slots == (Slot(Var("0xf7c00004", BASE + 4), 0, 32, 0),)


def test_registers_partial_straddling_and_gaps(tdev_map: RegisterMap) -> None:
    n = Namer(tdev_map)
    ctrl = Var("tdev.CTRL", BASE, 4)
    assert n.naming(1, BASE + 1, 1).slots == (Slot(ctrl, 8, 8, 0),)
    straddle = n.naming(0, BASE + 6, 4)
    assert straddle.label == "tdev.STATUS[31:16],tdev.LEN16" and straddle.register == "tdev.STATUS"
    assert straddle.slots == (
        Slot(Var("tdev.STATUS", BASE + 4, 4), 16, 16, 0),
        Slot(Var("tdev.LEN16", BASE + 8, 2), 0, 16, 16),
    )
    gap = n.naming(0, BASE + 8, 4)
    assert gap.slots == (
        Slot(Var("tdev.LEN16", BASE + 8, 2), 0, 16, 0),
        Slot(address_var(BASE + 0xA), 0, 16, 16),
    )
    assert n.naming(1, BASE + 0xC, 4).register is None


def test_values_merge_registers_and_replace_addresses(tdev_map: RegisterMap) -> None:
    n, v = Namer(tdev_map), Values()
    assert list(v.apply(n.slots(1, BASE, 4), 0x10000009)) == [(Var("tdev.CTRL", BASE, 4), 0x10000009, True)]
    assert list(v.apply(n.slots(1, BASE + 1, 1), 0xFF)) == [(Var("tdev.CTRL", BASE, 4), 0x1000FF09, True)]
    assert list(v.apply(n.slots(0, BASE + 1, 1), 0xFF)) == [(Var("tdev.CTRL", BASE, 4), 0x1000FF09, False)]
    a = Namer(None)
    assert list(v.apply(a.slots(1, BASE, 8), 0x1122334455667788)) == [
        (address_var(BASE), 0x1122334455667788, True)
    ]
    assert list(v.apply(a.slots(1, BASE, 1), 0x55)) == [(address_var(BASE), 0x55, True)]


def test_find_by_path_name_and_address(tdev_map: RegisterMap) -> None:
    n = Namer(tdev_map)
    assert n.find("tdev.CTRL") == n.find("CTRL") == n.find("0xf7c00000") == Var("tdev.CTRL", BASE, 4)
    assert n.find("QUEUE[1]") == Var("tdev.QUEUE[1]", BASE + 0x14, 4)
    assert n.find("0xf7c0000c") == address_var(BASE + 0xC)
    with pytest.raises(UsageError, match="no register 'NOPE'"):
        n.find("NOPE")
    with pytest.raises(UsageError, match="needs --map"):
        Namer(None).find("CTRL")
    with pytest.raises(UsageError, match="not an address"):
        n.find("0xzz")
    assert parse_selection("CTRL, 0x10,STATUS") == ["CTRL", "0x10", "STATUS"]
    with pytest.raises(UsageError):
        parse_selection(" , ")


def test_the_same_map_at_two_bases_names_registers_apart(tdev_map: RegisterMap) -> None:
    two = RegisterMap.union([tdev_map, tdev_map.rebased(0x100000)])
    n = Namer(two)
    assert n.naming(0, BASE, 4).slots[0].var.name == f"tdev.CTRL@{BASE:#x}"
    assert n.naming(0, BASE + 0x100000, 4).slots[0].var.name == f"tdev.CTRL@{BASE + 0x100000:#x}"
    with pytest.raises(UsageError, match="several registers"):
        n.find("CTRL")


def test_the_reference_model_agrees_on_tdev(tdev_map: RegisterMap) -> None:
    """The model the export tests compare with, checked by hand on tdev.log."""
    recs = log_records(TDEV_LOG)
    changes, bits = reference_changes(recs, tdev_map)
    assert [(c.name, c.value) for c in changes] == [
        ("tdev.CTRL", 0x10000009),
        ("tdev.STATUS", 0x2000501),
        ("tdev.CTRL", 0x1000FF09),
        ("tdev.CTRL", 0x0040FF09),
        ("tdev.CTRL", 0x0040FF0D),
        ("tdev.CTRL", 0x00400009),
        ("tdev.LEN16", 0x8123),
        ("tdev.LEN16", 0x8010),
        ("0xf7c0000a", 0x0),
        ("0xf7c0000c", 0x5),
        ("tdev.QUEUE[1]", 0x3123456),
        ("tdev.QUEUE[0]", 0x2ABCDEF),
        ("tdev.QUEUE[1]", 0x3000001),
        ("tdev.QUEUE[0]", 0x0),
    ]
    assert bits == {"tdev.CTRL": 32, "tdev.STATUS": 32, "tdev.LEN16": 16, "0xf7c0000a": 16,
                    "0xf7c0000c": 32, "tdev.QUEUE[0]": 32, "tdev.QUEUE[1]": 32}  # fmt: skip
    assert len(reference_changes(recs, None)[0]) == 13
    assert os.path.exists(TDEV_SVD)
