"""Tracing a driver of the fake machine's devices: MAP, R, W with real physical addresses,
a MARK naming each mapping, and the PCIDEV lines at the top of the log.

``kmmio trace`` runs as a user runs it, with ``KMMIO_SYSFS`` and ``KMMIO_DEV`` pointing at
the fake trees (devices_fake.py), whose ``resourceN`` and ``uioN`` are regular files of the
devices' sizes; the program (programs/devmap.c) maps them as a driver maps the real ones.
The log is compared line by line with what the kernel's mmiotrace would write, apart
from timestamps, program counters and thread ids.

VFIO: a regular file cannot answer ``VFIO_DEVICE_GET_REGION_INFO``, so that one ioctl is
answered from a table (``kmmio.devices.locate.region_source``) while everything else is
real (the program's fd and mmap offsets, the fd the tracer takes from the ``mmap`` call,
/proc/PID/maps, sysfs); the tracer then runs in this process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from devices_fake import Machine

from kmmio.devices import RegionInfo, locate
from kmmio.ptrace.tracer import Tracer
from kmmio.trace import Access, Map, MapInfo, Record, read_records

pytestmark = pytest.mark.ptrace

PROGRAM = Path(__file__).parent / "programs" / "devmap.c"
PAGE = os.sysconf("SC_PAGE_SIZE")
NIC = "devices/pci0000:00/0000:00:1c.0/0000:03:00.0"

#: The fake machine's PCIDEV lines, written out by hand from devices_fake.py: bus and
#: devfn, vendor and device, irq (hex), 7 starts OR-ed with their flags' low bits, 7 sizes,
#: the driver or nothing (the line then ends with a space); in the kernel's order.
PCIDEV = [
    "PCIDEV 0000 80860d57 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ",
    "PCIDEV 0010 12341111 0 fd000008 0 febf0000 0 0 0 c0002 1000000 0 1000 0 0 0 20000 ",
    "PCIDEV 00e0 8086a110 18 0 0 0 0 0 0 0 0 0 0 0 0 0 0 pcieport",
    "PCIDEV 0300 80861533 10 3800000004 0 f7d00000 0 e001 0 f7b00001 20000 0 4000 0 20 0 80000 igb",
    "PCIDEV 0000 1b360010 21 fe800004 0 fe900000 0 0 0 0 4000 0 1000 0 0 0 0 vfio-pci",
    "PCIDEV 0380 80861520 0 3800100004 0 0 0 0 0 0 4000 0 0 0 0 0 0 igbvf",
]


@pytest.fixture(scope="module")
def devmap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc")
    assert cc is not None, "these tests need a C compiler (cc)"
    exe = tmp_path_factory.mktemp("bin") / "devmap"
    subprocess.run([cc, "-O1", "-o", str(exe), str(PROGRAM)], check=True)
    return exe


def sized(path: Path, size: int) -> str:
    """Give a fake device file the size of what it stands for; its path as a driver opens it."""
    os.truncate(path, size)
    return str(path)


def run_kmmio(machine: Machine, program: list[str], pattern: str, tmp: Path) -> tuple[str, list[str]]:
    log = tmp / "trace.log"
    env = dict(os.environ, KMMIO_SYSFS=str(machine.sys), KMMIO_DEV=str(machine.dev))
    proc = subprocess.run(
        [sys.executable, "-m", "kmmio", "trace", "-o", str(log), "-m", pattern, "--", *program],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, log.read_text().splitlines()


def shape(line: str) -> str:
    """``R 4 12.000104 1 0x38.. 0x3 0x401a2b 4242`` → ``R 4 * 1 0x38.. 0x3 * *``; ``MAP``
    likewise keeps id, phys, length; ``MARK`` loses only its timestamp; others as they are."""
    f = line.split(" ")
    if f[0] in ("R", "W"):
        return " ".join([f[0], f[1], "*", f[3], f[4], f[5], "*", "*"])
    if f[0] == "MAP":
        return " ".join([f[0], "*", f[2], f[3], "*", f[5], "*", "*"])
    if f[0] == "UNMAP":
        return " ".join([f[0], "*", f[2], "*", "*"])
    if f[0] == "MARK":
        return " ".join([f[0], "*", *f[2:]])
    return line


def test_pci_bars_carry_their_physical_addresses(machine: Machine, devmap: Path, tmp_path: Path) -> None:
    """resource0 (a 64-bit BAR above 4 GiB) mapped from 0x1000 into it, resource2 (32-bit)
    from its start: MAP and every R/W at BAR start + mmap offset + offset in the mapping."""
    nic = (machine.sys / NIC).resolve()
    bar0 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource0", 0x20000)
    bar2 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource2", 0x4000)
    out, lines = run_kmmio(machine, [str(devmap), "pci", bar0, bar2], "0000:03:00.0/resource", tmp_path)
    assert out == "ok 0\n"
    assert lines[0] == "VERSION 20070824"
    assert lines[1:7] == PCIDEV
    assert [shape(x) for x in lines[7:]] == [
        "MAP * 1 0x3800001000 * 0x2000 * *",
        f"MARK * map 1 {nic}/resource0 pci 0000:03:00.0 bar 0",
        "MAP * 2 0xf7d00000 * 0x1000 * *",
        f"MARK * map 2 {nic}/resource2 pci 0000:03:00.0 bar 2",
        "W 4 * 1 0x3800001018 0x3 * *",
        "R 4 * 1 0x3800001008 0x0 * *",
        "W 2 * 2 0xf7d00010 0xbeef * *",
        "R 1 * 2 0xf7d00004 0x0 * *",
        "UNMAP * 1 * *",
        "UNMAP * 2 * *",
    ]
    info = [r for r in read_records(lines) if isinstance(r, MapInfo)]
    assert [(i.map_id, i.kind, i.device, i.region) for i in info] == [
        (1, "pci", "0000:03:00.0", "bar 0"),
        (2, "pci", "0000:03:00.0", "bar 2"),
    ]


def test_a_window_of_a_bar_is_an_offset_in_the_bar(machine: Machine, devmap: Path, tmp_path: Path) -> None:
    """``-m resource0@0x1018+4`` is BAR 0's register at 0x1018, whatever offset the program
    mapped from and whatever form /proc/PID/maps shows the offset in: one access traced."""
    bar0 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource0", 0x20000)
    bar2 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource2", 0x4000)
    _, lines = run_kmmio(machine, [str(devmap), "pci", bar0, bar2], "resource0@0x1018+4", tmp_path)
    body = [shape(x) for x in lines[7:] if not x.startswith("MARK")]
    assert body == ["MAP * 1 0x3800001018 * 0x4 * *", "W 4 * 1 0x3800001018 0x3 * *", "UNMAP * 1 * *"]


def test_uio_maps_by_their_mmap_offsets(machine: Machine, devmap: Path, tmp_path: Path) -> None:
    """/dev/uio0 at offset 1 page is map 1 (addr 0xf7d00000, registers 0x100 into it), at
    offset 0 map 0 (addr 0x3800000000)."""
    uio0 = sized(machine.dev / "uio0", 2 * PAGE)
    out, lines = run_kmmio(machine, [str(devmap), "uio", uio0], "uio0", tmp_path)
    assert out == "ok 0\n"
    assert lines[1:7] == PCIDEV
    assert [shape(x) for x in lines[7:]] == [
        f"MAP * 1 0xf7d00000 * {PAGE:#x} * *",
        f"MARK * map 1 {machine.dev.resolve()}/uio0 uio uio0 map 1",
        f"MAP * 2 0x3800000000 * {PAGE:#x} * *",
        f"MARK * map 2 {machine.dev.resolve()}/uio0 uio uio0 map 0",
        "R 4 * 1 0xf7d00100 0x0 * *",
        "W 4 * 1 0xf7d00104 0x1 * *",
        "W 8 * 2 0x3800000020 0x1122334455667788 * *",
        "UNMAP * 1 * *",
        "UNMAP * 2 * *",
    ]


def test_vfio_regions_from_the_programs_fd(
    machine: Machine, devmap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VFIO device fd whose regions sit at 0x10000 (BAR 0) and 0x20000 (BAR 2): the region
    is the one the kernel reports for the fd the program mapped, the address its BAR's
    start in sysfs; region info is the only thing faked (see the module docstring)."""
    vfio0 = sized(machine.dev / "vfio/devices/vfio0", 0x30000)
    table = [RegionInfo(0, 7, 0x4000, 0x10000), RegionInfo(1, 0, 0, 0), RegionInfo(2, 7, 0x1000, 0x20000)]
    asked: list[str] = []

    def regions(pid: int, fd: int) -> list[RegionInfo]:
        asked.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        return table

    monkeypatch.setattr(locate, "region_source", regions)
    records: list[Record] = []
    tracer = Tracer(["vfio0"], records.append, roots=machine.roots)
    tracer.spawn([str(devmap), "vfio", vfio0])
    assert tracer.run() == 0
    assert set(asked) == {str(Path(vfio0).resolve())}
    maps = [(r.map_id, r.phys, r.length) for r in records if isinstance(r, Map)]
    assert maps == [(1, 0xFE802000, 0x1000), (2, 0xFE900000, 0x1000)]
    info = [(r.kind, r.device, r.region) for r in records if isinstance(r, MapInfo)]
    assert info == [("vfio", "0001:00:00.0", "bar 0"), ("vfio", "0001:00:00.0", "bar 2")]
    got = [(a.kind.value, a.width, a.map_id, a.phys, a.value) for a in records if isinstance(a, Access)]
    assert got == [("W", 4, 1, 0xFE802040, 0x80000000), ("R", 2, 2, 0xFE900008, 0)]


