"""The text of sysfs and procfs files to values (pure: text in, values out).

Each parser takes the file's text and the name to blame (``source``): a malformed file raises
:class:`~kmmio.errors.UsageError` with one line naming it, never a bare ``ValueError``.
"""

from __future__ import annotations

import re

from kmmio.devices.model import PCIDEV_RESOURCES, Bdf, Resource, UioMap
from kmmio.errors import UsageError
from kmmio.trace.records import PciDev

_BDF = re.compile(r"([0-9a-f]{4,8}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])")
_HOST_BRIDGE = re.compile(r"pci([0-9a-f]{4,8}):([0-9a-f]{2})")
_FDINFO_SYSPATH = "vfio-device-syspath:"


def parse_bdf(name: str) -> Bdf | None:
    """``0000:03:00.0`` (``pci_name()``: ``%04x:%02x:%02x.%d``; a VMD domain has 5 digits)."""
    m = _BDF.fullmatch(name)
    if m is None:
        return None
    domain, bus, device, function = (int(g, 16) for g in m.groups())
    return Bdf(domain, bus, device, function)


def parse_host_bridge(name: str) -> tuple[int, int] | None:
    """``pci0000:00`` (a ``pci_host_bridge``'s device name, ``pci%04x:%02x``): domain, bus."""
    m = _HOST_BRIDGE.fullmatch(name)
    return None if m is None else (int(m.group(1), 16), int(m.group(2), 16))


def parse_resource(text: str, source: str) -> tuple[Resource, ...]:
    """A PCI device's ``resource`` file (``resource_show()`` in drivers/pci/pci-sysfs.c).

    One ``0x%016llx 0x%016llx 0x%016llx`` line (start, end, flags) per resource: BAR0-5 and
    the ROM first, then the SR-IOV BARs (with ``CONFIG_PCI_IOV``) and, for a bridge, its
    windows.  All lines are returned; at least the first 7 must be there.
    """
    out: list[Resource] = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 3:
                raise ValueError
            start, end, flags = (int(f, 16) for f in fields)
        except ValueError:
            raise UsageError(
                f"{source}: line {no} is not 'start end flags' in hex: {line.strip()!r}"
            ) from None
        out.append(Resource(start, end, flags))
    if len(out) < PCIDEV_RESOURCES:
        raise UsageError(f"{source}: {len(out)} resource lines, a PCI device has at least {PCIDEV_RESOURCES}")
    return tuple(out)


def parse_hex_attr(text: str, source: str) -> int:
    """A sysfs attribute holding one hex number: ``vendor`` and ``device`` (``0x%04x``),
    a UIO map's ``addr``/``size`` (``%pa``: ``0x`` and 8 or 16 digits) and ``offset``."""
    value = text.strip()
    try:
        if not value.lower().startswith("0x"):
            raise ValueError
        return int(value, 16)
    except ValueError:
        raise UsageError(f"{source}: not a 0x-prefixed hex number: {value!r}") from None


def parse_dec_attr(text: str, source: str) -> int:
    """A sysfs attribute holding one decimal number (a PCI device's ``irq``: ``%u``)."""
    value = text.strip()
    if not value.isdigit():
        raise UsageError(f"{source}: not a decimal number: {value!r}")
    return int(value)


def parse_uio_map(index: int, addr: str, size: str, offset: str, name: str, source: str) -> UioMap:
    """The attributes of ``maps/mapM`` (``map_addr_show()`` etc. in drivers/uio/uio.c)."""
    return UioMap(
        index,
        parse_hex_attr(addr, f"{source}/addr"),
        parse_hex_attr(size, f"{source}/size"),
        parse_hex_attr(offset, f"{source}/offset"),
        name.strip(),
    )


def parse_fdinfo_syspath(text: str) -> str | None:
    """The device of a VFIO device fd from ``/proc/PID/fdinfo/FD``, or None.

    ``vfio_device_show_fdinfo()`` (drivers/vfio/vfio_main.c, since Linux 6.18) prints
    ``vfio-device-syspath: /sys%s`` with the kobject path of the device (the PCI function:
    ``/sys/devices/pci0000:00/.../0000:06:0d.0``), for the cdev and the group API's fd alike.
    Older kernels print nothing of the device.
    """
    for line in text.splitlines():
        if line.startswith(_FDINFO_SYSPATH):
            path = line[len(_FDINFO_SYSPATH) :].strip()
            return path or None
    return None


def parse_proc_pci_devices(text: str, source: str = "/proc/bus/pci/devices") -> list[PciDev]:
    """``/proc/bus/pci/devices`` (``show_device()`` in drivers/pci/proc.c) to ``PciDev``s.

    Tab-separated: ``%02x%02x`` bus and devfn, ``%04x%04x`` vendor and device, ``%x`` irq,
    7 x ``%16llx`` starts with their flag bits, 7 x ``%16llx`` sizes, then the driver's name
    (empty without one).  ``PCIDEV`` is the same line with spaces.
    """
    out: list[PciDev] = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (17, 18):
            raise UsageError(f"{source}: line {no} has {len(fields)} tab-separated fields, not 18")
        try:
            values = [int(f.strip(), 16) for f in fields[:17]]
        except ValueError:
            raise UsageError(f"{source}: line {no} has a field that is not hex") from None
        driver = fields[17] if len(fields) == 18 else ""
        out.append(PciDev(values[0], values[1], values[2], tuple(values[3:10]), tuple(values[10:17]), driver))
    return out
