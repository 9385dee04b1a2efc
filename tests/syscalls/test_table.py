"""The syscall table: numbers agree with the system headers, indexes are sane, spot checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kmmio.syscalls import table
from kmmio.syscalls.spec import (
    ArgLen,
    Buf,
    Class,
    Dir,
    Fixed,
    Iov,
    MMsg,
    Msg,
    Opaque,
    Syscall,
    Unsized,
    Use,
    Waitv,
)
from kmmio.syscalls.table import BY_NAME, I386_NAMES, SYSCALLS, lookup

HEADER_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
HEADER_32 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_32.h")
_DEFINE = re.compile(r"^#define __NR_(\w+)\s+(\d+)\s*$", re.M)

R, W, U, A = Dir.READS, Dir.WRITES, Dir.UPDATES, Dir.ACCESSES
S = Unsized()

#: Numbers newer than the headers of most distributions (syscall_64.tbl of Linux 6.18).
NEWER = {
    335: "uretprobe",
    336: "uprobe",
    451: "cachestat",
    452: "fchmodat2",
    453: "map_shadow_stack",
    454: "futex_wake",
    455: "futex_wait",
    456: "futex_requeue",
    457: "statmount",
    458: "listmount",
    459: "lsm_get_self_attr",
    460: "lsm_set_self_attr",
    461: "lsm_list_modules",
    462: "mseal",
    463: "setxattrat",
    464: "getxattrat",
    465: "listxattrat",
    466: "removexattrat",
    467: "open_tree_attr",
    468: "file_getattr",
    469: "file_setattr",
}


def _header(path: Path) -> dict[int, str]:
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    return {int(n): name for name, n in _DEFINE.findall(path.read_text())}


def test_numbers_agree_with_unistd_64() -> None:
    header = _header(HEADER_64)
    assert len(header) > 300
    for nr, name in header.items():
        assert nr in SYSCALLS, f"{nr} ({name}) missing"
        assert SYSCALLS[nr].name == name, nr
    top = max(header)
    assert {nr for nr in SYSCALLS if nr <= top} - set(NEWER) == set(header)


def test_numbers_past_the_header() -> None:
    for nr, name in NEWER.items():
        assert SYSCALLS[nr].name == name
    assert set(SYSCALLS) <= set(range(0, 337)) | set(range(424, 470))
    assert max(SYSCALLS) == 469


def test_the_keys_are_the_numbers_and_names_are_unique() -> None:
    for nr, sc in SYSCALLS.items():
        assert isinstance(sc, Syscall)
        assert sc.nr == nr
    assert len(BY_NAME) == len(SYSCALLS)
    for name, sc in BY_NAME.items():
        assert sc.name == name
        assert SYSCALLS[sc.nr] is sc


def test_lookup() -> None:
    assert lookup(0) is SYSCALLS[0]
    assert lookup(469) is BY_NAME["file_setattr"]
    for nr in (-1, 337, 400, 423, 470, 512, 547, 1 << 32):
        assert lookup(nr) is None


def _indexes(use: Use) -> list[int]:
    if isinstance(use, Buf):
        out = [use.arg]
        if isinstance(use.extent, ArgLen):
            out.append(use.extent.arg)
        return out
    if isinstance(use, Iov | MMsg):
        return [use.arg, use.count]
    if isinstance(use, Waitv):
        return [use.arg] if use.count == -1 else [use.arg, use.count]
    if isinstance(use, Msg):
        return [use.arg]
    assert isinstance(use, Opaque)
    return []


@pytest.mark.parametrize("sc", SYSCALLS.values(), ids=lambda sc: sc.name)
def test_uses_are_well_formed(sc: Syscall) -> None:
    pointers: list[int] = []
    lengths: list[int] = []
    assert len(set(sc.uses)) == len(sc.uses)
    assert sum(isinstance(u, Opaque) for u in sc.uses) <= 1
    for use in sc.uses:
        assert isinstance(use, Buf | Iov | Msg | MMsg | Waitv | Opaque)
        for i in _indexes(use):
            assert 0 <= i <= 5, (sc.name, use)
        if not isinstance(use, Opaque):
            pointers.append(use.arg)
        if isinstance(use, Buf):
            assert isinstance(use.dir, Dir)
            ext = use.extent
            if isinstance(ext, Fixed):
                assert ext.size > 0
            elif isinstance(ext, ArgLen):
                assert ext.scale >= 1
                assert ext.arg != use.arg
                lengths.append(ext.arg)
            else:
                assert isinstance(ext, Unsized)
            # A count describes the bytes of a buffer whose length is an argument.
            assert not use.counted or isinstance(ext, ArgLen), sc.name
        if isinstance(use, Iov | MMsg):
            assert use.count != use.arg
            lengths.append(use.count)
        if isinstance(use, Waitv):
            assert use.count == -1 or 0 <= use.count <= 5
    assert len(set(pointers)) == len(pointers), f"{sc.name}: an argument described twice"
    assert not set(pointers) & set(lengths), f"{sc.name}: a length argument is also a pointer"


# (name, number, uses, class)
SPOT = [
    ("read", 0, (Buf(1, W, ArgLen(2), True),), Class.DIRECT),
    ("write", 1, (Buf(1, R, ArgLen(2), True),), Class.DIRECT),
    ("open", 2, (Buf(0, R, S),), Class.DIRECT),
    ("close", 3, (), Class.NONE),
    ("fstat", 5, (Buf(1, W, Fixed(144)),), Class.DIRECT),
    ("poll", 7, (Buf(0, U, ArgLen(1, 8)),), Class.DIRECT),
    ("lseek", 8, (), Class.NONE),
    ("mmap", 9, (), Class.NONE),
    ("munmap", 11, (), Class.NONE),
    ("brk", 12, (), Class.NONE),
    ("rt_sigaction", 13, (Buf(1, R, Fixed(32)), Buf(2, W, Fixed(32))), Class.DIRECT),
    ("rt_sigprocmask", 14, (Buf(1, R, ArgLen(3)), Buf(2, W, ArgLen(3))), Class.DIRECT),
    ("ioctl", 16, (Opaque(),), Class.NESTED),
    ("pread64", 17, (Buf(1, W, ArgLen(2), True),), Class.DIRECT),
    ("pwrite64", 18, (Buf(1, R, ArgLen(2), True),), Class.DIRECT),
    ("readv", 19, (Iov(1, 2, W),), Class.NESTED),
    ("writev", 20, (Iov(1, 2, R),), Class.NESTED),
    ("pipe", 22, (Buf(0, W, Fixed(8)),), Class.DIRECT),
    ("select", 23, (Buf(1, U, S), Buf(2, U, S), Buf(3, U, S), Buf(4, U, Fixed(16))), Class.DIRECT),
    ("sched_yield", 24, (), Class.NONE),
    ("madvise", 28, (), Class.NONE),
    ("dup2", 33, (), Class.NONE),
    ("nanosleep", 35, (Buf(0, R, Fixed(16)), Buf(1, W, Fixed(16))), Class.DIRECT),
    ("getpid", 39, (), Class.NONE),
    ("connect", 42, (Buf(1, R, ArgLen(2)),), Class.DIRECT),
    ("accept", 43, (Buf(1, W, S), Buf(2, U, Fixed(4))), Class.DIRECT),
    ("sendto", 44, (Buf(1, R, ArgLen(2), True), Buf(4, R, ArgLen(5))), Class.DIRECT),
    ("recvfrom", 45, (Buf(1, W, ArgLen(2), True), Buf(4, W, S), Buf(5, U, Fixed(4))), Class.DIRECT),
    ("sendmsg", 46, (Msg(1, R),), Class.NESTED),
    ("recvmsg", 47, (Msg(1, W),), Class.NESTED),
    ("setsockopt", 54, (Buf(3, R, ArgLen(4)),), Class.DIRECT),
    ("getsockopt", 55, (Buf(3, U, S), Buf(4, U, Fixed(4))), Class.DIRECT),
    ("clone", 56, (Buf(2, A, Fixed(4)), Buf(3, A, Fixed(4))), Class.DIRECT),
    ("execve", 59, (Buf(0, R, S), Opaque()), Class.NESTED),
    ("exit", 60, (), Class.NONE),
    ("wait4", 61, (Buf(1, W, Fixed(4)), Buf(3, W, Fixed(144))), Class.DIRECT),
    ("kill", 62, (), Class.NONE),
    ("uname", 63, (Buf(0, W, Fixed(390)),), Class.DIRECT),
    ("semop", 65, (Buf(1, R, ArgLen(2, 6)),), Class.DIRECT),
    ("fcntl", 72, (Buf(2, U, Fixed(32)),), Class.DIRECT),
    ("getcwd", 79, (Buf(0, W, ArgLen(1), True),), Class.DIRECT),
    ("rename", 82, (Buf(0, R, S), Buf(1, R, S)), Class.DIRECT),
    ("readlink", 89, (Buf(0, R, S), Buf(1, W, ArgLen(2), True)), Class.DIRECT),
    ("gettimeofday", 96, (Buf(0, W, Fixed(16)), Buf(1, W, Fixed(8))), Class.DIRECT),
    ("getrusage", 98, (Buf(1, W, Fixed(144)),), Class.DIRECT),
    ("sysinfo", 99, (Buf(0, W, Fixed(112)),), Class.DIRECT),
    ("times", 100, (Buf(0, W, Fixed(32)),), Class.DIRECT),
    ("ptrace", 101, (Opaque(),), Class.NESTED),
    ("syslog", 103, (Buf(1, W, ArgLen(2)),), Class.DIRECT),
    ("getgroups", 115, (Buf(1, W, ArgLen(0, 4)),), Class.DIRECT),
    ("sigaltstack", 131, (Buf(0, R, Fixed(24)), Buf(1, W, Fixed(24))), Class.DIRECT),
    ("statfs", 137, (Buf(0, R, S), Buf(1, W, Fixed(120))), Class.DIRECT),
    ("sched_setparam", 142, (Buf(1, R, Fixed(4)),), Class.DIRECT),
    ("mlock", 149, (), Class.NONE),
    ("modify_ldt", 154, (Buf(1, U, ArgLen(2)),), Class.DIRECT),
    ("_sysctl", 156, (Opaque(),), Class.NESTED),
    ("prctl", 157, (Opaque(),), Class.NESTED),
    ("arch_prctl", 158, (Buf(1, W, Fixed(8)),), Class.DIRECT),
    ("setrlimit", 160, (Buf(1, R, Fixed(16)),), Class.DIRECT),
    ("mount", 165, (Buf(0, R, S), Buf(1, R, S), Buf(2, R, S), Opaque()), Class.NESTED),
    ("iopl", 172, (), Class.NONE),
    ("tuxcall", 184, (), Class.NONE),
    ("setxattr", 188, (Buf(0, R, S), Buf(1, R, S), Buf(2, R, ArgLen(3))), Class.DIRECT),
    ("getxattr", 191, (Buf(0, R, S), Buf(1, R, S), Buf(2, W, ArgLen(3), True)), Class.DIRECT),
    ("futex", 202, (Buf(0, U, Fixed(4)), Buf(3, R, Fixed(16)), Buf(4, U, Fixed(4))), Class.DIRECT),
    ("io_getevents", 208, (Buf(3, W, ArgLen(2, 32)), Buf(4, R, Fixed(16))), Class.DIRECT),
    ("io_submit", 209, (Opaque(),), Class.NESTED),
    ("remap_file_pages", 216, (), Class.NONE),
    ("getdents64", 217, (Buf(1, W, ArgLen(2), True),), Class.DIRECT),
    ("set_tid_address", 218, (Buf(0, A, Fixed(4)),), Class.DIRECT),
    ("clock_gettime", 228, (Buf(1, W, Fixed(16)),), Class.DIRECT),
    ("clock_nanosleep", 230, (Buf(2, R, Fixed(16)), Buf(3, W, Fixed(16))), Class.DIRECT),
    ("epoll_wait", 232, (Buf(1, W, ArgLen(2, 12)),), Class.DIRECT),
    ("epoll_ctl", 233, (Buf(3, R, Fixed(12)),), Class.DIRECT),
    ("mbind", 237, (Buf(3, R, S),), Class.DIRECT),
    ("waitid", 247, (Buf(2, W, Fixed(128)), Buf(4, W, Fixed(144))), Class.DIRECT),
    ("keyctl", 250, (Opaque(),), Class.NESTED),
    ("openat", 257, (Buf(1, R, S),), Class.DIRECT),
    ("newfstatat", 262, (Buf(1, R, S), Buf(2, W, Fixed(144))), Class.DIRECT),
    ("ppoll", 271, (Buf(0, U, ArgLen(1, 8)), Buf(2, U, Fixed(16)), Buf(3, R, ArgLen(4))), Class.DIRECT),
    ("set_robust_list", 273, (Buf(0, A, ArgLen(1)),), Class.DIRECT),
    ("vmsplice", 278, (Iov(1, 2, A),), Class.NESTED),
    ("move_pages", 279, (Opaque(),), Class.NESTED),
    ("epoll_pwait", 281, (Buf(1, W, ArgLen(2, 12)), Buf(4, R, ArgLen(5))), Class.DIRECT),
    ("accept4", 288, (Buf(1, W, S), Buf(2, U, Fixed(4))), Class.DIRECT),
    ("pipe2", 293, (Buf(0, W, Fixed(8)),), Class.DIRECT),
    ("preadv2", 327, (Iov(1, 2, W),), Class.NESTED),
    ("recvmmsg", 299, (MMsg(1, 2, W), Buf(4, U, Fixed(16))), Class.NESTED),
    ("prlimit64", 302, (Buf(2, R, Fixed(16)), Buf(3, W, Fixed(16))), Class.DIRECT),
    ("sendmmsg", 307, (MMsg(1, 2, R),), Class.NESTED),
    ("process_vm_readv", 310, (Iov(1, 2, W), Buf(3, R, ArgLen(4, 16))), Class.NESTED),
    ("getrandom", 318, (Buf(0, W, ArgLen(1), True),), Class.DIRECT),
    ("execveat", 322, (Buf(1, R, S), Opaque()), Class.NESTED),
    ("mlock2", 325, (), Class.NONE),
    ("pkey_mprotect", 329, (), Class.NONE),
    ("statx", 332, (Buf(1, R, S), Buf(4, W, Fixed(256))), Class.DIRECT),
    ("rseq", 334, (Buf(0, A, ArgLen(1)),), Class.DIRECT),
    ("io_uring_enter", 426, (Opaque(),), Class.NESTED),
    ("clone3", 435, (Buf(0, R, ArgLen(1)), Opaque()), Class.NESTED),
    ("openat2", 437, (Buf(1, R, S), Buf(2, R, ArgLen(3))), Class.DIRECT),
    ("process_madvise", 440, (Buf(1, R, ArgLen(2, 16)), Opaque()), Class.NESTED),
    ("futex_waitv", 449, (Waitv(0, 1), Buf(3, R, Fixed(16))), Class.NESTED),
    ("cachestat", 451, (Buf(1, R, Fixed(16)), Buf(2, W, Fixed(40))), Class.DIRECT),
    ("futex_wake", 454, (Buf(0, A, Fixed(4)),), Class.DIRECT),
    ("futex_wait", 455, (Buf(0, R, Fixed(4)), Buf(4, R, Fixed(16))), Class.DIRECT),
    ("futex_requeue", 456, (Waitv(0, -1),), Class.NESTED),
    ("statmount", 457, (Buf(0, R, S), Buf(1, W, ArgLen(2))), Class.DIRECT),
    ("listmount", 458, (Buf(0, R, S), Buf(1, W, ArgLen(2, 8))), Class.DIRECT),
    ("mseal", 462, (), Class.NONE),
    ("file_getattr", 468, (Buf(1, R, S), Buf(2, W, ArgLen(3))), Class.DIRECT),
]


@pytest.mark.parametrize(("name", "nr", "uses", "cls"), SPOT, ids=[s[0] for s in SPOT])
def test_spot_checks(name: str, nr: int, uses: tuple[Use, ...], cls: Class) -> None:
    sc = BY_NAME[name]
    assert sc.nr == nr
    assert sc.uses == uses
    assert sc.cls is cls


def test_spot_checks_cover_every_group() -> None:
    assert len(SPOT) >= 40
    assert {cls for *_, cls in SPOT} == set(Class)


def test_every_class_is_populated() -> None:
    counts = {cls: sum(sc.cls is cls for sc in SYSCALLS.values()) for cls in Class}
    assert all(n > 20 for n in counts.values()), counts


def test_i386_names_agree_with_unistd_32() -> None:
    header = _header(HEADER_32)
    assert set(I386_NAMES.values()) >= {"mmap", "mmap2", "munmap", "mprotect", "mremap", "shmat", "shmdt"}
    for nr, name in I386_NAMES.items():
        assert header.get(nr) == name, (nr, name)


def test_the_table_imports_only_the_vocabulary() -> None:
    path = Path(table.__file__)
    allowed = {"__future__", "kmmio.syscalls.spec", "typing", "collections", "collections.abc"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= allowed
        elif isinstance(node, ast.ImportFrom):
            assert node.module in allowed
