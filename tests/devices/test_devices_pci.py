"""PCIDEV records from sysfs: a fake machine field by field, and this machine against the kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from devices_fake import Machine

from kmmio.devices import Roots, parse_proc_pci_devices, pci_device_dirs, pci_devices
from kmmio.errors import UsageError
from kmmio.trace import format_record
from kmmio.trace.records import PciDev

Z7 = (0, 0, 0, 0, 0, 0, 0)

EXPECTED = [
    PciDev(0x0000, 0x80860D57, 0, Z7, Z7, ""),
    PciDev(
        0x0010,
        0x12341111,
        0,
        (0xFD000008, 0, 0xFEBF0000, 0, 0, 0, 0xC0002),
        (0x1000000, 0, 0x1000, 0, 0, 0, 0x20000),
        "",
    ),
    PciDev(0x00E0, 0x8086A110, 24, Z7, Z7, "pcieport"),
    PciDev(
        0x0300,
        0x80861533,
        16,
        (0x3800000004, 0, 0xF7D00000, 0, 0xE001, 0, 0xF7B00001),
        (0x20000, 0, 0x4000, 0, 0x20, 0, 0x80000),
        "igb",
    ),
    PciDev(
        0x0000,
        0x1B360010,
        33,
        (0xFE800004, 0, 0xFE900000, 0, 0, 0, 0),
        (0x4000, 0, 0x1000, 0, 0, 0, 0),
        "vfio-pci",
    ),
    PciDev(0x0380, 0x80861520, 0, (0x3800100004, 0, 0, 0, 0, 0, 0), (0x4000, 0, 0, 0, 0, 0, 0), "igbvf"),
]


def test_fake_machine_records_exactly(machine: Machine) -> None:
    assert pci_devices(machine.roots) == EXPECTED


def test_kernel_order_bus_first_then_bridges_then_domains_then_vfs(machine: Machine) -> None:
    names = [d.name for d in pci_device_dirs(machine.roots)]
    assert names == [
        "0000:00:00.0",
        "0000:00:02.0",
        "0000:00:1c.0",
        "0000:03:00.0",
        "0001:00:00.0",
        "0000:03:10.0",
    ]


def proc_line(d: PciDev) -> str:
    """A line as show_device() (drivers/pci/proc.c) prints it: tabs, %16llx, driver or nothing."""
    head = f"{d.devfn:04x}\t{d.vendor_device:08x}\t{d.irq:x}"
    cols = "".join(f"\t{v:16x}" for v in (*d.starts, *d.sizes))
    return f"{head}{cols}\t{d.driver}\n"


def test_proc_format_round_trips(machine: Machine) -> None:
    text = "".join(proc_line(d) for d in EXPECTED)
    assert parse_proc_pci_devices(text) == pci_devices(machine.roots)


def test_proc_parser_reads_the_kernels_padding_and_empty_driver() -> None:
    line = "0008\t1af41045\t0\t      4000000004" + "\t               0" * 6 + "\t           80000"
    line += "\t               0" * 6 + "\tvirtio-pci\n"
    bare = "0000\t80860d57\t0" + "\t               0" * 14 + "\t\n"
    assert parse_proc_pci_devices(line + bare) == [
        PciDev(8, 0x1AF41045, 0, (0x4000000004, 0, 0, 0, 0, 0, 0), (0x80000, 0, 0, 0, 0, 0, 0), "virtio-pci"),
        PciDev(0, 0x80860D57, 0, Z7, Z7, ""),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("resource", "0x0 0x0\n" * 7, "resource: line 1 is not 'start end flags' in hex"),
        ("resource", "0x0 0x0 0xzz\n" * 7, "resource: line 1 is not"),
        ("resource", "0x0 0x0 0x0\n" * 6, "resource: 6 resource lines"),
        ("vendor", "8086\n", "vendor: not a 0x-prefixed hex number"),
        ("device", "0xgg\n", "device: not a 0x-prefixed hex number"),
        ("irq", "0x10\n", "irq: not a decimal number"),
    ],
)
def test_a_malformed_file_is_one_line_naming_it(
    machine: Machine, name: str, content: str, message: str
) -> None:
    target = machine.device_dir("0000:03:00.0") / name
    target.write_text(content)
    with pytest.raises(UsageError) as info:
        pci_devices(machine.roots)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(target)) and message in text


def test_a_missing_attribute_is_named(machine: Machine) -> None:
    target = machine.device_dir("0000:00:02.0") / "irq"
    target.unlink()
    with pytest.raises(UsageError, match=r"0000:00:02\.0/irq: cannot read"):
        pci_devices(machine.roots)


def test_no_pci_bus_no_devices(tmp_path: Path) -> None:
    assert pci_devices(Roots(tmp_path / "sys", tmp_path / "dev")) == []


def test_a_busy_resource_without_driver_is_compat(machine: Machine) -> None:
    """pci_dev_driver(): no driver, but a resource marked IORESOURCE_BUSY: "compat"."""
    path = machine.device_dir("0000:00:02.0") / "resource"
    lines = path.read_text().splitlines()
    start, end, flags = lines[2].split()
    lines[2] = f"{start} {end} 0x{int(flags, 16) | 0x80000000:016x}"
    path.write_text("\n".join(lines) + "\n")
    assert pci_devices(machine.roots)[1].driver == "compat"


REAL_SYS = Path("/sys/bus/pci/devices")
REAL_PROC = Path("/proc/bus/pci/devices")


@pytest.mark.skipif(not REAL_SYS.exists() and not REAL_PROC.exists(), reason="this machine has no PCI bus")
def test_this_machine_matches_proc_bus_pci_devices_field_by_field() -> None:
    """The kernel's own list (show_device()) against ours from sysfs, in the kernel's order."""
    assert REAL_PROC.exists(), "sysfs lists PCI devices but /proc/bus/pci/devices is missing"
    kernel = parse_proc_pci_devices(REAL_PROC.read_text())
    ours = pci_devices(Roots(Path("/sys"), Path("/dev")))
    assert len(ours) == len(kernel)
    for mine, theirs in zip(ours, kernel, strict=True):
        for field in ("devfn", "vendor_device", "irq", "starts", "sizes", "driver"):
            assert getattr(mine, field) == getattr(theirs, field), (field, mine, theirs)
    # and the log line is the kernel's line with single spaces (mmio_print_pcidev())
    for mine, line in zip(ours, REAL_PROC.read_text().splitlines(), strict=True):
        fields = line.split("\t")
        assert format_record(mine) == "PCIDEV " + " ".join(f.strip() for f in fields[:17]) + " " + fields[17]
