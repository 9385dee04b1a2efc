"""Where bytes are, computed from what sysfs and the kernel said (pure: values in, values out).

Each function follows one kernel function, named in its docstring; the reading of the files
and the ioctls is in :mod:`kmmio.devices.sysfs` and :mod:`kmmio.devices.locate`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence

from kmmio.devices.model import (
    IORESOURCE_BUSY,
    MAX_UIO_MAPS,
    PCI_ROM_RESOURCE,
    PCIDEV_RESOURCES,
    Bdf,
    RegionInfo,
    Resource,
    UioMap,
)
from kmmio.devices.parse import parse_bdf, parse_host_bridge
from kmmio.trace.records import PciDev

# ---------------------------------------------------------------------------------------------
# PCIDEV


def pcidev(
    bdf: Bdf, vendor: int, device: int, irq: int, resources: Sequence[Resource], driver: str
) -> PciDev:
    """The ``PCIDEV`` record of a device, field for field as ``mmio_print_pcidev()``
    (kernel/trace/trace_mmiotrace.c) and ``show_device()`` (drivers/pci/proc.c) print it.

    * bus and devfn only: neither prints the domain, so a device of domain 0001 has the same
      first field as its twin in domain 0000 (both are listed, as the kernel lists them);
    * the 7 first resources (BAR0-5, ROM): start ``| (flags & PCI_REGION_FLAG_MASK)``, and
      size ``start < end ? end - start + 1 : 0``.  sysfs ``resource`` shows
      ``pci_resource_to_user()`` of each; on x86 (and every architecture without
      ``HAVE_ARCH_PCI_RESOURCE_TO_USER``) that is the resource itself, which is what
      ``mmio_print_pcidev()`` prints;
    * ``driver`` is ``pci_dev_driver()``: the bound driver (the sysfs ``driver`` link's name is
      ``drv->driver.name``, set from ``pci_driver.name`` by ``__pci_register_driver()``), else
      ``"compat"`` if one of those 7 resources is ``IORESOURCE_BUSY``, else nothing;
    * ``irq`` is ``dev->irq``; sysfs ``irq`` shows it too (``irq_show()``: with MSI enabled
      it shows ``pci_irq_vector(pdev, 0)``, and ``__msi_capability_init()`` has set
      ``dev->irq`` to that same vector).
    """
    first = resources[:PCIDEV_RESOURCES]
    if not driver and any(r.flags & IORESOURCE_BUSY for r in first):
        driver = "compat"
    return PciDev(
        bdf.bus_devfn,
        (vendor << 16) | device,
        irq,
        tuple(r.pcidev_start for r in first),
        tuple(r.size for r in first),
        driver,
    )


def kernel_order(devices: Sequence[tuple[tuple[str, ...], bool]]) -> list[int]:
    """The order ``pci_get_device()`` walks devices in, from their sysfs places (indices into
    ``devices``).  Each device is given as the components of its real path under
    ``/sys/devices`` (``("pci0000:00", "0000:00:1c.0", "0000:03:00.0")``) and whether it is an
    SR-IOV virtual function (it has a ``physfn`` link).

    ``/proc/bus/pci/devices`` and ``PCIDEV`` lines come in ``pci_bus_type``'s list order, the
    order of ``device_add()``, which ``pci_device_add()`` (drivers/pci/probe.c) calls as each
    function is found.  ``pci_scan_child_bus_extend()`` first scans every slot of a bus in
    devfn order, then descends into each bridge in turn, depth first; host bridges come in
    firmware order (taken here as domain, then bus; a host bridge below a PCI device, as VMD
    makes, is scanned only when its driver binds, so after the others).  Virtual functions
    are added when SR-IOV is enabled, after everything found at boot.  What this cannot see:
    hot-plugged devices (added when they arrive) and bridges the kernel had to renumber
    (scanned in a second pass).
    """
    hosts: dict[tuple[str, ...], list[int]] = {}
    chains: dict[int, tuple[str, ...]] = {}
    vfs: list[int] = []
    for i, (parts, is_vf) in enumerate(devices):
        if is_vf:
            vfs.append(i)
            continue
        h = max((k for k, p in enumerate(parts) if parse_host_bridge(p)), default=-1)
        hosts.setdefault(parts[: h + 1], []).append(i)
        chains[i] = tuple(p for p in parts[h + 1 :] if parse_bdf(p))

    def host_key(prefix: tuple[str, ...]) -> tuple[bool, int, int, tuple[str, ...]]:
        nested = any(parse_bdf(p) for p in prefix)
        domain, bus = (parse_host_bridge(prefix[-1]) if prefix else None) or (0, 0)
        return nested, domain, bus, prefix

    def walk(members: list[int], prefix: tuple[str, ...]) -> list[int]:
        depth = len(prefix)
        below = [i for i in members if len(chains[i]) > depth and chains[i][:depth] == prefix]
        nexts = sorted({chains[i][depth] for i in below}, key=_bdf_key)
        here = {chains[i][depth]: i for i in below if len(chains[i]) == depth + 1}
        out = [here[n] for n in nexts if n in here]
        for n in nexts:
            out += walk(below, (*prefix, n))
        return out

    order: list[int] = []
    for prefix in sorted(hosts, key=host_key):
        members = hosts[prefix]
        order += walk(members, ())
        order += [i for i in members if not chains[i]]  # no PCI name in the path: keep them
    order += sorted(vfs, key=lambda i: _bdf_key(devices[i][0][-1] if devices[i][0] else ""))
    return order


def _bdf_key(name: str) -> tuple[int, int, int, int, str]:
    bdf = parse_bdf(name)
    return (bdf.domain, bdf.bus, bdf.device, bdf.function, name) if bdf else (1 << 32, 0, 0, 0, name)


# ---------------------------------------------------------------------------------------------
# PCI sysfs resourceN


def bar_phys(bar: Resource, offset: int) -> int:
    """The physical address of the first byte of a ``resourceN``/``resourceN_wc`` mapping.

    The mmap offset is the offset in the BAR (``pci_mmap_resource_range()``,
    drivers/pci/mmap.c, checks it against the BAR's length), so the byte is at
    ``start + offset``.  That function then adds ``start >> PAGE_SHIFT`` to ``vm_pgoff``,
    so /proc/PID/maps shows the physical address itself as the mapping's offset; such an
    offset (inside the BAR's physical range, past its length: a BAR is aligned on its size)
    is taken as it is.
    """
    if bar.size and offset >= bar.size and bar.holds(offset):
        return offset
    return bar.start + offset


# ---------------------------------------------------------------------------------------------
# UIO


def uio_addr_is_physical(addr: int) -> bool:
    """False for a UIO map of kernel memory (``UIO_MEM_LOGICAL``, ``UIO_MEM_VIRTUAL``,
    ``UIO_MEM_DMA_COHERENT``), whose ``addr`` is a kernel virtual address (top half of the
    address space); user space is never told the physical address of such memory."""
    return addr < (1 << 63)


def uio_phys(maps: Mapping[int, UioMap], offset: int, page_size: int) -> tuple[int, int] | None:
    """The map a ``/dev/uioN`` mapping shows, and the physical address of its first byte.

    ``uio_find_mem_index()`` (drivers/uio/uio.c) takes ``vm_pgoff`` itself as the map
    index (the mmap offset is ``M * page size``; an index of ``MAX_UIO_MAPS`` or more, or a
    map of size 0, is refused).  ``uio_mmap_physical()`` then maps from the frame of
    ``mem->addr`` (``remap_pfn_range(..., mem->addr >> PAGE_SHIFT, ...)``): the mapping's
    first byte is at ``addr`` rounded down to its page (since Linux 3.12, the fix of
    CVE-2013-4511, an ``addr`` that is not page-aligned is refused with ``-ENODEV``; before,
    ``addr >> PAGE_SHIFT`` rounded it down the same way).  The map's
    ``offset`` attribute (``mem->offs``) only tells where in that first page the device's
    registers begin (a driver such as uio_pdrv_genirq sets ``addr = start & PAGE_MASK`` and
    ``offs = start & ~PAGE_MASK``): the registers are at ``virt + offs``, which this
    formula already places at ``addr + offs``, so it is not added again.

    A private (copy-on-write) mapping has its ``vm_pgoff`` rewritten to the frame by
    ``remap_pfn_range()``: /proc/PID/maps then shows the physical address as the offset,
    taken as it is when it falls in a map.
    """
    index, within = divmod(offset, page_size)
    mask = ~(page_size - 1)
    if index < MAX_UIO_MAPS and index in maps:
        return index, (maps[index].addr & mask) + within
    for m in maps.values():
        base = m.addr & mask
        if base <= offset < m.addr + m.size:
            return m.index, offset
    return None


# ---------------------------------------------------------------------------------------------
# VFIO (include/uapi/linux/vfio.h)

_VFIO_TYPE = ord(";")
_VFIO_BASE = 100
VFIO_DEVICE_GET_INFO = (_VFIO_TYPE << 8) | (_VFIO_BASE + 7)  # _IO(VFIO_TYPE, VFIO_BASE + 7)
VFIO_DEVICE_GET_REGION_INFO = (_VFIO_TYPE << 8) | (_VFIO_BASE + 8)
_DEVICE_INFO = struct.Struct("<IIII")  # argsz, flags, num_regions, num_irqs (the kernel's minsz)
_REGION_INFO = struct.Struct("<IIIIQQ")  # argsz, flags, index, cap_offset, size, offset


def pack_device_info_request() -> bytes:
    return _DEVICE_INFO.pack(_DEVICE_INFO.size, 0, 0, 0)


def unpack_device_info(raw: bytes) -> tuple[int, int, int]:
    """``struct vfio_device_info`` back from ``VFIO_DEVICE_GET_INFO``: flags, regions, irqs."""
    _, flags, num_regions, num_irqs = _DEVICE_INFO.unpack_from(raw)
    return flags, num_regions, num_irqs


def pack_region_info_request(index: int) -> bytes:
    """A ``struct vfio_region_info`` asking for region ``index`` (``argsz`` = the 32 bytes the
    kernel needs at least; with capabilities it only sets ``VFIO_REGION_INFO_FLAG_CAPS``)."""
    return _REGION_INFO.pack(_REGION_INFO.size, 0, index, 0, 0, 0)


def unpack_region_info(raw: bytes) -> RegionInfo:
    _, flags, index, _, size, offset = _REGION_INFO.unpack_from(raw)
    return RegionInfo(index, flags, size, offset)


def region_name(index: int) -> str:
    """vfio-pci's fixed indices: ``VFIO_PCI_BAR0..5_REGION_INDEX``, ROM, config, VGA."""
    if index < PCI_ROM_RESOURCE:
        return f"bar {index}"
    return {PCI_ROM_RESOURCE: "rom", 7: "config", 8: "vga"}.get(index, f"region {index}")


def region_at(regions: Sequence[RegionInfo], offset: int) -> RegionInfo | None:
    """The region whose ``[offset, offset + size)`` (as the kernel reported it) holds ``offset``."""
    return next((r for r in regions if r.holds(offset)), None)


def vfio_phys(
    regions: Sequence[RegionInfo], resources: Sequence[Resource], offset: int, *, pgoff_is_pfn: bool
) -> tuple[int, int] | None:
    """The region (vfio-pci index) of a VFIO device mapping and its first byte's physical address.

    ``vfio_pci_core_mmap()`` (drivers/vfio/pci/vfio_pci_core.c) maps BAR ``index`` from
    ``pci_resource_start(pdev, index)`` plus the offset into the region; the region is the
    one whose ``[offset, offset + size)`` from ``VFIO_DEVICE_GET_REGION_INFO`` holds the mmap
    offset (vfio-pci uses ``index << 40``, but only the ioctl is the contract).  Only BARs
    are mappable there; the ROM is placed too, should another driver map it.

    Before Linux 6.10 (commit aac6db75a9fc, "vfio/pci: Use unmap_mapping_range()") the same
    function rewrote ``vm_pgoff`` to the BAR's frame, so /proc/PID/maps shows the physical
    address as the offset; such an offset is one inside a BAR's physical range.
    ``pgoff_is_pfn`` says which reading to try first (the other is tried next).
    """

    def by_region() -> tuple[int, int] | None:
        r = region_at(regions, offset)
        if r is None or r.index > PCI_ROM_RESOURCE or r.index >= len(resources):
            return None
        bar = resources[r.index]
        return (r.index, bar.start + offset - r.offset) if bar.size else None

    def by_pfn() -> tuple[int, int] | None:
        for i, bar in enumerate(resources[:PCIDEV_RESOURCES]):
            if bar.holds(offset):
                return i, offset
        return None

    for attempt in (by_pfn, by_region) if pgoff_is_pfn else (by_region, by_pfn):
        found = attempt()
        if found is not None:
            return found
    return None


def regions_match_bars(regions: Sequence[RegionInfo], resources: Sequence[Resource]) -> bool:
    """Whether a vfio-pci device's BAR regions have the sizes of these sysfs resources
    (``vfio_pci_ioctl_get_region_info()`` reports ``pci_resource_len()`` for BARs 0-5):
    the check that tells which device of an IOMMU group an fd is."""
    bars = {r.index: r.size for r in regions if r.index < PCI_ROM_RESOURCE}
    return bool(bars) and all(bars.get(i, 0) == resources[i].size for i in range(PCI_ROM_RESOURCE))


_RELEASE = re.compile(r"(\d+)\.(\d+)")


def vfio_pgoff_is_pfn(release: str) -> bool:
    """True for a kernel (``uname -r``) older than 6.10, whose vfio-pci mappings show the
    physical address as their offset (see :func:`vfio_phys`)."""
    m = _RELEASE.match(release)
    return m is not None and (int(m.group(1)), int(m.group(2))) < (6, 10)
