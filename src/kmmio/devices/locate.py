"""Where a mapping's bytes are: :func:`place` (reads sysfs, procfs, and asks a VFIO fd).

The arithmetic is in :mod:`~kmmio.devices.layout`, each step checked against the kernel
function that maps the pages; this module finds the inputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from kmmio.backend.devfd import borrowed_fd, ioctl_inout
from kmmio.devices.layout import (
    VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_REGION_INFO,
    bar_phys,
    pack_device_info_request,
    pack_region_info_request,
    region_name,
    regions_match_bars,
    uio_addr_is_physical,
    uio_phys,
    unpack_device_info,
    unpack_region_info,
    vfio_pgoff_is_pfn,
    vfio_phys,
)
from kmmio.devices.model import PCI_STD_NUM_BARS, Place, RegionInfo
from kmmio.devices.parse import parse_bdf, parse_fdinfo_syspath
from kmmio.devices.roots import Roots
from kmmio.devices.sysfs import (
    device_bdf,
    iommu_group_dirs,
    read_resources,
    uio_exists,
    uio_maps,
    uio_pci_dir,
    vfio_cdev_dir,
)
from kmmio.errors import TraceeError, UsageError

VFIO_ANON_PATH = "anon_inode:[vfio-device]"
"""How /proc/PID/maps names a mapping of a device fd from ``VFIO_GROUP_GET_DEVICE_FD``
(``anon_inode_getfile_fmode("[vfio-device]", ...)`` in drivers/vfio/group.c)."""

_RESOURCE = re.compile(r"resource([0-5])(_wc)?")
_UIO = re.compile(r"uio\d+")
_VFIO_CDEV = re.compile(r"vfio/devices/(vfio\d+)")
_VFIO_GROUP = re.compile(r"vfio/(?:noiommu-)?(\d+)")


def kind_of(path: str, roots: Roots | None = None) -> str | None:
    """``"pci"``, ``"uio"``, ``"vfio"`` or ``"mem"`` from the shape of a mapping's path alone
    (nothing read); None for any other file.  :func:`place` says where its bytes are."""
    roots = roots or Roots.from_env()
    rel = roots.sys_relative(path)
    if rel is not None:
        return "pci" if _RESOURCE.fullmatch(rel.name) and parse_bdf(rel.parent.name) else None
    rel = roots.dev_relative(path)
    if rel is not None:
        s = rel.as_posix()
        if s == "mem":
            return "mem"
        if _UIO.fullmatch(s):
            return "uio"
        return "vfio" if _VFIO_CDEV.fullmatch(s) else None
    return "vfio" if path == VFIO_ANON_PATH else None


def place(
    path: str, offset: int, *, pid: int | None = None, fd: int | None = None, roots: Roots | None = None
) -> Place | None:
    """Where the first byte of a mapping of ``path`` at file offset ``offset`` is.

    ``path`` is the mapping's path as /proc/PID/maps shows it (a sysfs file by its real
    path, ``<sys>/devices/.../resource0``; the ``bus/pci/devices`` link form works too);
    ``offset`` the mmap offset, or the offset /proc/PID/maps shows (which the kernel rewrites
    to the physical address for ``resourceN`` and private UIO mappings, and for VFIO before
    6.10): both are understood.  ``pid`` and ``fd`` name the program and its fd for a VFIO
    device (without ``fd``, the program's fds are searched; without ``pid``, VFIO mappings
    can be placed only from a physical offset).

    None: not a device mapping of these kinds, or one whose physical address cannot be
    known (a UIO map of kernel memory, a VFIO fd whose device the kernel does not name,
    a non-PCI VFIO device).  Raises :class:`~kmmio.errors.UsageError` when sysfs is
    malformed or contradicts the mapping (no UIO map at that offset).
    """
    roots = roots or Roots.from_env()
    rel = roots.sys_relative(path)
    if rel is not None:
        return _pci_resource(rel, offset, roots)
    rel = roots.dev_relative(path)
    if rel is not None:
        s = rel.as_posix()
        if s == "mem":
            return Place(offset, "mem")  # mmap_mem(): the mmap offset is the physical address
        if _UIO.fullmatch(s):
            return _uio(s, offset, roots)
        m = _VFIO_CDEV.fullmatch(s)
        if m is not None:
            dev_dir = vfio_cdev_dir(m.group(1), roots)
            fds = [fd] if fd is not None else ([] if pid is None else _fds_linking(pid, path, roots))
            return _vfio(dev_dir, fds, offset, pid, roots)
        return None
    if path == VFIO_ANON_PATH:
        return _vfio_anon(offset, pid, fd, roots)
    return None


# ---------------------------------------------------------------------------------------------


def _pci_resource(rel: PurePosixPath, offset: int, roots: Roots) -> Place | None:
    m = _RESOURCE.fullmatch(rel.name)
    if m is None or parse_bdf(rel.parent.name) is None:
        return None
    dev_dir = roots.sys / rel.parent
    index = int(m.group(1))
    bar = read_resources(dev_dir)[index]
    phys = bar_phys(bar, offset)
    return Place(phys, "pci", str(device_bdf(dev_dir)), f"bar {index}", phys - bar.start)


def _uio(name: str, offset: int, roots: Roots) -> Place | None:
    if not uio_exists(name, roots):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    maps = uio_maps(name, roots)
    if maps is None:
        # No memory maps (classic uio_pci_generic): map M stands for BAR M of the PCI device.
        # The stock uio_mmap() refuses to map such a device (uio_find_mem_index() finds no
        # map, before any driver hook is asked), so this serves only a kernel or driver that
        # maps the BARs through /dev/uioN by other means.
        dev_dir = uio_pci_dir(name, roots)
        index, within = divmod(offset, page)
        if dev_dir is None or index >= PCI_STD_NUM_BARS:
            return None
        bar = read_resources(dev_dir)[index]
        if not bar.size:
            return None
        return Place(bar.start + within, "uio", name, f"pci {device_bdf(dev_dir)} bar {index}", offset)
    found = uio_phys(maps, offset, page)
    if found is None:
        where = roots.sys / "class" / "uio" / name / "maps"
        raise UsageError(f"{where}: no map of {name} holds mmap offset {offset:#x}")
    index, phys = found
    if not uio_addr_is_physical(maps[index].addr):
        return None
    within = phys - (maps[index].addr & ~(page - 1))
    return Place(phys, "uio", name, f"map {index}", index * page + within)


# ---------------------------------------------------------------------------------------------
# VFIO


def vfio_region_infos(pid: int, fd: int) -> list[RegionInfo]:
    """The regions of the program's VFIO device fd, as the kernel reports them: its fd is
    borrowed (``pidfd_getfd``), asked ``VFIO_DEVICE_GET_INFO`` for the number of regions,
    then ``VFIO_DEVICE_GET_REGION_INFO`` for each.  Raises TraceeError."""
    with borrowed_fd(pid, fd) as mine:
        info = ioctl_inout(mine, VFIO_DEVICE_GET_INFO, pack_device_info_request())
        _, num_regions, _ = unpack_device_info(info)
        return [
            unpack_region_info(ioctl_inout(mine, VFIO_DEVICE_GET_REGION_INFO, pack_region_info_request(i)))
            for i in range(num_regions)
        ]


RegionSource = Callable[[int, int], list[RegionInfo]]
region_source: RegionSource = vfio_region_infos
"""Where :func:`place` gets a VFIO fd's regions (tests put a table here)."""


