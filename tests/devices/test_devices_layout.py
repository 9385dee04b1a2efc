"""The pure parts: parsing sysfs/procfs text, PCIDEV fields, the kernel's device order, and the
placement arithmetic of resourceN, UIO and VFIO (table-driven)."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest

from kmmio.devices.layout import (
    VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_REGION_INFO,
    bar_phys,
    kernel_order,
    pack_device_info_request,
    pack_region_info_request,
    pcidev,
    region_at,
    region_name,
    regions_match_bars,
    uio_addr_is_physical,
    uio_phys,
    unpack_device_info,
    unpack_region_info,
    vfio_pgoff_is_pfn,
    vfio_phys,
)
from kmmio.devices.model import Bdf, RegionInfo, Resource, UioMap
from kmmio.devices.parse import (
    parse_bdf,
    parse_dec_attr,
    parse_fdinfo_syspath,
    parse_hex_attr,
    parse_host_bridge,
    parse_resource,
)
from kmmio.errors import UsageError

Z = Resource(0, 0, 0)


@pytest.mark.parametrize(
    ("resource", "start", "size"),
    [
        (Z, 0, 0),  # unused
        (Resource(0xF7C00000, 0xF7C1FFFF, 0x40200), 0xF7C00000, 0x20000),  # 32-bit memory
        (Resource(0x3800000000, 0x380001FFFF, 0x140204), 0x3800000004, 0x20000),  # 64-bit
        (Resource(0xE0000000, 0xEFFFFFFF, 0x14220C), 0xE000000C, 0x10000000),  # 64-bit prefetchable
        (Resource(0xE000, 0xE01F, 0x40101), 0xE001, 0x20),  # I/O
        (Resource(0xF7B00000, 0xF7B7FFFF, 0x46201), 0xF7B00001, 0x80000),  # ROM, enabled
        (Resource(0xF7B00000, 0xF7B7FFFF, 0x46200), 0xF7B00000, 0x80000),  # ROM, disabled
        (Resource(0xC0000, 0xDFFFF, 0x4202), 0xC0002, 0x20000),  # ROM shadowed at 0xc0000
        (Resource(0, 0x3FFF, 0x20040200), 0, 0x4000),  # unassigned (IORESOURCE_UNSET): size kept
        (Resource(0x1000, 0x1000, 0x200), 0x1000, 0),  # start == end: the kernel's rule gives 0
    ],
)
def test_pcidev_start_and_size(resource: Resource, start: int, size: int) -> None:
    assert (resource.pcidev_start, resource.size) == (start, size)


@pytest.mark.parametrize(
    ("flags", "driver", "expected"),
    [(0x200, "igb", "igb"), (0x200, "", ""), (0x80000200, "", "compat"), (0x80000200, "igb", "igb")],
)
def test_pcidev_driver(flags: int, driver: str, expected: str) -> None:
    res = [Resource(0xF0000000, 0xF0000FFF, flags)] + [Z] * 12
    rec = pcidev(Bdf(0, 3, 0x1F, 7), 0x8086, 0x1533, 16, res, driver)
    assert (rec.devfn, rec.vendor_device, rec.driver) == (0x03FF, 0x80861533, expected)
    assert len(rec.starts) == len(rec.sizes) == 7


def test_bdf_and_host_bridge_names() -> None:
    assert parse_bdf("0000:03:00.0") == Bdf(0, 3, 0, 0)
    assert parse_bdf("10000:e0:1f.7") == Bdf(0x10000, 0xE0, 0x1F, 7)  # a VMD domain
    assert str(Bdf(0x10000, 0xE0, 0x1F, 7)) == "10000:e0:1f.7"
    for bad in ("0000:03:00", "0000:03:20.0", "0000:03:00.8", "uio0", "pci0000:00", "0000:3:00.0"):
        assert parse_bdf(bad) is None
    assert parse_host_bridge("pci0000:00") == (0, 0)
    assert parse_host_bridge("pci10000:e0") == (0x10000, 0xE0)
    assert parse_host_bridge("0000:00:00.0") is None


def test_resource_file_lines() -> None:
    text = "".join(f"0x{s:016x} 0x{e:016x} 0x{f:016x}\n" for s, e, f in [(1, 2, 3)] + [(0, 0, 0)] * 12)
    res = parse_resource(text, "r")
    assert len(res) == 13 and res[0] == Resource(1, 2, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "r: 0 resource lines"),
        ("0x0 0x0 0x0\n" * 6, "r: 6 resource lines"),
        ("0x0 0x0\n" * 7, "r: line 1 is not"),
        ("0x0 0x0 0x0 0x0\n" * 7, "r: line 1 is not"),
        ("0x0 0x0 0x0\n" * 3 + "0x0 zz 0x0\n" + "0x0 0x0 0x0\n" * 3, "r: line 4 is not"),
    ],
)
def test_bad_resource_files(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_resource(text, "r")


@pytest.mark.parametrize(
    ("text", "value"), [("0x8086\n", 0x8086), ("0x0000003800000000\n", 0x3800000000), ("0X1f", 0x1F)]
)
def test_hex_attributes(text: str, value: int) -> None:
    assert parse_hex_attr(text, "a") == value


@pytest.mark.parametrize("text", ["8086", "", "0x", "0xzz", "-0x1"])
def test_bad_hex_attributes(text: str) -> None:
    with pytest.raises(UsageError, match=r"^a: not a 0x-prefixed hex number"):
        parse_hex_attr(text, "a")


def test_decimal_attributes() -> None:
    assert parse_dec_attr("16\n", "irq") == 16
    for bad in ("0x10", "", "-1", "1 2"):
        with pytest.raises(UsageError, match=r"^irq: not a decimal number"):
            parse_dec_attr(bad, "irq")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1063\n", None),
        (
            "pos:\t0\nvfio-device-syspath: /sys/devices/pci0000:00/0000:00:03.0\n",
            "/sys/devices/pci0000:00/0000:00:03.0",
        ),
        ("vfio-device-syspath: \n", None),
    ],
)
def test_fdinfo_syspath(text: str, path: str | None) -> None:
    assert parse_fdinfo_syspath(text) == path


# --- the kernel's order -------------------------------------------------------------------------


def P(*parts: str) -> tuple[tuple[str, ...], bool]:
    return parts, False


def VF(*parts: str) -> tuple[tuple[str, ...], bool]:
    return parts, True


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        # a bus's slots first, then each bridge's subtree, depth first, in devfn order
        (
            [
                P("pci0000:00", "0000:00:1c.0", "0000:02:00.0"),
                P("pci0000:00", "0000:00:1c.0"),
                P("pci0000:00", "0000:00:1b.0", "0000:01:00.0", "0000:05:00.0"),
                P("pci0000:00", "0000:00:1b.0"),
                P("pci0000:00", "0000:00:1b.0", "0000:01:00.0"),
                P("pci0000:00", "0000:00:1b.0", "0000:01:00.1"),
                P("pci0000:00", "0000:00:00.0"),
            ],
            [6, 3, 1, 4, 5, 2, 0],  # not by bus number: 05 (under 1b.0) before 02 (under 1c.0)
        ),
        # domains by number; a VMD domain (below a PCI device) after the others; VFs last
        (
            [
                P("pci0000:00", "0000:00:0e.0", "pci10000:e0", "10000:e0:06.0"),
                VF("pci0000:00", "0000:00:03.0", "0000:03:10.1"),
                P("pci0001:00", "0001:00:00.0"),
                P("pci0000:00", "0000:00:0e.0"),
                VF("pci0000:00", "0000:00:03.0", "0000:03:10.0"),
                P("platform", "soc", "pci0000:80", "0000:80:00.0"),
            ],
            [3, 5, 2, 0, 4, 1],
        ),
        ([], []),
    ],
)
def test_kernel_order(devices: list[tuple[tuple[str, ...], bool]], expected: list[int]) -> None:
    assert kernel_order(devices) == expected


# --- resourceN, UIO -----------------------------------------------------------------------------

BAR64 = Resource(0x3800000000, 0x380001FFFF, 0x140204)


@pytest.mark.parametrize(
    ("bar", "offset", "phys"),
    [
        (BAR64, 0, 0x3800000000),
        (BAR64, 0x1F000, 0x380001F000),
        (BAR64, 0x3800001000, 0x3800001000),  # the /proc/PID/maps form
        (Resource(0, 0x3FFF, 0x20040200), 0x1000, 0x1000),  # unassigned BAR at 0
    ],
)
def test_bar_phys(bar: Resource, offset: int, phys: int) -> None:
    assert bar_phys(bar, offset) == phys


MAPS = {
    0: UioMap(0, 0x3800000000, 0x20000, 0),
    1: UioMap(1, 0xF7D00000, 0x200, 0x100),
    2: UioMap(2, 0xFEBF0800, 0x100, 0),  # not page-aligned: kernels before 3.12 rounded it down
}


@pytest.mark.parametrize(
    ("offset", "found"),
    [
        (0, (0, 0x3800000000)),
        (0x1000, (1, 0xF7D00000)),  # the map's offset (0x100) is not added: the registers are at +0x100
        (0x2000, (2, 0xFEBF0000)),
        (0x3000, None),
        (0x5000, None),  # index 5 >= MAX_UIO_MAPS
        (0x3800010000, (0, 0x3800010000)),  # a private mapping: the offset is the frame's address
        (0xF7D00000, (1, 0xF7D00000)),
        (0xF7E00000, None),
    ],
)
def test_uio_phys(offset: int, found: tuple[int, int] | None) -> None:
    assert uio_phys(MAPS, offset, 0x1000) == found


def test_uio_kernel_memory_is_not_physical() -> None:
    assert uio_addr_is_physical(0x3800000000)
    assert not uio_addr_is_physical(0xFFFF888012340000)


# --- VFIO ---------------------------------------------------------------------------------------

BARS = [
    Resource(0xFE800000, 0xFE803FFF, 0x140204),
    Z,
    Resource(0xFE900000, 0xFE900FFF, 0x40200),
    Z,
    Z,
    Z,
    Resource(0xFEA00000, 0xFEA3FFFF, 0x46200),
    *[Z] * 6,
]
SHIFTED = [RegionInfo(i, 7, BARS[i].size, i << 40) for i in range(7)] + [RegionInfo(7, 3, 256, 7 << 40)]
PACKED = [
    RegionInfo(0, 7, 0x4000, 0x10000),
    RegionInfo(2, 7, 0x1000, 0x20000),
    RegionInfo(7, 3, 256, 0x30000),
]
HUGE = [RegionInfo(0, 7, 0x100000000, 0), RegionInfo(2, 7, 0x1000, 2 << 40)]  # a 4 GiB BAR0


@pytest.mark.parametrize(
    ("regions", "offset", "pfn_first", "found"),
    [
        (SHIFTED, 0, False, (0, 0xFE800000)),
        (SHIFTED, 0x3000, False, (0, 0xFE803000)),
        (SHIFTED, (2 << 40) + 0x10, False, (2, 0xFE900010)),
        (SHIFTED, (6 << 40) + 0x1000, False, (6, 0xFEA01000)),  # the ROM
        (SHIFTED, 7 << 40, False, None),  # config space: no physical address
        (SHIFTED, 1 << 40, False, None),  # an empty region
        (PACKED, 0x20000, False, (2, 0xFE900000)),
        (PACKED, 0x0, False, None),  # not index << 40: offset 0 is in no region
        ([], 0xFE900010, False, (2, 0xFE900010)),  # no region info: the pre-6.10 physical offset
        ([], 0x1000, True, None),
        # both readings fit (a BAR whose address falls inside a region's range): the kernel
        # version decides which is tried first
        (HUGE, 0xFE800000, False, (0, 0xFE800000 + 0xFE800000)),
        (HUGE, 0xFE800000, True, (0, 0xFE800000)),
    ],
)
def test_vfio_phys(
    regions: list[RegionInfo], offset: int, pfn_first: bool, found: tuple[int, int] | None
) -> None:
    assert vfio_phys(regions, BARS, offset, pgoff_is_pfn=pfn_first) == found


def test_region_lookup_and_names() -> None:
    assert region_at(PACKED, 0x20FFF) == PACKED[1]
    assert region_at(PACKED, 0x21000) is None
    names = ["bar 0", "bar 5", "rom", "config", "vga", "region 9"]
    assert [region_name(i) for i in (0, 5, 6, 7, 8, 9)] == names


def test_regions_match_bars() -> None:
    assert regions_match_bars(SHIFTED, BARS)
    assert regions_match_bars(PACKED, BARS)
    assert not regions_match_bars([RegionInfo(0, 7, 0x8000, 0)], BARS)
    assert not regions_match_bars([], BARS)


def test_vfio_abi() -> None:
    """include/uapi/linux/vfio.h: ``_IO(';', 100 + 7)`` and ``+ 8``; the structs' byte layouts."""
    assert (VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO) == (0x3B6B, 0x3B6C)
    assert pack_device_info_request() == struct.pack("<4I", 16, 0, 0, 0)
    assert unpack_device_info(struct.pack("<4I", 16, 0x2 | 0x1, 9, 5)) == (3, 9, 5)
    req = pack_region_info_request(2)
    assert req == struct.pack("<4I2Q", 32, 0, 2, 0, 0, 0) and len(req) == 32
    back = struct.pack("<4I2Q", 32, 0x7 | 0x8, 2, 32, 0x1000, 2 << 40)
    assert unpack_region_info(back) == RegionInfo(2, 0xF, 0x1000, 2 << 40)


@pytest.mark.parametrize(
    ("release", "pfn"),
    [
        ("5.15.0-91-generic", True),
        ("6.9.12", True),
        ("6.10.0", False),
        ("6.18.44-fc-v782", False),
        ("7.0", False),
        ("weird", False),
    ],
)
def test_vfio_pgoff_is_pfn(release: str, pfn: bool) -> None:
    assert vfio_pgoff_is_pfn(release) is pfn


# --- the pure modules stay pure -----------------------------------------------------------------

PURE = ["model.py", "parse.py", "layout.py"]
OS_MODULES = ("kmmio.backend", "kmmio.devices.sysfs", "kmmio.devices.locate", "kmmio.devices.roots")
FORBIDDEN = {"ctypes", "cffi", "os", "signal", "subprocess", "socket", "mmap", "fcntl", "resource", "pathlib"}


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_nothing_of_the_system(name: str) -> None:
    path = Path(__file__).parents[2] / "src" / "kmmio" / "devices" / name
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for n in names:
            assert n.split(".")[0] not in FORBIDDEN, (name, n)
            assert not n.startswith(OS_MODULES), (name, n)
