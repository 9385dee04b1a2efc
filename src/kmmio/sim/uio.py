"""A simulated UIO device's file descriptor: interrupts as UIO gives them.

UIO's ``read(fd, &count, 4)`` blocks until an interrupt came since this fd last read, then
gives the total count; ``write(fd, &on, 4)`` enables (1) or disables (0) the interrupt;
``poll``/``epoll`` see the fd readable when ``read`` would not block.  Inside a simulation
the device's path is a regular file (mappable, but always "readable"), so kmmio answers
these calls itself, at their seccomp stops:

* each fd of the program open on the device gets an eventfd of its own (made inside the
  program, on the first call that needs one); the tracer holds a duplicate
  (``pidfd_getfd``) and writes 1 to each when the model calls ``irq()``, so that a reader
  blocked on every fd wakes, as UIO wakes every listener.
* ``open``: a new fd on the device has seen the interrupts so far (UIO's listener).
* ``read`` of 4 bytes: when an interrupt came since the fd last read, the call is skipped
  and answered with the count at once; otherwise it becomes ``read(eventfd, scratch, 8)``,
  which sleeps in the kernel (signals interrupt it as they would UIO's read), and its exit
  writes the count into the program's buffer and returns 4.  A non-blocking fd gets
  ``EAGAIN``; another size ``EINVAL`` (as UIO).
* ``write`` of 4 bytes: ``irq_control(value)`` of the model if it has one, 4 returned.
* ``poll``/``ppoll``: with nothing pending, the fd's entries point at its eventfd while
  the call runs (and get their fd back after; a ``poll`` cut short by a stop is made again
  whole, not through ``restart_syscall``, which would find its own fd there);
  ``epoll_ctl`` registers the fd's eventfd for it, written at once when an interrupt is
  pending.
* ``select``/``pselect6``: the same, on a copy of the read set made below the stack (the
  eventfd's bit for the fd's); the program's set gets the answer with its own fd.

Interrupts the model raises while disabled are kept and given when it enables them.  What
a fd has seen is kept per open file, as UIO keeps it: a ``dup`` of a device fd, or one inherited across
``fork``, shares it (told by ``kcmp``).
"""

from __future__ import annotations

import errno
import os
import select
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kmmio.backend import _ptrace as pt
from kmmio.backend.devfd import borrow_fd, same_file
from kmmio.errors import TraceeError
from kmmio.sim.device import ModelFailure, said
from kmmio.syscalls import numbers as nr

if TYPE_CHECKING:
    from kmmio.ptrace.process import Process, Thread
    from kmmio.sim.device import SimDevice

#: The syscalls the seccomp filter must stop for a simulated UIO device.
SYSCALLS = (
    nr.READ,
    nr.WRITE,
    nr.POLL,
    nr.PPOLL,
    nr.SELECT,
    nr.PSELECT6,
    nr.EPOLL_CTL,
    nr.OPEN,
    nr.OPENAT,
    nr.OPENAT2,
)

_EFD_CLOEXEC = 0o2000000
_ERESTARTNOHAND, _ERESTART_RESTARTBLOCK = 514, 516
_O_NONBLOCK = 0o4000
_ARGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")


@dataclass
class _Flight:
    """A call taken over, until its exit: what to do then."""

    what: str  # "answer", "read", "open", "poll", "select", "restore"
    regs: object  # the thread's registers at entry
    device: SimDevice | None = None
    fd: int = -1
    ret: int = 0
    restore: list[tuple[int, bytes]] = field(default_factory=list)
    #: select: (the program's fd, the eventfd standing for it), and where the sets are:
    #: (the copy, its size, the program's read set, its size).
    swaps: list[tuple[int, int]] = field(default_factory=list)
    sets: tuple[int, int, int, int] = (0, 0, 0, 0)


