"""How a simulated program finds its devices: a private mount namespace made in its process
before ``execve``, where each device path is a file standing for the device.

The program opens and maps its device by its own path (``/dev/uio0``,
``/sys/bus/pci/devices/0000:03:00.0/resource0``, ``/dev/mem``, a ``/dev/shm`` file), which
need not exist on the machine.  In the program's own mount namespace the tracer's backing
file (a regular file sized to the model, made by the caller) is bind-mounted on that path:

* an existing path (a device node, a sysfs attribute, a file) is covered by a bind mount of
  the backing file;
* a missing path is made: its nearest existing directory ``A`` is covered by a writable
  copy of itself, the missing directories and an empty file are made in it, and the backing
  file is bind-mounted on that file.  Devices under the same ``A`` share one copy.

The copy of ``A`` is made one of two ways (``fill``):

``"overlay"`` (with ``CAP_SYS_ADMIN``, the default as root)
    an overlay with ``A`` as its lower layer and its upper layer in a private tmpfs.  An
    overlay shows no mounts of its lower layer, so the mounts under ``A`` (``/dev/shm``,
    ``/dev/pts``, ``/dev/mqueue`` under ``/dev``) are moved into it (``mount --move``,
    each topmost visible one with what is mounted below it) before it is moved onto ``A``:
    they are the host's very mounts, not copies (a file made in ``/dev/shm`` is the host's).
``"binds"`` (in a user namespace, the default without ``CAP_SYS_ADMIN``)
    a tmpfs where every entry of ``A`` is bind-mounted (recursively: submounts come along),
    symbolic links copied, then moved onto ``A``.  An overlay cannot serve there: the
    kernel refuses a lower layer with mounts under it that the user namespace may not
    unmount ("failed to clone lowerpath"), and refuses to open device nodes through a
    filesystem mounted in a user namespace (``/dev/null`` would fail), whereas a bind
    mount keeps the original mount's rights.

Without ``CAP_SYS_ADMIN`` the namespace is a user namespace and a mount namespace together
(``unshare(CLONE_NEWUSER | CLONE_NEWNS)``), the caller's uid and gid standing for
themselves; the tracer, in the parent user namespace with the same uid, keeps every ptrace
right over the program.  Files of other owners show as ``nobody`` inside; with
``fill="binds"`` the directory ``A`` itself is owned by the caller.

Inside the simulation the device path is a **regular file** of the model's size, with the
backing file's owner and mode (``/dev/uio0`` is a regular file, not a character device):
``open``, ``fstat`` and ``mmap`` of it open, size and map the backing file.  The host is
untouched: the paths made exist only in the program's namespace (and its children's).

:func:`plan` computes the steps in the tracer from what it sees of the machine (pure given
a :class:`Host`; tested without privileges); :func:`apply` (in :mod:`kmmio.sim.mount_steps`,
with the steps) performs them in the forked child: plain syscalls, one thread, every path
needed later held by an ``O_PATH`` descriptor and reached as ``/proc/self/fd/N`` so that
nothing mounted on the way can hide it; at the end the working directory is entered again
by its path (it may lie in a covered ``A``).  An error is one line,
:class:`PlacementError`, raised in the child.

The launcher: ``steps = plan(placements, scratch)`` in the tracer (a
:class:`PlacementError` there is a usage error), then ``apply(steps)`` in the child after
``fork`` and before the seccomp filter and ``execve`` (``Serving.prepare_child``).  The
program's ``/proc/PID/maps`` shows a device's mapping under :func:`seen_path`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kmmio.backend import mounts
from kmmio.errors import UsageError
from kmmio.sim.mount_steps import (
    Bind,
    Held,
    MakeDir,
    MakeFile,
    MakePrivate,
    MapIds,
    MountOverlay,
    MountTmpfs,
    Move,
    OpenPath,
    PlacementError,
    Step,
    Symlink,
    Unmount,
    Unshare,
    apply,
)

__all__ = [
    "Bind",
    "DevicePlacement",
    "Fill",
    "Held",
    "Host",
    "LiveHost",
    "MakeDir",
    "MakeFile",
    "MakePrivate",
    "MapIds",
    "MountOverlay",
    "MountTmpfs",
    "Move",
    "OpenPath",
    "PlacementError",
    "Step",
    "Symlink",
    "Unmount",
    "Unshare",
    "apply",
    "plan",
    "seen_path",
]

Fill = Literal["overlay", "binds"]


@dataclass(frozen=True)
class DevicePlacement:
    """A device ``path`` the program will open, and the regular file standing for it.

    ``path`` is made absolute and normal (``//dev/./uio0`` is ``/dev/uio0``); ``backing``
    is a regular file the caller has made, sized to the model.
    """

    path: str
    backing: str
    kind: Literal["file"] = "file"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise UsageError(f"device path {self.path!r} is not absolute")
        if self.kind != "file":
            raise UsageError(f"device {self.path}: unknown kind {self.kind!r}")
        object.__setattr__(self, "path", _normal(self.path))
        object.__setattr__(self, "backing", _normal(os.path.abspath(self.backing)))


def _normal(path: str) -> str:
    p = posixpath.normpath(path)
    return "/" + p.lstrip("/")


def _under(path: str, top: str) -> bool:
    """``path`` is ``top`` or below it, component-wise."""
    return path == top or top == "/" or path.startswith(top + "/")


def _strictly_under(path: str, top: str) -> bool:
    return path != top and _under(path, top)


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


# -- what the tracer sees of the machine ----------------------------------------------------


class Host(Protocol):
    """What :func:`plan` reads of the machine (a fake one in tests)."""

    def mode(self, path: str, follow: bool = True) -> int | None:
        """``st_mode`` of ``path`` (of a symbolic link itself without ``follow``), or
        None when there is nothing there."""

    def realpath(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[str]: ...

    def readlink(self, path: str) -> str: ...

    def mountinfo(self) -> str:
        """The text of ``/proc/self/mountinfo``."""


class LiveHost:
    """This machine, as the calling process sees it."""

    def mode(self, path: str, follow: bool = True) -> int | None:
        try:
            return os.stat(path, follow_symlinks=follow).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            err = e.errno or errno.EIO
            raise PlacementError(path, f"stat: {errno.errorcode.get(err, err)}: {e.strerror}", err) from None

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def mountinfo(self) -> str:
        return mounts.mountinfo()


# -- the mount tree, as path lookup walks it --------------------------------------------------


@dataclass
class _Mount:
    id: int
    parent: int
    mountpoint: str


def _unescape(field: str) -> str:
    """Mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field:
        return field
    out = bytearray()
    raw = os.fsencode(field)
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1 : i + 4].isdigit() and len(raw[i + 1 : i + 4]) == 3:
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


