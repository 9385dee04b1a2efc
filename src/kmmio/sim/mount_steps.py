"""The steps that place simulated devices in a program's own mount namespace (see
:mod:`kmmio.sim.placement`, which plans them in the tracer), and :func:`apply`, which
performs them in the program's child after ``fork``, before ``execve``: plain syscalls
through :mod:`kmmio.backend.mounts`, one thread, every path needed later held by an
``O_PATH`` descriptor and reached as ``/proc/self/fd/N`` so that nothing mounted on the way
can hide it."""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from kmmio.backend import mounts
from kmmio.errors import TraceeError, UsageError

NEEDS = "kmmio sim needs root (CAP_SYS_ADMIN) or unprivileged user namespaces"


class PlacementError(UsageError):
    """A device path could not be placed: one line naming the path and the reason,
    ``errno`` the kernel's (0 when nothing was asked of the kernel)."""

    def __init__(self, path: str, reason: str, err: int = 0) -> None:
        super().__init__(f"cannot place {path}: {reason}")
        self.path = path
        self.reason = reason
        self.errno = err


# -- the steps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A path reached through the ``O_PATH`` descriptor opened for ``base`` by an earlier
    :class:`OpenPath` (``/proc/self/fd/N/rel``), whatever was mounted on ``base`` since."""

    base: str
    rel: str = ""

    def __str__(self) -> str:
        return posixpath.join(self.base, self.rel) if self.rel else self.base

    def child(self, rel: str) -> Held:
        return Held(self.base, posixpath.join(self.rel, rel) if self.rel else rel)


Where: TypeAlias = str | Held


@dataclass(frozen=True)
class Unshare:
    """A new mount namespace, in a new user namespace too with ``user``."""

    place: str
    user: bool


@dataclass(frozen=True)
class MapIds:
    """In the new user namespace: ``uid`` and ``gid`` stand for themselves."""

    place: str
    uid: int
    gid: int


@dataclass(frozen=True)
class MakePrivate:
    """Every mount private, recursively: nothing done here propagates to the host."""

    place: str


@dataclass(frozen=True)
class OpenPath:
    """Hold ``path`` by an ``O_PATH`` descriptor for the :class:`Held` paths after."""

    place: str
    path: str


@dataclass(frozen=True)
class MountTmpfs:
    place: str
    target: Where
    mode: int = 0o755


@dataclass(frozen=True)
class MakeDir:
    place: str
    path: Where
    mode: int = 0o755


@dataclass(frozen=True)
class MakeFile:
    """An empty regular file, to be covered by a bind mount."""

    place: str
    path: Where


@dataclass(frozen=True)
class Symlink:
    place: str
    target: str
    path: Where


@dataclass(frozen=True)
class MountOverlay:
    place: str
    lower: Where
    upper: Where
    work: Where
    target: Where
    userxattr: bool


@dataclass(frozen=True)
class Move:
    """``mount --move source target``: the topmost mount at ``source``, with its submounts."""

    place: str
    source: Where
    target: Where


@dataclass(frozen=True)
class Bind:
    """``mount --bind`` (``--rbind`` with ``recursive``)."""

    place: str
    source: Where
    target: Where
    recursive: bool = False


@dataclass(frozen=True)
class Unmount:
    """``umount -l``: the scratch tmpfs, once everything made in it is mounted elsewhere."""

    place: str
    target: Where


Step: TypeAlias = (
    Unshare | MapIds | MakePrivate | OpenPath | MountTmpfs | MakeDir | MakeFile | Symlink
    | MountOverlay | Move | Bind | Unmount
)  # fmt: skip


# -- performing them in the child ------------------------------------------------------------


_PRIVILEGED = (Unshare, MapIds, MakePrivate, MountTmpfs, MountOverlay, Move, Bind, Unmount)


def _hint(step: Step, err: int) -> str:
    if err == errno.EPERM and isinstance(step, _PRIVILEGED):
        return NEEDS
    if err == errno.ENOSPC and isinstance(step, Unshare):
        return f"no user namespace left (user.max_user_namespaces): {NEEDS}"
    if err == errno.EINVAL and isinstance(step, Unshare) and step.user:
        return f"a user namespace cannot be made here (chroot? threads?): {NEEDS}"
    return os.strerror(err)


def apply(steps: Sequence[Step]) -> None:
    """Perform ``steps`` in the calling process: the program's child after ``fork``, before
    ``execve`` (it changes the calling process's namespaces for good).

    Raises :class:`PlacementError`: ``cannot place PATH: WHAT: ERRNO: reason``.
    """
    fds: dict[str, int] = {}

    def at(w: Where) -> str:
        if isinstance(w, str):
            return w
        base = f"/proc/self/fd/{fds[w.base]}"
        return f"{base}/{w.rel}" if w.rel else base

    try:
        for step in steps:
            try:
                _do(step, at, fds)
            except TraceeError as e:
                name = errno.errorcode.get(e.errno, str(e.errno))
                raise PlacementError(
                    step.place, f"{e.what}: {name}: {_hint(step, e.errno)}", e.errno
                ) from None
        if steps:
            mounts.reenter_cwd()  # a working directory under a covered one: into the cover
    finally:
        for fd in fds.values():
            mounts.close(fd)


def _do(step: Step, at: Callable[[Where], str], fds: dict[str, int]) -> None:
    match step:
        case Unshare(user=user):
            mounts.unshare(mounts.CLONE_NEWNS | (mounts.CLONE_NEWUSER if user else 0))
        case MapIds(uid=uid, gid=gid):
            mounts.map_ids_to_themselves(uid, gid)
        case MakePrivate():
            mounts.mount(None, "/", None, mounts.MS_REC | mounts.MS_PRIVATE, None, "mount --make-rprivate /")
        case OpenPath(path=path):
            fds[path] = mounts.open_path(path)
        case MountTmpfs(target=target, mode=mode):
            mounts.mount("kmmio", at(target), "tmpfs", 0, f"mode={mode:o}", f"mount -t tmpfs on {target}")
        case MakeDir(path=path, mode=mode):
            mounts.mkdir(at(path), mode)
        case MakeFile(path=path):
            mounts.create_file(at(path))
        case Symlink(target=target, path=path):
            mounts.symlink(target, at(path))
        case MountOverlay(lower=lower, upper=upper, work=work, target=target, userxattr=ux):
            data = f"lowerdir={at(lower)},upperdir={at(upper)},workdir={at(work)}" + (
                ",userxattr" if ux else ""
            )
            mounts.mount(
                "kmmio", at(target), "overlay", 0, data, f"mount -t overlay (lowerdir {lower}) on {target}"
            )
        case Move(source=source, target=target):
            mounts.mount(
                at(source), at(target), None, mounts.MS_MOVE, None, f"mount --move {source} {target}"
            )
        case Bind(source=source, target=target, recursive=rec):
            flags = mounts.MS_BIND | (mounts.MS_REC if rec else 0)
            verb = "--rbind" if rec else "--bind"
            mounts.mount(at(source), at(target), None, flags, None, f"mount {verb} {source} {target}")
        case Unmount(target=target):
            mounts.umount(at(target), mounts.MNT_DETACH)
