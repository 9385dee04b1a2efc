"""Mount namespaces and mounts: the calls :mod:`kmmio.sim.placement` makes in the child.

``unshare``, ``mount`` and ``umount2`` through libc (the standard library has
``os.unshare`` only from Python 3.12, and no ``mount`` at all), and the few plain file calls
a placement needs (``mkdir``, ``open``, ``symlink``...), each raising
:class:`~kmmio.errors.TraceeError` carrying errno and a short description of the call
(``mount --bind /proc/self/fd/5 /dev/uio0``), never ``OSError``.

Everything here is a plain syscall: it runs in the forked child of the tracer before
``execve`` (one thread, no locks taken), and in the tracer only to read what it plans from
(:func:`mountinfo`, :func:`has_cap_sys_admin`).
"""

from __future__ import annotations

import ctypes
import errno
import os

from kmmio.errors import TraceeError

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000

MS_NOSUID = 1 << 1
MS_NODEV = 1 << 2
MS_BIND = 1 << 12
MS_MOVE = 1 << 13
MS_REC = 1 << 14
MS_PRIVATE = 1 << 18

MNT_DETACH = 2

CAP_SYS_ADMIN = 21

_libc = ctypes.CDLL(None, use_errno=True)
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_mount.restype = ctypes.c_int
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    """``unshare(flags)`` for the calling process (``CLONE_NEWNS``, ``CLONE_NEWUSER``)."""
    if _unshare(flags) != 0:
        names = [
            n for n, bit in (("CLONE_NEWUSER", CLONE_NEWUSER), ("CLONE_NEWNS", CLONE_NEWNS)) if flags & bit
        ]
        raise TraceeError(f"unshare({'|'.join(names) or hex(flags)})", ctypes.get_errno() or errno.EIO)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None, what: str
) -> None:
    """``mount(2)``; ``what`` describes the call in the error (``mount --move /dev/shm ...``)."""
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise TraceeError(what, ctypes.get_errno() or errno.EIO)


def umount(target: str, flags: int = 0) -> None:
    """``umount2(target, flags)`` (``MNT_DETACH``: lazily)."""
    if _umount2(_b(target), flags) != 0:
        raise TraceeError(f"umount {target}", ctypes.get_errno() or errno.EIO)


def _os_error(what: str, e: OSError) -> TraceeError:
    return TraceeError(what, e.errno or errno.EIO)


def open_path(path: str) -> int:
    """An ``O_PATH | O_CLOEXEC`` descriptor of ``path``: a handle that keeps naming the
    same file whatever is mounted over its path later (``/proc/self/fd/N``)."""
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise _os_error(f"open {path}", e) from None


def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def mkdir(path: str, mode: int = 0o755) -> None:
    try:
        os.mkdir(path, mode)
    except OSError as e:
        raise _os_error(f"mkdir {path}", e) from None


def create_file(path: str, mode: int = 0o600) -> None:
    """A new empty regular file at ``path`` (it must not exist)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode))
    except OSError as e:
        raise _os_error(f"create {path}", e) from None


def symlink(target: str, path: str) -> None:
    try:
        os.symlink(target, path)
    except OSError as e:
        raise _os_error(f"symlink {path}", e) from None


def chmod(path: str, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as e:
        raise _os_error(f"chmod {path}", e) from None


def reenter_cwd() -> None:
    """``chdir`` to the working directory's own path: once something is mounted over it (or
    over a directory above it), relative paths lead into what is mounted there now.  A
    working directory that no longer has a path is left as it is."""
    try:
        os.chdir(os.getcwd())
    except OSError:
        pass


def write_file(path: str, text: str) -> None:
    """One ``write`` of ``text`` to an existing file (``/proc/self/uid_map``...)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _os_error(f"open {path}", e) from None
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise _os_error(f"write {path}", e) from None
    finally:
        os.close(fd)


def map_ids_to_themselves(uid: int, gid: int) -> None:
    """In a user namespace just made: ``uid`` and ``gid`` (the caller's, from outside) stand
    for themselves inside; ``setgroups`` is denied first, as the kernel requires of an
    unprivileged ``gid_map``."""
    write_file("/proc/self/uid_map", f"{uid} {uid} 1\n")
    write_file("/proc/self/setgroups", "deny\n")
    write_file("/proc/self/gid_map", f"{gid} {gid} 1\n")


def mountinfo(pid: int | str = "self") -> str:
    """The text of ``/proc/PID/mountinfo``."""
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise _os_error(f"read /proc/{pid}/mountinfo", e) from None


def has_cap_sys_admin() -> bool:
    """Whether this process has ``CAP_SYS_ADMIN`` in its effective set (``CapEff``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0
