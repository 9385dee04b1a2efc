"""How a syscall uses user memory: the vocabulary of :mod:`kmmio.syscalls.table` (pure).

A traced mapping is armed (``PROT_NONE``), so the kernel cannot reach it either: a syscall
handed a pointer into it would fail with ``EFAULT`` or return short.  To let such a syscall
work as it would untraced, kmmio must know, for every syscall, which of its arguments are
pointers the kernel dereferences, in which direction and how far.  The table describes each
x86-64 syscall with the values below; the seccomp filter and the redirection planner read
it.

* :class:`Buf`: an argument pointing at bytes the kernel reads or writes in place.
* :class:`Iov`, :class:`Msg`, :class:`MMsg`, :class:`Waitv`: an argument pointing at a
  structure that holds further pointers (``struct iovec``, ``struct msghdr``...).
* :class:`Opaque`: the syscall may dereference pointers kmmio cannot describe (``ioctl``,
  ``io_submit``...): any argument that points into traced memory is redirected, and an
  ``EFAULT`` makes kmmio run the syscall again with the pages open.

Arguments the kernel never dereferences (numbers, file descriptors, addresses that only
name a range, as ``madvise``'s) are not described at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Dir(enum.Enum):
    """What the kernel does with the bytes (the word a ``MARK`` line uses)."""

    READS = "reads"
    WRITES = "writes"
    UPDATES = "updates"
    #: Unknown, or kept by the kernel for later (``set_robust_list``, ``sigaltstack``).
    ACCESSES = "accesses"


@dataclass(frozen=True, slots=True)
class Fixed:
    """A size known in advance: ``size`` bytes (a ``struct timespec`` is 16)."""

    size: int


@dataclass(frozen=True, slots=True)
class ArgLen:
    """A size given by another argument: ``args[arg] * scale`` bytes."""

    arg: int
    scale: int = 1


@dataclass(frozen=True, slots=True)
class Unsized:
    """A size the kernel decides (a NUL-terminated path, a struct of the kernel's choosing)."""


Extent = Fixed | ArgLen | Unsized


@dataclass(frozen=True, slots=True)
class Buf:
    """``args[arg]`` points at up to ``extent`` bytes the kernel accesses in place.

    ``counted``: on success the return value is the number of bytes moved (``read``,
    ``write``, ``recvfrom``...), so the log can say exactly how many were touched.
    ``optional``: a null pointer is allowed (nothing is accessed then).
    """

    arg: int
    dir: Dir
    extent: Extent
    counted: bool = False


@dataclass(frozen=True, slots=True)
class Iov:
    """``args[arg]`` is an array of ``args[count]`` ``struct iovec`` (16 bytes each) whose
    buffers the kernel reads or writes; ``counted`` as for :class:`Buf`."""

    arg: int
    count: int
    dir: Dir
    counted: bool = True


@dataclass(frozen=True, slots=True)
class Msg:
    """``args[arg]`` is a ``struct msghdr`` (56 bytes): name, iovecs, control data.

    ``dir`` is what happens to the data (``READS`` for ``sendmsg``, ``WRITES`` for
    ``recvmsg``, which also writes back ``msg_namelen``, ``msg_controllen`` and
    ``msg_flags``)."""

    arg: int
    dir: Dir


@dataclass(frozen=True, slots=True)
class MMsg:
    """``args[arg]`` is an array of ``args[count]`` ``struct mmsghdr`` (64 bytes each: a
    msghdr and the ``msg_len`` the kernel writes back)."""

    arg: int
    count: int
    dir: Dir


@dataclass(frozen=True, slots=True)
class Waitv:
    """``args[arg]`` is an array of ``args[count]`` ``struct futex_waitv`` (24 bytes each:
    ``val``, ``uaddr``, ``flags``, reserved); ``count`` -1 means a fixed 2 (``futex_requeue``)."""

    arg: int
    count: int


@dataclass(frozen=True, slots=True)
class Opaque:
    """The syscall may reach user memory through pointers kmmio cannot describe."""


Use = Buf | Iov | Msg | MMsg | Waitv | Opaque


class Class(enum.Enum):
    """How the seccomp filter treats a syscall once a process has traced mappings."""

    #: Reaches no user memory: never stopped.
    NONE = "none"
    #: Only :class:`Buf` arguments: stopped when one of them overlaps traced memory.
    DIRECT = "direct"
    #: Pointers inside structures, or unknown ones: always stopped (the tracer looks).
    NESTED = "nested"


@dataclass(frozen=True, slots=True)
class Syscall:
    """One x86-64 syscall: its number, name, and how it uses user memory."""

    nr: int
    name: str
    uses: tuple[Use, ...] = ()

    @property
    def cls(self) -> Class:
        if not self.uses:
            return Class.NONE
        if all(isinstance(u, Buf) for u in self.uses):
            return Class.DIRECT
        return Class.NESTED