def _regions_or_none(pid: int | None, fd: int) -> list[RegionInfo] | None:
    if pid is None:
        return None
    try:
        return region_source(pid, fd)
    except TraceeError:
        return None


def _vfio(dev_dir: Path | None, fds: list[int], offset: int, pid: int | None, roots: Roots) -> Place | None:
    """A VFIO mapping of the PCI device ``dev_dir``: BAR start from sysfs ``resource`` plus the
    offset into the region the kernel reports for one of ``fds`` (:func:`layout.vfio_phys`)."""
    if dev_dir is None or parse_bdf(dev_dir.name) is None or not (dev_dir / "resource").exists():
        return None  # not a PCI function (vfio-platform, an mdev): no physical BAR to name
    regions: list[RegionInfo] = []
    for f in fds:
        got = _regions_or_none(pid, f)
        if got is not None:
            regions = got
            break
    pfn_first = vfio_pgoff_is_pfn(os.uname().release)
    found = vfio_phys(regions, read_resources(dev_dir), offset, pgoff_is_pfn=pfn_first)
    if found is None:
        return None
    index, phys = found
    region = next((r for r in regions if r.index == index), None)
    file_offset = offset if region is None else region.offset + phys - read_resources(dev_dir)[index].start
    return Place(phys, "vfio", dev_dir.name, region_name(index), file_offset)


