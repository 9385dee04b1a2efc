"""Where sysfs, device nodes and procfs are read from: the real ones, or trees laid out like them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True, slots=True)
class Roots:
    """The directories standing for ``/sys``, ``/dev`` and ``/proc``.

    A path under ``sys`` means what the same path under ``/sys`` would mean (likewise ``dev``):
    a test, or a simulated device, lays out a tree like the real one and points kmmio at it
    with ``$KMMIO_SYSFS`` and ``$KMMIO_DEV``.  ``proc`` (``/proc`` unless given) is where a
    traced program's ``fd`` and ``fdinfo`` are read, for VFIO device fds.
    """

    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    proc: Path = Path("/proc")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Roots:
        """``$KMMIO_SYSFS`` (else ``/sys``) and ``$KMMIO_DEV`` (else ``/dev``); an empty value
        counts as unset."""
        env = os.environ if environ is None else environ
        return cls(Path(env.get("KMMIO_SYSFS") or "/sys"), Path(env.get("KMMIO_DEV") or "/dev"))

    def sys_relative(self, path: str) -> PurePosixPath | None:
        """``path`` relative to the sysfs root, or None if it is not under it."""
        return _relative(path, self.sys)

    def dev_relative(self, path: str) -> PurePosixPath | None:
        """``path`` relative to the device-node root, or None if it is not under it."""
        return _relative(path, self.dev)

    def kernel_sys_path(self, path: str) -> Path | None:
        """A path the kernel printed as ``/sys/...`` (fdinfo's ``vfio-device-syspath``), moved
        under the sysfs root."""
        rel = _relative(path, Path("/sys"))
        return None if rel is None else self.sys / rel


def _relative(path: str, root: Path) -> PurePosixPath | None:
    """/proc/PID/maps shows a mapped file's path with symbolic links resolved, so the root is
    tried as given and resolved."""
    if not path.startswith("/"):
        return None
    p = PurePosixPath(os.path.normpath(path))
    for base in dict.fromkeys((PurePosixPath(os.path.normpath(os.path.abspath(root))), _resolved(root))):
        if p.is_relative_to(base):
            return p.relative_to(base)
    return None


def _resolved(root: Path) -> PurePosixPath:
    try:
        return PurePosixPath(root.resolve())
    except OSError:
        return PurePosixPath(os.path.abspath(root))
