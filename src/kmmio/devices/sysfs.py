"""Reading the PCI, UIO and VFIO parts of sysfs (under :class:`~kmmio.devices.roots.Roots`).

Only the reading is here; what the text means is in :mod:`~kmmio.devices.parse` and
:mod:`~kmmio.devices.layout`.  A file that is missing or malformed raises
:class:`~kmmio.errors.UsageError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from kmmio.devices.layout import kernel_order, pcidev
from kmmio.devices.model import Bdf, Resource, UioMap
from kmmio.devices.parse import (
    parse_bdf,
    parse_dec_attr,
    parse_hex_attr,
    parse_resource,
    parse_uio_map,
)
from kmmio.devices.roots import Roots
from kmmio.errors import UsageError
from kmmio.trace.records import PciDev


def read_attr(path: Path) -> str:
    """The text of one sysfs attribute; a file that cannot be read is a one-line UsageError."""
    try:
        return path.read_text()
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def _link_name(path: Path) -> str:
    """The last component of a symbolic link's target ("" when there is no link)."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return ""


def _resolve_dir(path: Path) -> Path | None:
    """A symbolic link to a directory, resolved (None if it is not one)."""
    try:
        real = path.resolve(strict=True)
    except OSError:
        return None
    return real if real.is_dir() else None


def device_bdf(dev_dir: Path) -> Bdf:
    bdf = parse_bdf(dev_dir.name)
    if bdf is None:
        raise UsageError(f"{dev_dir}: not a PCI device directory (its name is no PCI address)")
    return bdf


def read_resources(dev_dir: Path) -> tuple[Resource, ...]:
    path = dev_dir / "resource"
    return parse_resource(read_attr(path), str(path))


def read_pcidev(dev_dir: Path) -> PciDev:
    """One device's ``PCIDEV`` record from its sysfs directory (see :func:`layout.pcidev`)."""
    return pcidev(
        device_bdf(dev_dir),
        parse_hex_attr(read_attr(dev_dir / "vendor"), str(dev_dir / "vendor")),
        parse_hex_attr(read_attr(dev_dir / "device"), str(dev_dir / "device")),
        parse_dec_attr(read_attr(dev_dir / "irq"), str(dev_dir / "irq")),
        read_resources(dev_dir),
        _link_name(dev_dir / "driver"),
    )


def pci_device_dirs(roots: Roots) -> list[Path]:
    """Every PCI device's directory (``<sys>/bus/pci/devices/*``, resolved), in the order the
    kernel lists them (:func:`layout.kernel_order`)."""
    bus = roots.sys / "bus" / "pci" / "devices"
    try:
        names = sorted(os.listdir(bus))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UsageError(f"{bus}: cannot list: {e.strerror or e}") from None
    base = _resolve_dir(roots.sys / "devices")
    dirs: list[Path] = []
    where: list[tuple[tuple[str, ...], bool]] = []
    for name in names:
        real = _resolve_dir(bus / name)
        if real is None:
            raise UsageError(f"{bus / name}: does not lead to a device directory")
        parts = real.relative_to(base).parts if base and real.is_relative_to(base) else (real.name,)
        dirs.append(real)
        where.append((parts, os.path.lexists(real / "physfn")))
    return [dirs[i] for i in kernel_order(where)]


def pci_devices(roots: Roots | None = None) -> list[PciDev]:
    """The ``PCIDEV`` records the kernel's mmiotrace would print, in its order: one per PCI
    device, each line equal to the device's line of ``/proc/bus/pci/devices``."""
    return [read_pcidev(d) for d in pci_device_dirs(roots or Roots.from_env())]


def pci_device_dir(bdf: str, roots: Roots) -> Path | None:
    """``<sys>/bus/pci/devices/<bdf>``, resolved; None when there is no such device."""
    return _resolve_dir(roots.sys / "bus" / "pci" / "devices" / bdf)


def uio_maps(name: str, roots: Roots) -> dict[int, UioMap] | None:
    """``<sys>/class/uio/<name>/maps/mapM`` by M; None when the device has no ``maps``
    (``uio_dev_add_attributes()`` creates it only for a device with memory maps)."""
    maps_dir = roots.sys / "class" / "uio" / name / "maps"
    if not maps_dir.is_dir():
        return None
    out: dict[int, UioMap] = {}
    for entry in sorted(maps_dir.iterdir()):
        if not (entry.name.startswith("map") and entry.name[3:].isdigit()):
            continue
        index = int(entry.name[3:])
        name_file = entry / "name"
        out[index] = parse_uio_map(
            index,
            read_attr(entry / "addr"),
            read_attr(entry / "size"),
            read_attr(entry / "offset"),
            name_file.read_text() if name_file.exists() else "",
            str(entry),
        )
    return out


def uio_exists(name: str, roots: Roots) -> bool:
    return (roots.sys / "class" / "uio" / name).is_dir()


def uio_pci_dir(name: str, roots: Roots) -> Path | None:
    """The PCI device a UIO device belongs to (its ``device`` link), if it is one."""
    parent = _resolve_dir(roots.sys / "class" / "uio" / name / "device")
    return parent if parent is not None and parse_bdf(parent.name) else None


def vfio_cdev_dir(name: str, roots: Roots) -> Path | None:
    """The device behind ``/dev/vfio/devices/<name>``: ``<sys>/class/vfio-dev/<name>/device``
    (the ``vfio-dev`` device is a child of the PCI function, ``.../0000:06:0d.0/vfio-dev/vfio0``)."""
    return _resolve_dir(roots.sys / "class" / "vfio-dev" / name / "device")


def iommu_group_dirs(group: str, roots: Roots) -> list[Path]:
    """The devices of IOMMU group ``group`` (``<sys>/kernel/iommu_groups/<group>/devices/*``)."""
    devices = roots.sys / "kernel" / "iommu_groups" / group / "devices"
    try:
        names = sorted(os.listdir(devices))
    except OSError:
        return []
    return [d for d in (_resolve_dir(devices / n) for n in names) if d is not None]