@dataclass
class _Mounts:
    """The mounts of the namespace, in ``mountinfo`` order, and those the plan adds."""

    entries: list[_Mount] = field(default_factory=list)
    _next: int = -1

    @classmethod
    def parse(cls, text: str) -> _Mounts:
        entries = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 5:
                entries.append(_Mount(int(fields[0]), int(fields[1]), _unescape(fields[4])))
        return cls(entries)

    def _root(self) -> _Mount:
        ids = {m.id for m in self.entries}
        roots = [m for m in self.entries if m.mountpoint == "/" and (m.parent not in ids or m.parent == m.id)]
        if roots:
            return roots[-1]
        if not self.entries:
            raise PlacementError("/", "no mounts in /proc/self/mountinfo")
        return min(self.entries, key=lambda m: _depth(m.mountpoint))

    def visible(self, path: str) -> _Mount:
        """The mount a lookup of ``path`` ends in: from the root, the first mountpoint
        crossed along the path each time (the last mounted where several share it)."""
        cur = self._root()
        while True:
            on_path = [
                m
                for m in self.entries
                if m.parent == cur.id and m.id != cur.id and _under(path, m.mountpoint)
            ]
            if not on_path:
                return cur
            shallowest = min(_depth(m.mountpoint) for m in on_path)
            cur = [m for m in on_path if _depth(m.mountpoint) == shallowest][-1]

    def tops_under(self, top: str, skip: set[int]) -> list[str]:
        """The mountpoints strictly under ``top`` that a lookup reaches, but those below
        another of them (they move with it), in ``mountinfo`` order: what an overlay on
        ``top`` would hide."""
        live: list[str] = []
        for m in self.entries:
            p = m.mountpoint
            if p in live or not _strictly_under(p, top):
                continue
            seen = self.visible(p)
            if seen.mountpoint == p and seen.id not in skip:
                live.append(p)
        return [p for p in live if not any(_strictly_under(p, q) for q in live)]

    def add(self, mountpoint: str) -> _Mount:
        """A mount the plan makes at ``mountpoint``, on top of what is visible there."""
        m = _Mount(self._next, self.visible(mountpoint).id, mountpoint)
        self._next -= 1
        self.entries.append(m)
        return m