@pytest.mark.skipif(not Path("/proc/bus/pci/devices").exists(), reason="this machine has no PCI bus")
def test_a_trace_on_this_machine_lists_the_kernels_pci_devices(tmp_path: Path) -> None:
    """The PCIDEV lines of a real trace (no KMMIO_SYSFS) against the kernel's own
    /proc/bus/pci/devices (show_device(): tab-separated, %16llx, the driver or nothing),
    device by device and field by field, in the kernel's order."""
    log = tmp_path / "trace.log"
    env = {k: v for k, v in os.environ.items() if k not in ("KMMIO_SYSFS", "KMMIO_DEV")}
    subprocess.run(
        [sys.executable, "-m", "kmmio", "trace", "-q", "-o", str(log), "-m", "no-such-map", "--", "true"],
        check=True,
        env=env,
        timeout=120,
    )
    lines = log.read_text().split("\n")
    assert lines[0] == "VERSION 20070824" and lines[-1] == ""
    ours = [line for line in lines if line.startswith("PCIDEV ")]
    assert len(ours) == len(lines) - 2  # nothing else: no mapping matched
    kernel = Path("/proc/bus/pci/devices").read_text().splitlines()
    assert len(ours) == len(kernel) > 0
    for line, theirs in zip(ours, kernel, strict=True):
        mine = line.split(" ")
        cols = theirs.split("\t")
        assert len(mine) == 19 and len(cols) in (17, 18)
        assert [int(x, 16) for x in mine[1:18]] == [int(x, 16) for x in cols[:17]], (line, theirs)
        assert mine[18] == (cols[17] if len(cols) == 18 else ""), (line, theirs)


