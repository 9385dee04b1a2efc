"""The values the device look-ups deal in (pure): a PCI address, a resource, a UIO map, a VFIO
region, and the answer itself, a :class:`Place`.
"""

from __future__ import annotations

from dataclasses import dataclass

# include/linux/pci.h: "These bits of resource flags tell us the PCI region flags".
PCI_REGION_FLAG_MASK = 0x0F
# include/linux/ioport.h
IORESOURCE_IO = 0x00000100
IORESOURCE_MEM = 0x00000200
IORESOURCE_BUSY = 0x80000000
# include/linux/pci.h: BAR0-5, then the expansion ROM.
PCI_STD_NUM_BARS = 6
PCI_ROM_RESOURCE = 6
PCIDEV_RESOURCES = 7  # what show_device() and mmio_print_pcidev() print: BAR0-5 and the ROM
# include/linux/uio_driver.h
MAX_UIO_MAPS = 5
# include/uapi/linux/vfio.h
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3
VFIO_DEVICE_FLAGS_PCI = 1 << 1


@dataclass(frozen=True, slots=True)
class Place:
    """Where a mapping's first byte is: its physical (bus) address, and what it is.

    ``kind`` is ``"pci"``, ``"uio"``, ``"vfio"`` or ``"mem"``; ``device`` the PCI address
    (``0000:03:00.0``) or the UIO device (``uio0``); ``region`` the part of the device
    (``bar 0``, ``map 1``, ``rom``).  :meth:`describe` gives the three as one log tail.
    ``offset`` is the first byte's offset in the device file as the program gives it to
    ``mmap`` (the offset in the BAR for ``resourceN``, ``M`` pages + the offset in map
    ``M`` for UIO, the region's offset + the offset in it for VFIO, the physical address
    for ``/dev/mem``), whichever form /proc/PID/maps showed; ``None``: the offset given.
    """

    phys: int
    kind: str
    device: str = ""
    region: str = ""
    offset: int | None = None

    def describe(self) -> str:
        """``pci 0000:03:00.0 bar 0``, ``uio uio0 map 1``, ``mem``: for a ``MARK ... map`` line."""
        return " ".join(part for part in (self.kind, self.device, self.region) if part)


def phys_at(place: Place, offset: int) -> int:
    """The physical address of the byte ``offset`` bytes into the mapping ``place`` describes.

    The caller passes ``addr - mapping.virt``: a mapping of device memory is physically
    contiguous from its first byte (``remap_pfn_range`` maps one run of page frames).
    """
    if offset < 0:
        raise ValueError(f"offset {offset:#x} is before the mapping")
    return place.phys + offset


@dataclass(frozen=True, slots=True, order=True)
class Bdf:
    """A PCI function's address, ``domain:bus:device.function`` (``pci_name()``)."""

    domain: int
    bus: int
    device: int
    function: int

    @property
    def devfn(self) -> int:
        """``PCI_DEVFN(slot, func)``: what the kernel keeps in ``pci_dev->devfn``."""
        return (self.device << 3) | self.function

    @property
    def bus_devfn(self) -> int:
        """Bus and devfn as ``PCIDEV`` and ``/proc/bus/pci/devices`` print them (``%02x%02x``)."""
        return (self.bus << 8) | self.devfn

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"


@dataclass(frozen=True, slots=True)
class Resource:
    """One line of a PCI device's sysfs ``resource`` file: start, end, ``IORESOURCE_*`` flags."""

    start: int
    end: int
    flags: int

    @property
    def size(self) -> int:
        """``start < end ? end - start + 1 : 0``, exactly as ``show_device()`` and
        ``mmio_print_pcidev()`` compute it (so an empty resource, all zeros, is 0)."""
        return self.end - self.start + 1 if self.start < self.end else 0

    @property
    def pcidev_start(self) -> int:
        """The start with the region flag bits OR-ed in (``flags & PCI_REGION_FLAG_MASK``):
        I/O bit, memory type (``0b100`` = 64-bit), prefetchable; for the ROM the enable bit
        (``IORESOURCE_ROM_ENABLE``) and ``IORESOURCE_ROM_SHADOW``, as the kernel prints it."""
        return self.start | (self.flags & PCI_REGION_FLAG_MASK)

    def holds(self, addr: int) -> bool:
        return self.size > 0 and self.start <= addr <= self.end


@dataclass(frozen=True, slots=True)
class UioMap:
    """``/sys/class/uio/uioN/maps/mapM``: ``addr``, ``size``, ``offset`` (``struct uio_mem``)."""

    index: int
    addr: int
    size: int
    offset: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """``struct vfio_region_info`` as ``VFIO_DEVICE_GET_REGION_INFO`` returns it."""

    index: int
    flags: int
    size: int
    offset: int

    def holds(self, file_offset: int) -> bool:
        return self.size > 0 and self.offset <= file_offset < self.offset + self.size