# -- the plan -----------------------------------------------------------------------------------


@dataclass
class _Missing:
    placement: DevicePlacement
    top: str  # A, the nearest existing directory, resolved
    parts: list[str]  # the missing components below A

    @property
    def made(self) -> str:
        return posixpath.join(self.top, *self.parts)


def _where(p: DevicePlacement, host: Host) -> str | _Missing:
    """The resolved path to bind over (it exists), or what must be made below which ``A``."""
    path = p.path
    if path == "/":
        raise PlacementError(path, "it is the root directory")
    mode = host.mode(path)
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise PlacementError(path, "it is a directory", errno.EISDIR)
        return host.realpath(path)
    parts: list[str] = []
    cur = path
    while True:
        if host.mode(cur, follow=False) is not None:
            raise PlacementError(path, f"{cur} is a dangling symbolic link", errno.ENOENT)
        parts.insert(0, posixpath.basename(cur))
        cur = posixpath.dirname(cur)
        mode = host.mode(cur)
        if mode is not None:
            break
    if not stat.S_ISDIR(mode):
        raise PlacementError(path, f"{cur} is not a directory", errno.ENOTDIR)
    top = _normal(host.realpath(cur))
    if top == "/":
        raise PlacementError(
            path, "it would have to be made in / itself; choose a path under an existing directory"
        )
    if _under(top, "/proc"):
        raise PlacementError(path, f"it would have to be made in {top}, under /proc")
    return _Missing(p, top, parts)


def seen_path(placement: DevicePlacement, host: Host | None = None) -> str:
    """The path the program's mapping of ``placement.path`` has in ``/proc/PID/maps``: the
    path with its existing part's symbolic links resolved (a sysfs device link becomes
    ``/sys/devices/...``), as the tracer will see it; the path itself where nothing of it
    is a link."""
    where = _where(placement, host or LiveHost())
    return where.made if isinstance(where, _Missing) else where


def _check_all(placements: Sequence[DevicePlacement], host: Host) -> None:
    seen: dict[str, DevicePlacement] = {}
    for p in placements:
        if p.path in seen:
            raise PlacementError(p.path, "given twice")
        for q in seen:
            if _strictly_under(p.path, q) or _strictly_under(q, p.path):
                inner, outer = (p.path, q) if _strictly_under(p.path, q) else (q, p.path)
                raise PlacementError(inner, f"it is inside the device path {outer}")
        seen[p.path] = p
        mode = host.mode(p.backing)
        if mode is None or not stat.S_ISREG(mode):
            raise PlacementError(p.path, f"the backing file {p.backing} is not a regular file")


def plan(
    placements: Iterable[DevicePlacement],
    scratch: str,
    *,
    user_namespace: bool | None = None,
    fill: Fill | None = None,
    host: Host | None = None,
    ids: tuple[int, int] | None = None,
) -> list[Step]:
    """The steps that give the program its device paths (see the module docstring).

    ``scratch`` is an empty directory of the caller's (say beside the backing files); a
    private tmpfs is mounted there in the child for the overlays' upper layers, and
    unmounted at the end: the host never sees anything in it.  ``user_namespace`` (default:
    without ``CAP_SYS_ADMIN``), ``fill`` (default: ``"binds"`` in a user namespace,
    ``"overlay"`` otherwise), ``host`` (default: this machine) and ``ids`` (the uid and gid
    mapped in the user namespace; default: this process's) are there for tests.

    Raises :class:`PlacementError` (a :class:`~kmmio.errors.UsageError`) for a path that
    cannot be placed.  No placements, no steps (and no namespace).
    """
    todo = list(placements)
    if not todo:
        return []
    host = host or LiveHost()
    if user_namespace is None:
        user_namespace = not mounts.has_cap_sys_admin()
    fill = fill or ("binds" if user_namespace else "overlay")
    _check_all(todo, host)
    wheres = [_where(p, host) for p in todo]
    first = todo[0].path
    steps: list[Step] = [Unshare(first, user_namespace)]
    if user_namespace:
        uid, gid = ids or (os.getuid(), os.getgid())
        steps.append(MapIds(first, uid, gid))
    steps.append(MakePrivate(first))
    for p in todo:
        if not any(isinstance(s, OpenPath) and s.path == p.backing for s in steps):
            steps.append(OpenPath(p.path, p.backing))

    missing = [w for w in wheres if isinstance(w, _Missing)]
    if missing:
        scratch = _normal(host.realpath(scratch))
        steps += _fill_tops(missing, scratch, fill, host, user_namespace)

    made: set[str] = set()
    for w in missing:
        for i in range(1, len(w.parts)):
            d = posixpath.join(w.top, *w.parts[:i])
            if d not in made:
                made.add(d)
                steps.append(MakeDir(w.placement.path, d))
        steps.append(MakeFile(w.placement.path, w.made))
    for p, where in zip(todo, wheres, strict=True):
        steps.append(Bind(p.path, Held(p.backing), where.made if isinstance(where, _Missing) else where))
    if missing:
        steps.append(Unmount(missing[0].placement.path, Held(scratch)))
    return steps