TDEV = Path(__file__).parent.parent / "maps" / "data" / "tdev.rdl"


def test_live_register_names_with_regs(machine: Machine, devmap: Path, tmp_path: Path) -> None:
    """``kmmio trace --regs MAP@BASE``: the log as always, and each access on standard
    error as ``kmmio decode`` shows it (tdev's registers placed at BAR 2's start)."""
    bar0 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource0", 0x20000)
    bar2 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource2", 0x4000)
    log = tmp_path / "trace.log"
    env = dict(os.environ, KMMIO_SYSFS=str(machine.sys), KMMIO_DEV=str(machine.dev))
    argv = [sys.executable, "-m", "kmmio", "trace", "-q", "-o", str(log), "-m", "0000:03:00.0/resource"]
    regs = ["--regs", f"{TDEV}@0xf7d00000", "--", str(devmap), "pci", bar0, bar2]
    proc = subprocess.run([*argv, *regs], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "ok 0\n", proc.stderr
    shown = [re.sub(r" \d+\.\d{6} (.*) pc 0x[0-9a-f]+ tid \d+$", r" \1", x) for x in proc.stderr.splitlines()]
    assert shown == [
        "W 4 ?@0x3800001018 0x3",
        "R 4 ?@0x3800001008 0x0",
        "W 2 tdev.QUEUE[0][15:0] 0xbeef ADDR=partial",
        "R 1 tdev.STATUS[7:0] 0x0 READY=0 ERR=0",
    ]
    accesses = [r for r in read_records(log.read_text().splitlines()) if isinstance(r, Access)]
    assert [(a.phys, a.value) for a in accesses] == [
        (0x3800001018, 3), (0x3800001008, 0), (0xF7D00010, 0xBEEF), (0xF7D00004, 0)
    ]  # fmt: skip
    # the log goes elsewhere than the decoded lines, and a map must be one
    no_log = subprocess.run([*argv[:5], *argv[7:], *regs], capture_output=True, text=True, env=env)
    assert (no_log.returncode, no_log.stderr) == (
        2,
        "kmmio: --regs shows decoded accesses on standard error: give -o FILE (or -o -) for the log\n",
    )
    bad = subprocess.run([*argv, "--regs", str(PROGRAM), "--", "true"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a register map" in bad.stderr


def test_traced_access_carries_its_register(machine: Machine, devmap: Path, tmp_path: Path) -> None:
    """The API: ``Tracer(..., regmap=)`` gives each TracedAccess its decoded registers."""
    from kmmio.maps import load_map
    from kmmio.mmiotrace import TracedAccess

    bar0 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource0", 0x20000)
    bar2 = sized(machine.sys / "bus/pci/devices/0000:03:00.0/resource2", 0x4000)
    seen: list[TracedAccess] = []
    tracer = Tracer(["resource2"], lambda r: None, seen.append, regmap=load_map(str(TDEV), 0xF7D00000),
                    roots=machine.roots)  # fmt: skip
    tracer.spawn([str(devmap), "pci", bar0, bar2])
    assert tracer.run() == 0
    assert [a.register for a in seen] == ["tdev.QUEUE[0]", "tdev.STATUS"]
    assert seen[1].decoded is not None
    assert {fv.field.name: fv.value for fv in seen[1].decoded.registers[0].fields} == {"READY": 0, "ERR": 0}
    assert all(a.ts > 0 for a in seen)