class UioIrqs:
    """The interrupts of the UIO devices of a simulation (see the module docstring)."""

    def __init__(self, devices: list[SimDevice]) -> None:
        self.devices = devices
        #: (pid, fd) → (the device, the eventfd's number in the program, the tracer's duplicate).
        self._eventfds: dict[tuple[int, int], tuple[SimDevice, int, int]] = {}
        #: An open file (named by the first (pid, fd) seen of it) → the count it read last.
        self._seen: dict[tuple[int, int], int] = {}
        #: (pid, fd) → the open file it is (a ``dup`` or an inherited fd shares its count).
        self._file: dict[tuple[int, int], tuple[int, int]] = {}
        self._latched: dict[str, int] = {}

    # -- the model's side -------------------------------------------------------------------

    def irq(self, device: SimDevice) -> None:
        """The model raised its interrupt."""
        if not device.irq_enabled:
            self._latched[device.path] = self._latched.get(device.path, 0) + 1
            return
        device.irq_count = (device.irq_count + 1) & 0xFFFFFFFF
        for dev, _, mine in self._eventfds.values():
            if dev is device:
                _signal(mine)

    def control(self, device: SimDevice, value: int) -> None:
        device.irq_enabled = bool(value)
        handler = getattr(device.model, "irq_control", None)
        if callable(handler):
            try:
                handler(value)
            except Exception as exc:
                raise ModelFailure(device.path, "irq_control", 0, 4, said(exc), exc) from exc
        if device.irq_enabled:
            for _ in range(self._latched.pop(device.path, 0)):
                self.irq(device)

    # -- the program's side -----------------------------------------------------------------

    def device_of(self, proc: Process, fd: int) -> SimDevice | None:
        """The simulated device the program's ``fd`` is open on, if any."""
        if fd < 0 or fd > 1 << 20:
            return None
        try:
            st = os.stat(f"/proc/{proc.pid}/fd/{fd}")
        except OSError:
            return None
        for d in self.devices:
            if d.inode and (st.st_dev, st.st_ino) == (d.dev, d.inode) and d.path.startswith("/dev/uio"):
                return d
        return None

    def entry(self, thread: Thread, number: int, args: tuple[int, ...]) -> bool:
        proc = thread.proc
        if number in (nr.OPEN, nr.OPENAT, nr.OPENAT2):
            # Seen at its exit: a new fd has seen every interrupt so far, as UIO's open.
            thread.served = _Flight("open", pt.get_regs(thread.tid))
            return True
        if number in (nr.READ, nr.WRITE, nr.EPOLL_CTL):
            fd = args[2] if number == nr.EPOLL_CTL else args[0]
            device = self.device_of(proc, _int(fd))
            if device is None:
                return False
            if number == nr.WRITE:
                return self._write(thread, device, args)
            if number == nr.READ:
                return self._read(thread, device, _int(fd), args)
            return self._epoll_ctl(thread, device, args)
        if number in (nr.POLL, nr.PPOLL):
            return self._poll(thread, args)
        if number in (nr.SELECT, nr.PSELECT6):
            return self._select(thread, args)
        return False

    def _answer(self, thread: Thread, ret: int) -> bool:
        """Skip the call (it becomes ``getpid``) and return ``ret`` at its exit."""
        regs = pt.get_regs(thread.tid)
        pt.set_regs(thread.tid, regs.replace(orig_rax=nr.GETPID))
        thread.served = _Flight("answer", regs, ret=ret)
        return True

    def _write(self, thread: Thread, device: SimDevice, args: tuple[int, ...]) -> bool:
        if args[2] != 4:
            return self._answer(thread, -errno.EINVAL)
        try:
            (value,) = struct.unpack("<i", thread.proc.read(args[1], 4))
        except TraceeError:
            return self._answer(thread, -errno.EFAULT)
        self.control(device, value)
        return self._answer(thread, 4)

    def _read(self, thread: Thread, device: SimDevice, fd: int, args: tuple[int, ...]) -> bool:
        proc = thread.proc
        if args[2] != 4:
            return self._answer(thread, -errno.EINVAL)
        key = self._open_file(proc.pid, fd)
        if device.irq_count != self._seen.get(key, 0):
            if not self._give(thread, device, key, args[1]):
                return self._answer(thread, -errno.EFAULT)
            return self._answer(thread, 4)
        if _flags(proc.pid, fd) & _O_NONBLOCK:
            return self._answer(thread, -errno.EAGAIN)
        efd = self._eventfd(thread, device, fd)
        if efd is None:
            return True  # made in the program: its read is made again, and comes back here
        self._drain(proc.pid, fd)
        regs = pt.get_regs(thread.tid)
        scratch = (regs.rsp - 128 - 16) & ~15  # below the red zone
        pt.set_regs(thread.tid, regs.replace(rdi=efd, rsi=scratch, rdx=8))
        thread.served = _Flight("read", regs, device, fd)
        return True

    def _give(self, thread: Thread, device: SimDevice, key: tuple[int, int], buf: int) -> bool:
        try:
            assert thread.proc.mem is not None
            thread.proc.mem.write(buf, struct.pack("<I", device.irq_count))
        except (TraceeError, AssertionError):
            return False
        self._seen[key] = device.irq_count
        for fd_key, file in self._file.items():  # seen: their eventfds say nothing is pending
            if file == key:
                self._drain(*fd_key)
        return True

    def _epoll_ctl(self, thread: Thread, device: SimDevice, args: tuple[int, ...]) -> bool:
        efd = self._eventfd(thread, device, _int(args[2]))
        if efd is None:
            return True
        regs = pt.get_regs(thread.tid)
        pt.set_regs(thread.tid, regs.replace(rdx=efd))
        thread.served = _Flight("restore", regs)
        return True

    def _poll(self, thread: Thread, args: tuple[int, ...]) -> bool:
        proc = thread.proc
        nfds = args[1]
        if nfds == 0 or nfds > 4096:
            return False
        try:
            table = proc.read(args[0], 8 * nfds)
        except TraceeError:
            return False
        patches: list[tuple[int, bytes]] = []
        restore: list[tuple[int, bytes]] = []
        for i in range(nfds):
            fd = struct.unpack_from("<i", table, 8 * i)[0]
            device = self.device_of(proc, fd)
            if device is None:
                continue
            if device.irq_count != self._seen.get(self._open_file(proc.pid, fd), 0):
                continue  # pending: the regular file is ready, as the device would be
            efd = self._eventfd(thread, device, fd)
            if efd is None:
                return True  # made again
            at = args[0] + 8 * i
            patches.append((at, struct.pack("<i", efd)))
            restore.append((at, struct.pack("<i", fd)))
        if not patches:
            return False
        assert proc.mem is not None
        for at, data in patches:
            proc.mem.write(at, data)
        thread.served = _Flight("poll", pt.get_regs(thread.tid), restore=restore)
        return True

    def _select(self, thread: Thread, args: tuple[int, ...]) -> bool:
        """``select``/``pselect6`` with a device fd in its read set and nothing pending: the
        call runs on a copy of the read set (below the stack) where the fd's eventfd stands
        for it, and the program's set gets the answer back with its own fd."""
        proc = thread.proc
        nfds, readfds = args[0], args[1]
        if readfds == 0 or not 0 < nfds <= 1024:
            return False
        size = (nfds + 63) // 64 * 8
        try:
            bits = int.from_bytes(proc.read(readfds, size), "little")
        except TraceeError:
            return False
        swaps: list[tuple[int, int]] = []
        for fd in range(nfds):
            if not bits >> fd & 1:
                continue
            device = self.device_of(proc, fd)
            if device is None or device.irq_count != self._seen.get(self._open_file(proc.pid, fd), 0):
                continue  # not a device, or pending: the regular file is ready, as the device
            efd = self._eventfd(thread, device, fd)
            if efd is None:
                return True  # made again
            swaps.append((fd, efd))
        if not swaps:
            return False
        for fd, efd in swaps:
            bits = (bits & ~(1 << fd)) | (1 << efd)
        new_nfds = max(nfds, *(efd + 1 for _, efd in swaps))
        new_size = (new_nfds + 63) // 64 * 8
        regs = pt.get_regs(thread.tid)
        copy = (regs.rsp - 128 - 256 - new_size) & ~15  # below the red zone
        assert proc.mem is not None
        proc.mem.write(copy, bits.to_bytes(new_size, "little"))
        pt.set_regs(thread.tid, regs.replace(rdi=new_nfds, rsi=copy))
        thread.served = _Flight("select", regs, swaps=swaps, sets=(copy, new_size, readfds, size))
        return True

    def exit(self, thread: Thread) -> bool:
        flight = thread.served
        if not isinstance(flight, _Flight):
            return False
        thread.served = None
        proc = thread.proc
        regs = pt.get_regs(thread.tid)
        ret = _int(regs.rax)
        entry = flight.regs
        args = {name: getattr(entry, name) for name in _ARGS}
        if flight.what == "answer":
            ret = flight.ret
        elif flight.what == "read" and ret == 8:
            assert flight.device is not None
            key = self._open_file(proc.pid, flight.fd)
            ret = 4 if self._give(thread, flight.device, key, args["rsi"]) else -errno.EFAULT
        elif flight.what == "open" and ret >= 0:
            device = self.device_of(proc, ret)
            if device is not None:  # a new open file
                self._file[(proc.pid, ret)] = (proc.pid, ret)
                self._seen[(proc.pid, ret)] = device.irq_count
        elif flight.what == "select" and ret >= 0:
            copy, new_size, readfds, size = flight.sets
            assert proc.mem is not None
            try:
                got = int.from_bytes(proc.read(copy, new_size), "little")
                mine = got & ((1 << (8 * size)) - 1)
                for fd, efd in flight.swaps:
                    mine &= ~(1 << efd)
                    if got >> efd & 1:
                        mine |= 1 << fd
                proc.mem.write(readfds, mine.to_bytes(size, "little"))
            except TraceeError:
                ret = -errno.EFAULT
        elif flight.what == "select" and ret == -_ERESTART_RESTARTBLOCK:
            ret = -_ERESTARTNOHAND
        elif flight.what == "poll":
            assert proc.mem is not None
            for at, data in flight.restore:
                try:
                    proc.mem.write(at, data)
                except TraceeError:
                    pass
            if ret == -_ERESTART_RESTARTBLOCK:
                ret = -_ERESTARTNOHAND  # made again whole, through its seccomp stop
        pt.set_regs(thread.tid, regs.replace(rax=ret & (1 << 64) - 1, **args))
        return True

    def _eventfd(self, thread: Thread, device: SimDevice, fd: int) -> int | None:
        """The eventfd standing for the program's ``fd`` on ``device``; ``None`` when it
        was just made inside the program (the thread's syscall is then made again).  A new
        one is written at once when the fd has an interrupt it has not read."""
        proc = thread.proc
        key = (proc.pid, fd)
        have = self._eventfds.get(key)
        if have is not None and have[0] is device:
            return have[1]
        if have is not None:  # the number now names another device's fd
            os.close(self._eventfds.pop(key)[2])
        efd = proc.inject_syscall(thread, nr.EVENTFD2, (0, _EFD_CLOEXEC))
        if efd < 0:
            raise TraceeError("eventfd2 in the program", -efd, proc.pid)
        mine = borrow_fd(proc.pid, efd)
        self._eventfds[key] = (device, efd, mine)
        if device.irq_count != self._seen.get(self._open_file(*key), 0):
            _signal(mine)
        return None

    def _open_file(self, pid: int, fd: int) -> tuple[int, int]:
        """The open file ``fd`` of ``pid`` is, named by its first (pid, fd) seen: a ``dup``
        or an fd inherited across ``fork`` is found the same (``kcmp``) and shares what it
        has seen, as UIO keeps it per open file."""
        key = (pid, fd)
        file = self._file.get(key)
        if file is None:
            file = next(
                (f for f in set(self._file.values()) if f != key and same_file(pid, fd, *f)),
                key,
            )
            self._file[key] = file
            if file != key and key in self._seen:
                del self._seen[key]
        return file

    def _drain(self, pid: int, fd: int) -> None:
        have = self._eventfds.get((pid, fd))
        if have is None:
            return
        mine = have[2]
        while select.select([mine], [], [], 0)[0]:
            os.read(mine, 8)

    def forget(self, pid: int) -> None:
        """A program exec'd or ended: its eventfds are gone."""
        for key in [k for k in self._eventfds if k[0] == pid]:
            os.close(self._eventfds.pop(key)[2])
        for seen in [k for k in self._seen if k[0] == pid]:
            del self._seen[seen]
        for fd_key in [k for k, f in self._file.items() if pid in (k[0], f[0])]:
            del self._file[fd_key]


def _signal(mine: int) -> None:
    try:
        os.write(mine, struct.pack("<Q", 1))
    except OSError:
        pass


def _int(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _flags(pid: int, fd: int) -> int:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0