def _fill_tops(
    missing: list[_Missing], scratch: str, fill: Fill, host: Host, user_namespace: bool
) -> list[Step]:
    """A writable copy of each ``A`` (deepest first, so that a shallower one's moves or
    binds carry the deeper ones), built in the scratch tmpfs, then moved onto ``A``."""
    first = missing[0].placement.path
    mode = host.mode(scratch)
    if mode is None or not stat.S_ISDIR(mode):
        raise PlacementError(first, f"the scratch directory {scratch} is not a directory")
    for w in missing:
        if _under(w.placement.path, scratch) or _under(w.top, scratch):
            raise PlacementError(w.placement.path, f"it is inside the scratch directory {scratch}")
    tree = _Mounts.parse(host.mountinfo())
    ours = {tree.add(scratch).id}
    s = Held(scratch)
    steps: list[Step] = [MountTmpfs(first, scratch, 0o700), OpenPath(first, scratch)]
    groups: dict[str, list[_Missing]] = {}
    for w in missing:
        groups.setdefault(w.top, []).append(w)
    order = sorted(groups, key=lambda a: -_depth(a))  # stable: ties keep the given order
    lowers = {a: Held(a) for a in order}
    if fill == "overlay":
        steps += [OpenPath(groups[a][0].placement.path, a) for a in order]
    for k, top in enumerate(order):
        place = groups[top][0].placement.path
        if fill == "overlay":
            upper, work, mnt = s.child(f"upper{k}"), s.child(f"work{k}"), s.child(f"mnt{k}")
            steps += [MakeDir(place, upper), MakeDir(place, work), MakeDir(place, mnt)]
            steps.append(MountOverlay(place, lowers[top], upper, work, mnt, user_namespace))
            for sub in tree.tops_under(top, ours):
                steps.append(Move(place, sub, mnt.child(posixpath.relpath(sub, top))))
        else:
            mnt = s.child(f"farm{k}")
            top_mode = host.mode(top) or 0o40755
            steps += [MakeDir(place, mnt), MountTmpfs(place, mnt, stat.S_IMODE(top_mode))]
            steps += _bind_entries(place, top, mnt, scratch, host)
        steps.append(Move(place, mnt, top))
        tree.add(top)
    return steps


def _bind_entries(place: str, top: str, farm: Held, scratch: str, host: Host) -> list[Step]:
    """Every entry of ``top`` in ``farm``: symbolic links copied, the rest bind-mounted
    (recursively, but for the directory holding the scratch tmpfs, which stays out)."""
    steps: list[Step] = []
    for name in host.listdir(top):
        src = posixpath.join(top, name)
        dst = farm.child(name)
        mode = host.mode(src, follow=False)
        if mode is None:  # gone meanwhile
            continue
        if stat.S_ISLNK(mode):
            steps.append(Symlink(place, host.readlink(src), dst))
        elif stat.S_ISDIR(mode):
            steps.append(MakeDir(place, dst, stat.S_IMODE(mode)))
            if src != scratch:
                steps.append(Bind(place, src, dst, recursive=not _under(scratch, src)))
        else:
            steps += [MakeFile(place, dst), Bind(place, src, dst, recursive=True)]
    return steps


# -- in the child -----------------------------------------------------------------------------
