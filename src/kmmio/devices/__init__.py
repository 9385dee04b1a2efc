"""Devices behind a traced mapping: the PCI device list, and where a mapping's bytes are.

The kernel's mmiotrace starts its log with one ``PCIDEV`` line per PCI device and logs real
physical (bus) addresses, which is what readers such as envytools' ``demmio`` need to find
the BAR and the register.  This package gives a process tracer the same two things.

API
---

``Roots(sys=Path("/sys"), dev=Path("/dev"), proc=Path("/proc"))``, frozen;
``Roots.from_env()``
    Where sysfs, device nodes and procfs are read: ``$KMMIO_SYSFS`` (else ``/sys``) and
    ``$KMMIO_DEV`` (else ``/dev``), trees laid out like the real ones.  A path under them
    means what the same path under ``/sys`` or ``/dev`` would.  Every function below takes
    ``roots`` (default ``Roots.from_env()``).

``pci_devices(roots=None) -> list[PciDev]``
    The ``PCIDEV`` records (:class:`kmmio.trace.records.PciDev`) the kernel would print, in
    its order, each equal to the device's line of ``/proc/bus/pci/devices``; read from
    ``<sys>/bus/pci/devices/*`` (``resource``, ``vendor``, ``device``, ``irq``, the ``driver``
    link).  How each field follows ``show_device()`` / ``mmio_print_pcidev()``:
    :func:`kmmio.devices.layout.pcidev`; the order: :func:`kmmio.devices.layout.kernel_order`.

``place(path, offset, *, pid=None, fd=None, roots=None) -> Place | None``
    Where the first byte of a mapping is.  ``path`` as /proc/PID/maps shows it, ``offset``
    the file offset (the mmap argument, or the offset /proc/PID/maps shows: both are
    understood).  ``None`` when ``path`` is not one of these devices, or its physical
    address cannot be known; the caller then keeps its own "physical" (file offset or
    virtual address).  Kinds:

    * ``pci``: ``<sys>/devices/.../<BDF>/resourceN`` and ``resourceN_wc``: BAR N's start
      (line N of ``resource``) + offset (``pci_mmap_resource_range()``);
    * ``uio``: ``<dev>/uioN``: map ``offset // page size`` of ``<sys>/class/uio/uioN/maps``,
      from its ``addr`` (``uio_find_mem_index()``, ``uio_mmap_physical()``; the map's
      ``offset`` attribute is where the registers start inside the mapping, not a shift of
      it); a UIO device without maps stands for its PCI device's BARs (map M = BAR M);
    * ``vfio``: ``<dev>/vfio/devices/vfioX`` (device from ``<sys>/class/vfio-dev/vfioX/
      device``) and the group API's ``anon_inode:[vfio-device]`` (device from
      ``/proc/PID/fdinfo/FD``'s ``vfio-device-syspath:``, Linux 6.18+, else from the
      program's open VFIO groups by BAR sizes): the region holding the offset, from
      ``VFIO_DEVICE_GET_REGION_INFO`` on the program's fd (borrowed with ``pidfd_getfd``,
      :mod:`kmmio.backend.devfd`), mapped from the BAR's start in sysfs ``resource``;
    * ``mem``: ``<dev>/mem``: the offset is the physical address.

``Place(phys, kind, device="", region="")``, frozen; ``Place.describe() -> str``
    ``phys`` is the physical address of the mapping's first byte; ``describe()`` the log
    tail: ``pci 0000:03:00.0 bar 0``, ``uio uio0 map 1``, ``vfio 0000:06:0d.0 bar 2``, ``mem``.

``phys_at(place, offset) -> int``
    The physical address of the byte ``offset`` (``addr - mapping.virt``) into the mapping.

``kind_of(path, roots=None) -> str | None``
    The kind from the path's shape alone (nothing read): to know whether to pass ``pid``/``fd``.

Also: ``pci_device_dirs(roots)`` (the devices' sysfs directories in the kernel's order),
``read_pcidev(dir)``, ``parse_proc_pci_devices(text)`` (``/proc/bus/pci/devices`` to
records), ``vfio_region_infos(pid, fd) -> list[RegionInfo]`` (the ioctls on a borrowed fd;
``kmmio.devices.locate.region_source`` is what :func:`place` calls, replaceable in tests),
and the pure helpers ``pcidev``, ``kernel_order``, ``uio_phys``, ``vfio_phys``, ``region_at``.

Offsets: the kernel rewrites ``vm_pgoff`` to the page frame for ``resourceN`` mappings
(``pci_mmap_resource_range()``), private UIO mappings (``remap_pfn_range()`` of a
copy-on-write mapping) and vfio-pci before Linux 6.10, so /proc/PID/maps then shows the
physical address as the offset; :func:`place` recognises that form (an offset inside the
BAR's or map's physical range) as well as the mmap argument.

Errors: a missing or malformed sysfs file raises :class:`kmmio.errors.UsageError`, one line
naming the file.  The pure parts (:mod:`.model`, :mod:`.parse`, :mod:`.layout`) import
nothing that touches the system; :mod:`.roots`, :mod:`.sysfs` and :mod:`.locate` read files.
"""

import sys

from kmmio.devices.layout import kernel_order, pcidev, region_at, uio_phys, vfio_phys
from kmmio.devices.locate import VFIO_ANON_PATH, kind_of, place, vfio_region_infos
from kmmio.devices.model import Bdf, Place, RegionInfo, Resource, UioMap, phys_at
from kmmio.devices.parse import parse_proc_pci_devices, parse_resource
from kmmio.devices.roots import Roots
from kmmio.devices.sysfs import pci_device_dirs, pci_devices, read_pcidev
from kmmio.errors import KmmioError

__all__ = [
    "VFIO_ANON_PATH",
    "Bdf",
    "Place",
    "RegionInfo",
    "Resource",
    "Roots",
    "UioMap",
    "kernel_order",
    "kind_of",
    "parse_proc_pci_devices",
    "parse_resource",
    "pci_device_dirs",
    "pci_devices",
    "pcidev",
    "phys_at",
    "place",
    "place_or_say",
    "read_pcidev",
    "region_at",
    "uio_phys",
    "vfio_phys",
    "vfio_region_infos",
]


def place_or_say(
    path: str, offset: int, pid: int, fd: int | None, roots: Roots, said: set[str]
) -> Place | None:
    """:func:`place`, a device whose sysfs files cannot be read or make no sense logged with
    file offsets, as any other file, and said once (per path in ``said``) on standard
    error: the trace goes on."""
    try:
        return place(path, offset, pid=pid, fd=fd, roots=roots)
    except (KmmioError, OSError) as exc:
        if path not in said:
            said.add(path)
            print(f"kmmio: {path}: no physical address ({exc}); file offsets logged", file=sys.stderr)
        return None
