"""place(): where a mapping's first byte is, on the fake machine of devices_fake.py.

VFIO cannot be run here (no IOMMU, no vfio-pci device, no /dev/vfio on this VM): the region
infos that ``VFIO_DEVICE_GET_REGION_INFO`` would return are given as tables through
``kmmio.devices.locate.region_source``, and the program's fds and fdinfo are a fake /proc.  The borrowing of
an fd and the ioctl path are run for real on non-VFIO fds in test_devices_devfd.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from devices_fake import Machine, fake_process

import kmmio.devices.locate as locate
from kmmio.devices import VFIO_ANON_PATH, Place, RegionInfo, Roots, kind_of, phys_at, place
from kmmio.errors import TraceeError, UsageError

PAGE = os.sysconf("SC_PAGE_SIZE")
NIC = "devices/pci0000:00/0000:00:1c.0/0000:03:00.0"
PID = 4242


def sysfile(m: Machine, rel: str) -> str:
    return str(m.sys / rel)


# --- PCI sysfs resourceN ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "offset", "expected"),
    [
        # 64-bit BAR, mmap offset
        ("resource0", 0x1000, Place(0x3800001000, "pci", "0000:03:00.0", "bar 0", 0x1000)),
        ("resource2", 0, Place(0xF7D00000, "pci", "0000:03:00.0", "bar 2", 0)),
        ("resource0_wc", 0x2000, Place(0x3800002000, "pci", "0000:03:00.0", "bar 0", 0x2000)),
        # the offset /proc/PID/maps shows: pci_mmap_resource_range() made vm_pgoff the frame
        ("resource0", 0x3800003000, Place(0x3800003000, "pci", "0000:03:00.0", "bar 0", 0x3000)),
        ("resource2", 0xF7D01000, Place(0xF7D01000, "pci", "0000:03:00.0", "bar 2", 0x1000)),
    ],
)
def test_pci_resource(machine: Machine, name: str, offset: int, expected: Place) -> None:
    assert place(sysfile(machine, f"{NIC}/{name}"), offset, roots=machine.roots) == expected


def test_pci_resource_by_its_bus_link_path(machine: Machine) -> None:
    path = sysfile(machine, "bus/pci/devices/0000:03:00.0/resource2")
    assert place(path, 0x40, roots=machine.roots) == Place(0xF7D00040, "pci", "0000:03:00.0", "bar 2", 0x40)


def test_describe_and_phys_at(machine: Machine) -> None:
    p = place(sysfile(machine, f"{NIC}/resource0"), 0x1000, roots=machine.roots)
    assert p is not None
    assert p.describe() == "pci 0000:03:00.0 bar 0"
    assert phys_at(p, 0x18) == 0x3800001018
    assert Place(0x1000, "mem").describe() == "mem"


@pytest.mark.parametrize(
    "rel", [f"{NIC}/config", f"{NIC}/resource", f"{NIC}/resource7", "devices/platform/x/resource0"]
)
def test_other_sysfs_files_are_not_placed(machine: Machine, rel: str) -> None:
    assert place(sysfile(machine, rel), 0, roots=machine.roots) is None


def test_a_malformed_resource_file_names_itself(machine: Machine) -> None:
    (machine.sys / NIC / "resource").write_text("garbage\n")
    with pytest.raises(UsageError, match=r"0000:03:00\.0/resource: line 1"):
        place(sysfile(machine, f"{NIC}/resource0"), 0, roots=machine.roots)


# --- /dev/mem, other paths ----------------------------------------------------------------------


def test_dev_mem_offset_is_physical(machine: Machine) -> None:
    assert place(str(machine.dev / "mem"), 0xFED00000, roots=machine.roots) == Place(0xFED00000, "mem")


@pytest.mark.parametrize("path", ["/dev/shm/regs", "/tmp/x", "", "[heap]", "anon_inode:[io_uring]"])
def test_other_paths_are_not_devices(machine: Machine, path: str) -> None:
    assert place(path, 0, roots=machine.roots) is None
    assert kind_of(path, machine.roots) is None


def test_kind_of(machine: Machine) -> None:
    assert kind_of(sysfile(machine, f"{NIC}/resource2"), machine.roots) == "pci"
    assert kind_of(str(machine.dev / "uio0"), machine.roots) == "uio"
    assert kind_of(str(machine.dev / "vfio/devices/vfio0"), machine.roots) == "vfio"
    assert kind_of(VFIO_ANON_PATH, machine.roots) == "vfio"
    assert kind_of(str(machine.dev / "mem"), machine.roots) == "mem"
    assert kind_of(str(machine.dev / "null"), machine.roots) is None


def test_roots_from_env(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    assert Roots.from_env({}) == Roots(Path("/sys"), Path("/dev"))
    assert Roots.from_env({"KMMIO_SYSFS": "", "KMMIO_DEV": "/x/dev"}) == Roots(Path("/sys"), Path("/x/dev"))
    monkeypatch.setenv("KMMIO_SYSFS", str(machine.sys))
    monkeypatch.setenv("KMMIO_DEV", str(machine.dev))
    assert place(str(machine.dev / "mem"), 5) == Place(5, "mem")
    expected = Place(0xF7D00008, "pci", "0000:03:00.0", "bar 2", 8)
    assert place(sysfile(machine, f"{NIC}/resource2"), 8) == expected


def test_roots_through_a_symlink(machine: Machine, tmp_path: Path) -> None:
    """/proc/PID/maps shows resolved paths: a root given through a link still matches."""
    alias = tmp_path / "alias"
    alias.symlink_to(machine.root)
    roots = Roots(alias / "sys", alias / "dev")
    assert place(str(machine.dev / "mem"), 7, roots=roots) == Place(7, "mem")


# --- UIO ----------------------------------------------------------------------------------------


def test_uio_map1_at_its_mmap_offset(machine: Machine) -> None:
    """Map 1 is mmap offset 1 page; its first byte is at addr; the registers, 0x100 into the
    mapping (the map's ``offset``), at addr + 0x100."""
    p = place(str(machine.dev / "uio0"), 1 * PAGE, roots=machine.roots)
    assert p == Place(0xF7D00000, "uio", "uio0", "map 1", PAGE)
    assert phys_at(p, 0x100) == 0xF7D00100
    assert p.describe() == "uio uio0 map 1"


def test_uio_map0_and_the_private_mapping_form(machine: Machine) -> None:
    uio0 = str(machine.dev / "uio0")
    assert place(uio0, 0, roots=machine.roots) == Place(0x3800000000, "uio", "uio0", "map 0", 0)
    # a private mapping: remap_pfn_range() set vm_pgoff to the frame, /proc/PID/maps shows it
    assert place(uio0, 0x3800000000 + PAGE, roots=machine.roots) == Place(
        0x3800000000 + PAGE, "uio", "uio0", "map 0", PAGE
    )


def test_uio_offset_of_no_map_is_an_error(machine: Machine) -> None:
    with pytest.raises(UsageError, match=r"uio/uio0/maps: no map of uio0 holds mmap offset 0x3000"):
        place(str(machine.dev / "uio0"), 3 * PAGE, roots=machine.roots)


def test_uio_without_maps_stands_for_its_pci_bars(machine: Machine) -> None:
    p = place(str(machine.dev / "uio1"), 2 * PAGE, roots=machine.roots)
    assert p == Place(0xFEBF0000, "uio", "uio1", "pci 0000:00:02.0 bar 2", 2 * PAGE)
    assert place(str(machine.dev / "uio1"), 1 * PAGE, roots=machine.roots) is None  # BAR1 unused


def test_uio_of_kernel_memory_has_no_physical_address(machine: Machine) -> None:
    assert place(str(machine.dev / "uio2"), 0, roots=machine.roots) is None


def test_uio_node_without_sysfs_entry(machine: Machine) -> None:
    (machine.dev / "uio9").write_bytes(b"")
    assert place(str(machine.dev / "uio9"), 0, roots=machine.roots) is None


def test_malformed_uio_map_names_the_file(machine: Machine) -> None:
    (machine.sys / NIC / "uio/uio0/maps/map1/addr").write_text("f7d00000\n")
    with pytest.raises(UsageError, match=r"maps/map1/addr: not a 0x-prefixed hex number"):
        place(str(machine.dev / "uio0"), PAGE, roots=machine.roots)


# --- VFIO ---------------------------------------------------------------------------------------

# vfio-pci's layout (index << 40), and a driver that packs its regions (the ioctl is the contract)
SHIFTED = [RegionInfo(0, 7, 0x4000, 0), RegionInfo(1, 0, 0, 1 << 40), RegionInfo(2, 7, 0x1000, 2 << 40)]
SHIFTED += [RegionInfo(i, 0, 0, i << 40) for i in range(3, 7)] + [RegionInfo(7, 3, 0x100, 7 << 40)]
PACKED = [
    RegionInfo(0, 7, 0x4000, 0x10000),
    RegionInfo(2, 7, 0x1000, 0x20000),
    RegionInfo(7, 3, 0x100, 0x30000),
]


@pytest.fixture
def regions(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[tuple[int, int], list[RegionInfo]]]:
    """What VFIO_DEVICE_GET_REGION_INFO would say, per (pid, fd); a missing one fails as
    pidfd_getfd would (EBADF)."""
    table: dict[tuple[int, int], list[RegionInfo]] = {}

    def source(pid: int, fd: int) -> list[RegionInfo]:
        if (pid, fd) not in table:
            raise TraceeError("pidfd_getfd", 9, pid)
        return table[(pid, fd)]

    monkeypatch.setattr(locate, "region_source", source)
    yield table


def cdev(m: Machine) -> str:
    return str(m.dev / "vfio" / "devices" / "vfio0")


@pytest.mark.parametrize(
    ("layout", "offset", "expected"),
    [
        (SHIFTED, 0x1000, Place(0xFE801000, "vfio", "0001:00:00.0", "bar 0", 0x1000)),
        (SHIFTED, (2 << 40) + 0x800, Place(0xFE900800, "vfio", "0001:00:00.0", "bar 2", (2 << 40) + 0x800)),
        (PACKED, 0x20000, Place(0xFE900000, "vfio", "0001:00:00.0", "bar 2", 0x20000)),
        (PACKED, 0x10000 + 0x2000, Place(0xFE802000, "vfio", "0001:00:00.0", "bar 0", 0x12000)),
    ],
)
def test_vfio_cdev_by_region_info(
    machine: Machine,
    regions: dict[tuple[int, int], list[RegionInfo]],
    layout: list[RegionInfo],
    offset: int,
    expected: Place,
) -> None:
    regions[(PID, 5)] = layout
    assert place(cdev(machine), offset, pid=PID, fd=5, roots=machine.roots) == expected


def test_vfio_cdev_finds_the_programs_fd(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    regions[(PID, 6)] = PACKED
    fake_process(machine, PID, {3: "/dev/null", 6: cdev(machine)})
    p = place(cdev(machine), 0x20010, pid=PID, roots=machine.roots)
    assert p == Place(0xFE900010, "vfio", "0001:00:00.0", "bar 2", 0x20010)


def test_vfio_without_region_info_reads_a_physical_offset(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    """Before 6.10 vfio_pci_core_mmap() made vm_pgoff the BAR's frame: /proc/PID/maps shows
    the physical address, which places the mapping even with no fd to ask."""
    assert place(cdev(machine), 0xFE802000, roots=machine.roots) == Place(
        0xFE802000, "vfio", "0001:00:00.0", "bar 0", 0xFE802000
    )
    assert place(cdev(machine), 0xFE802000, pid=PID, fd=99, roots=machine.roots) == Place(
        0xFE802000, "vfio", "0001:00:00.0", "bar 0", 0xFE802000
    )
    assert (
        place(cdev(machine), 0x1000, roots=machine.roots) is None
    )  # a region offset, nothing to read it with


def test_vfio_anon_fd_named_by_fdinfo(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    regions[(PID, 3)] = SHIFTED
    syspath = "vfio-device-syspath: /sys/devices/pci0001:00/0001:00:00.0\n"
    fake_process(machine, PID, {3: VFIO_ANON_PATH}, {3: syspath})
    expected = Place(0xFE800040, "vfio", "0001:00:00.0", "bar 0", 0x40)
    assert place(VFIO_ANON_PATH, 0x40, pid=PID, fd=3, roots=machine.roots) == expected
    assert place(VFIO_ANON_PATH, 0x40, pid=PID, roots=machine.roots) == expected  # fd found
    assert place(VFIO_ANON_PATH, 0x40, roots=machine.roots) is None  # no program: nothing to read


def test_vfio_anon_fd_found_in_the_programs_group(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    """Before 6.18 fdinfo names no device: the program's open group (/dev/vfio/7) has it,
    told by the BAR sizes the fd reports."""
    regions[(PID, 3)] = SHIFTED
    fake_process(machine, PID, {3: VFIO_ANON_PATH, 4: str(machine.dev / "vfio" / "7")})
    p = place(VFIO_ANON_PATH, (2 << 40) + 4, pid=PID, fd=3, roots=machine.roots)
    assert p == Place(0xFE900004, "vfio", "0001:00:00.0", "bar 2", (2 << 40) + 4)


def test_vfio_anon_fd_that_cannot_be_told(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    regions[(PID, 3)] = [RegionInfo(0, 7, 0x8000, 0)]  # BAR0 of another size: not this device
    fake_process(machine, PID, {3: VFIO_ANON_PATH, 4: str(machine.dev / "vfio" / "7")})
    assert place(VFIO_ANON_PATH, 0, pid=PID, fd=3, roots=machine.roots) is None
    fake_process(machine, PID + 1, {3: VFIO_ANON_PATH})  # no group open, no fdinfo line
    assert place(VFIO_ANON_PATH, 0, pid=PID + 1, fd=3, roots=machine.roots) is None


def test_vfio_two_devices_without_fd_is_ambiguous(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    other = machine.device_dir("0000:03:00.0")
    fake_process(
        machine,
        PID,
        {3: VFIO_ANON_PATH, 5: VFIO_ANON_PATH},
        {
            3: "vfio-device-syspath: /sys/devices/pci0001:00/0001:00:00.0\n",
            5: f"vfio-device-syspath: /sys/{other.relative_to(machine.sys.resolve())}\n",
        },
    )
    regions[(PID, 3)] = regions[(PID, 5)] = SHIFTED
    assert place(VFIO_ANON_PATH, 0, pid=PID, roots=machine.roots) is None
    assert place(VFIO_ANON_PATH, 0, pid=PID, fd=5, roots=machine.roots) == Place(
        0x3800000000, "vfio", "0000:03:00.0", "bar 0", 0
    )


def test_vfio_cdev_of_a_non_pci_device(
    machine: Machine, regions: dict[tuple[int, int], list[RegionInfo]]
) -> None:
    plat = machine.sys / "devices" / "platform" / "fff51000.ethernet"
    (plat / "vfio-dev" / "vfio1").mkdir(parents=True)
    (plat / "vfio-dev" / "vfio1" / "device").symlink_to("../..")
    (machine.sys / "class" / "vfio-dev" / "vfio1").symlink_to(plat / "vfio-dev" / "vfio1")
    (machine.dev / "vfio" / "devices" / "vfio1").write_bytes(b"")
    regions[(PID, 5)] = SHIFTED
    assert place(str(machine.dev / "vfio/devices/vfio1"), 0, pid=PID, fd=5, roots=machine.roots) is None