def _vfio_anon(offset: int, pid: int | None, fd: int | None, roots: Roots) -> Place | None:
    """A mapping of a group-API device fd.  Its device is named by the fd's fdinfo
    (``vfio-device-syspath``, Linux 6.18+); on older kernels it is found among the devices of
    the VFIO groups the program has open, as the one whose BAR sizes match the fd's regions
    (so only with ``pid``, and only if exactly one matches)."""
    if pid is None:
        return None
    fds = [fd] if fd is not None else _fds_linking(pid, VFIO_ANON_PATH, roots)
    found: dict[Path, int] = {}
    unnamed: list[int] = []
    for f in fds:
        dev_dir = _fdinfo_device(pid, f, roots)
        if dev_dir is not None:
            found.setdefault(dev_dir, f)
        else:
            unnamed.append(f)
    if unnamed:
        candidates = [d for g in _open_groups(pid, roots) for d in iommu_group_dirs(g, roots)]
        for f in unnamed:
            regions = _regions_or_none(pid, f)
            matches = [d for d in candidates if regions and _bars_match(regions, d)]
            if len(matches) == 1:
                found.setdefault(matches[0], f)
            else:
                return None  # an fd whose device cannot be told: the mapping may be its
    if len(found) != 1:
        return None
    ((dev_dir, f),) = found.items()
    return _vfio(dev_dir, [f], offset, pid, roots)


def _bars_match(regions: list[RegionInfo], dev_dir: Path) -> bool:
    if parse_bdf(dev_dir.name) is None or not (dev_dir / "resource").exists():
        return False
    return regions_match_bars(regions, read_resources(dev_dir))


def _fd_links(pid: int, roots: Roots) -> list[tuple[int, str]]:
    fd_dir = roots.proc / str(pid) / "fd"
    out: list[tuple[int, str]] = []
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return out
    for name in sorted(names, key=lambda n: int(n) if n.isdigit() else -1):
        try:
            out.append((int(name), os.readlink(fd_dir / name)))
        except (OSError, ValueError):
            continue
    return out


def _fds_linking(pid: int, target: str, roots: Roots) -> list[int]:
    return [fd for fd, link in _fd_links(pid, roots) if link == target]


def _fdinfo_device(pid: int, fd: int, roots: Roots) -> Path | None:
    try:
        text = (roots.proc / str(pid) / "fdinfo" / str(fd)).read_text()
    except OSError:
        return None
    syspath = parse_fdinfo_syspath(text)
    path = roots.kernel_sys_path(syspath) if syspath else None
    return path if path is not None and path.is_dir() else None


def _open_groups(pid: int, roots: Roots) -> list[str]:
    """The IOMMU groups whose VFIO group node (``/dev/vfio/N``) the program has open."""
    groups: list[str] = []
    for _, link in _fd_links(pid, roots):
        rel = roots.dev_relative(link)
        m = _VFIO_GROUP.fullmatch(rel.as_posix()) if rel is not None else None
        if m is not None and m.group(1) not in groups:
            groups.append(m.group(1))
    return groups
