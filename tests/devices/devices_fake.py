"""A fake machine laid out as a real one lays out sysfs, /dev and /proc (``build``).

Devices (domain 0000 unless said):

* 00:00.0  host bridge, no BARs, no driver
* 00:02.0  no driver: BAR0 32-bit prefetchable, BAR2 32-bit, shadowed ROM (a VGA card's)
* 00:1c.0  PCIe root port (``pcieport``, irq 24): 17 resource lines, bridge windows at the end
* 03:00.0  behind 00:1c.0 (``igb``, irq 16): BAR0+1 a 64-bit BAR above 4 GiB, BAR2 32-bit,
           BAR4 I/O, enabled ROM; 13 resource lines (``CONFIG_PCI_IOV``); ``resource0``,
           ``resource2``; UIO device ``uio0`` with two maps
* 03:10.0  an SR-IOV virtual function of 03:00.0 (``physfn`` link, ``igbvf``)
* 0001:00:00.0  domain 1 (``vfio-pci``, irq 33): the VFIO device ``vfio0``, IOMMU group 7
* ``uio1``: a UIO device of 00:02.0 without maps (classic uio_pci_generic)
* ``uio2``: a UIO device whose map is kernel memory (``addr`` a kernel virtual address)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kmmio.devices import Roots

ZERO = (0, 0, 0)


def resource_text(lines: list[tuple[int, int, int]]) -> str:
    return "".join(f"0x{s:016x} 0x{e:016x} 0x{f:016x}\n" for s, e, f in lines)


def link(at: Path, target: Path) -> None:
    """A relative symbolic link, as sysfs makes them."""
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(os.path.relpath(target, at.parent))


@dataclass(frozen=True)
class Machine:
    root: Path
    roots: Roots

    @property
    def sys(self) -> Path:
        return self.roots.sys

    @property
    def dev(self) -> Path:
        return self.roots.dev

    def device_dir(self, bdf: str) -> Path:
        return (self.sys / "bus" / "pci" / "devices" / bdf).resolve()


def add_pci(
    sys: Path,
    path: str,
    vendor: int,
    device: int,
    irq: int,
    resources: list[tuple[int, int, int]],
    driver: str | None,
    files: tuple[str, ...] = (),
) -> Path:
    d = sys / "devices" / path
    d.mkdir(parents=True)
    (d / "vendor").write_text(f"0x{vendor:04x}\n")
    (d / "device").write_text(f"0x{device:04x}\n")
    (d / "irq").write_text(f"{irq}\n")
    (d / "resource").write_text(resource_text(resources))
    (d / "config").write_bytes(bytes(256))
    for name in files:
        (d / name).write_bytes(b"")
    if driver:
        drv = sys / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        link(d / "driver", drv)
    link(sys / "bus" / "pci" / "devices" / d.name, d)
    return d


def build(root: Path) -> Machine:
    sys, dev, proc = root / "sys", root / "dev", root / "proc"
    for p in (sys, dev, proc):
        p.mkdir(parents=True)
    iov = [ZERO] * 6
    add_pci(sys, "pci0000:00/0000:00:00.0", 0x8086, 0x0D57, 0, [ZERO] * 7, None)
    vga = add_pci(
        sys,
        "pci0000:00/0000:00:02.0",
        0x1234,
        0x1111,
        0,
        [
            (0xFD000000, 0xFDFFFFFF, 0x42208),
            ZERO,
            (0xFEBF0000, 0xFEBF0FFF, 0x40200),
            ZERO,
            ZERO,
            ZERO,
            (0xC0000, 0xDFFFF, 0x4202),  # IORESOURCE_MEM | READONLY | ROM_SHADOW
            *iov,
        ],
        None,
    )
    windows = [
        (0xE000, 0xEFFF, 0x101),
        (0xF7B00000, 0xF7DFFFFF, 0x200),
        (0x3800000000, 0x38001FFFFF, 0x102201),
    ]
    add_pci(sys, "pci0000:00/0000:00:1c.0", 0x8086, 0xA110, 24, [ZERO] * 13 + [*windows, ZERO], "pcieport")
    nic = add_pci(
        sys,
        "pci0000:00/0000:00:1c.0/0000:03:00.0",
        0x8086,
        0x1533,
        16,
        [
            (0x3800000000, 0x380001FFFF, 0x140204),  # 64-bit, non-prefetchable
            ZERO,  # its upper half
            (0xF7D00000, 0xF7D03FFF, 0x40200),  # 32-bit
            ZERO,
            (0xE000, 0xE01F, 0x40101),  # I/O
            ZERO,
            (0xF7B00000, 0xF7B7FFFF, 0x46201),  # ROM, enabled (IORESOURCE_ROM_ENABLE)
            *iov,
        ],
        "igb",
        files=("resource0", "resource2", "resource0_wc"),
    )
    vf = add_pci(
        sys,
        "pci0000:00/0000:00:1c.0/0000:03:10.0",
        0x8086,
        0x1520,
        0,
        [(0x3800100000, 0x3800103FFF, 0x140204), *[ZERO] * 6, *iov],
        "igbvf",
    )
    link(vf / "physfn", nic)
    vfio = add_pci(
        sys,
        "pci0001:00/0001:00:00.0",
        0x1B36,
        0x0010,
        33,
        [(0xFE800000, 0xFE803FFF, 0x140204), ZERO, (0xFE900000, 0xFE900FFF, 0x40200), *[ZERO] * 4, *iov],
        "vfio-pci",
    )
    # UIO: uio0 under 03:00.0 with two maps (map1's registers start 0x100 into its page)
    uio0 = nic / "uio" / "uio0"
    for i, (addr, size, offs, name) in enumerate(
        [(0x3800000000, 0x20000, 0, "regs"), (0xF7D00000, 0x200, 0x100, "doorbells")]
    ):
        m = uio0 / "maps" / f"map{i}"
        m.mkdir(parents=True)
        (m / "addr").write_text(f"0x{addr:016x}\n")
        (m / "size").write_text(f"0x{size:016x}\n")
        (m / "offset").write_text(f"0x{offs:x}\n")
        (m / "name").write_text(f"{name}\n")
    link(uio0 / "device", nic)
    link(sys / "class" / "uio" / "uio0", uio0)
    uio1 = vga / "uio" / "uio1"
    uio1.mkdir(parents=True)
    link(uio1 / "device", vga)
    link(sys / "class" / "uio" / "uio1", uio1)
    uio2 = sys / "devices" / "platform" / "dmem.0" / "uio" / "uio2"
    m = uio2 / "maps" / "map0"
    m.mkdir(parents=True)
    (m / "addr").write_text("0xffff888012340000\n")
    (m / "size").write_text("0x0000000000001000\n")
    (m / "offset").write_text("0x0\n")
    link(sys / "class" / "uio" / "uio2", uio2)
    for name in ("uio0", "uio1", "uio2", "mem"):
        (dev / name).write_bytes(b"")
    # VFIO: the cdev vfio0 of 0001:00:00.0, IOMMU group 7
    vdev = vfio / "vfio-dev" / "vfio0"
    vdev.mkdir(parents=True)
    link(vdev / "device", vfio)
    link(sys / "class" / "vfio-dev" / "vfio0", vdev)
    link(sys / "kernel" / "iommu_groups" / "7" / "devices" / vfio.name, vfio)
    (dev / "vfio" / "devices").mkdir(parents=True)
    (dev / "vfio" / "devices" / "vfio0").write_bytes(b"")
    (dev / "vfio" / "7").write_bytes(b"")
    return Machine(root, Roots(sys, dev, proc))


def fake_process(m: Machine, pid: int, fds: dict[int, str], fdinfo: dict[int, str] | None = None) -> None:
    """``<proc>/PID/fd/N`` links (targets as the kernel shows them) and ``fdinfo/N`` texts."""
    fd_dir = m.roots.proc / str(pid) / "fd"
    info_dir = m.roots.proc / str(pid) / "fdinfo"
    fd_dir.mkdir(parents=True, exist_ok=True)
    info_dir.mkdir(parents=True, exist_ok=True)
    for n, target in fds.items():
        (fd_dir / str(n)).symlink_to(target)
        text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1063\n"
        (info_dir / str(n)).write_text(text + (fdinfo or {}).get(n, ""))
