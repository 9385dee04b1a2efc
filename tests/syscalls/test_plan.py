"""The syscall planner, on made-up address spaces: no process, no kernel."""

from __future__ import annotations

import struct

import pytest

from kmmio.syscalls.plan import (
    RED_ZONE,
    Lend,
    NeedAliases,
    Redirect,
    Span,
    Spans,
    plan_syscall,
    touched,
)
from kmmio.syscalls.spec import Dir
from kmmio.syscalls.table import BY_NAME

T, ALIAS = 0x7F00_0000_0000, 0x7E00_0000_0000
SHARED = Span(T, T + 0x4000, 1, 0x10000, ALIAS)
PRIVATE = Span(0x6000_0000_0000, 0x6000_0000_1000, 2, 0x6000_0000_0000, None, aliasable=False)
SP = 0x7FFF_FFFF_F000
LOCAL = 0x5555_0000_0000  # untraced memory


class Memory:
    """Bytes at addresses, for the structures the planner reads."""

    def __init__(self) -> None:
        self.data: dict[int, bytes] = {}

    def put(self, addr: int, data: bytes) -> None:
        self.data[addr] = data

    def read(self, addr: int, size: int) -> bytes:
        for base, data in self.data.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base : addr - base + size]
        raise AssertionError(f"nothing at {addr:#x}")


def plan(name: str, *args: int, spans: tuple[Span, ...] = (SHARED, PRIVATE), mem: Memory | None = None):  # type: ignore[no-untyped-def]
    sc = BY_NAME[name]
    full = (*args, *(0,) * (6 - len(args)))
    return plan_syscall(sc, sc.nr, full, Spans(spans), (mem or Memory()).read, SP)


def test_nothing_traced_nothing_to_do() -> None:
    assert plan("write", 1, LOCAL, 100) is None
    assert plan("write", 1, T, 100, spans=()) is None
    assert plan("getppid") is None


def test_a_buffer_in_a_shared_mapping_goes_through_its_alias() -> None:
    p = plan("read", 3, T + 0x100, 64)
    assert isinstance(p, Redirect)
    assert p.nr == BY_NAME["read"].nr and p.args[:3] == (3, ALIAS + 0x100, 64) and not p.writes
    (t,) = p.touches
    assert (t.addr, t.size, t.dir, t.counted) == (T + 0x100, 64, Dir.WRITES, "ret")
    # Only the bytes the result counts were written.
    assert [(s.map_id, a, n, d) for s, a, n, d in touched(p.touches, 10, lambda a: 0)] == [
        (1, T + 0x100, 10, Dir.WRITES)
    ]
    assert touched(p.touches, -14, lambda a: 0) == []  # EFAULT: reached nothing


def test_a_mapping_without_its_alias_yet_asks_for_it() -> None:
    bare = Span(T, T + 0x4000, 1, 0, None)
    p = plan("write", 1, T, 8, spans=(bare,))
    assert isinstance(p, NeedAliases) and p.spans == (bare,)


def test_a_private_mapping_has_its_pages_lent() -> None:
    p = plan("write", 1, PRIVATE.start + 16, 32)
    assert isinstance(p, Lend) and p.ranges == ((PRIVATE.start + 16, PRIVATE.start + 48),)
    assert [t.dir for t in p.touches] == [Dir.READS]


def test_a_straddling_read_becomes_readv_over_its_pieces() -> None:
    below = Span(T + 0x1000, T + 0x2000, 3, 0, ALIAS)
    p = plan("read", 5, T + 0x1000 - 96, 192, spans=(below,))
    assert isinstance(p, Redirect) and p.nr == BY_NAME["readv"].nr
    fd, iov, count = p.args[:3]
    assert (fd, count) == (5, 2)
    ((at, data),) = p.writes
    assert at == iov and SP - RED_ZONE - at <= 64 and at % 16 == 0
    assert [struct.unpack_from("<QQ", data, 16 * i) for i in range(2)] == [
        (T + 0x1000 - 96, 96),
        (ALIAS, 96),
    ]
    (t,) = p.touches
    assert (t.addr, t.size, t.offset) == (T + 0x1000, 96, 96)
    assert [n for _, _, n, _ in touched(p.touches, 150, lambda a: 0)] == [54]


def test_pread64_keeps_its_offset_as_preadv() -> None:
    below = Span(T + 0x1000, T + 0x2000, 3, 0, ALIAS)
    p = plan("pread64", 5, T + 0x1000 - 8, 16, 4096, spans=(below,))
    assert isinstance(p, Redirect) and p.nr == BY_NAME["preadv"].nr and p.args[3:5] == (4096, 0)


def test_a_straddling_buffer_of_another_syscall_has_its_pages_lent() -> None:
    below = Span(T + 0x1000, T + 0x2000, 3, 0, ALIAS)
    p = plan("getrandom", T + 0x1000 - 8, 16, 0, spans=(below,))
    assert isinstance(p, Lend) and p.ranges == ((T + 0x1000, T + 0x1008),)


def test_readv_with_one_traced_iovec_of_three() -> None:
    mem = Memory()
    mem.put(LOCAL, struct.pack("<6Q", LOCAL + 0x100, 10, T + 0x40, 20, LOCAL + 0x200, 30))
    p = plan("readv", 4, LOCAL, 3, mem=mem)
    assert isinstance(p, Redirect) and p.args[2] == 3
    ((at, data),) = p.writes
    assert p.args[1] == at
    assert struct.unpack("<6Q", data) == (LOCAL + 0x100, 10, ALIAS + 0x40, 20, LOCAL + 0x200, 30)
    (t,) = p.touches
    assert (t.addr, t.size, t.offset) == (T + 0x40, 20, 10)
    assert [n for _, _, n, _ in touched(p.touches, 25, lambda a: 0)] == [15]


def test_recvmsg_with_its_msghdr_in_traced_memory_gets_the_fields_back() -> None:
    mem = Memory()
    hdr = T + 0x800
    mem.put(hdr, struct.pack("<QI4xQQQQI4x", 0, 0, LOCAL, 1, T + 0x900, 64, 0))
    mem.put(LOCAL, struct.pack("<QQ", LOCAL + 0x100, 8))
    p = plan("recvmsg", 3, hdr, 0, mem=mem)
    assert isinstance(p, Redirect)
    copy = p.args[1]
    assert dict(p.writes)[copy][32:40] == struct.pack("<Q", ALIAS + 0x900)  # msg_control
    assert p.copy_back == (
        (copy + 8, ALIAS + 0x808, 4, -1),
        (copy + 40, ALIAS + 0x828, 8, -1),
        (copy + 48, ALIAS + 0x830, 4, -1),
    )
    assert {(t.addr, t.dir) for t in p.touches} == {(hdr, Dir.UPDATES), (T + 0x900, Dir.WRITES)}


def test_recvmmsg_counts_each_message_by_its_msg_len() -> None:
    mem = Memory()
    entries = b""
    for i in range(2):
        entries += struct.pack("<QI4xQQQQI4x", 0, 0, LOCAL + 16 * i, 1, 0, 0, 0) + struct.pack("<I4x", 99)
    mem.put(LOCAL + 0x1000, entries)
    mem.put(LOCAL, struct.pack("<4Q", T, 20, LOCAL + 0x500, 28))
    p = plan("recvmmsg", 3, LOCAL + 0x1000, 2, 0, 0, mem=mem)
    assert isinstance(p, Redirect)
    array = p.args[1]
    copied = dict(p.writes)[array]
    assert struct.unpack_from("<I", copied, 56) == (0,)  # msg_len is the kernel's to write
    assert (array + 56, LOCAL + 0x1000 + 56, 4, 0) in p.copy_back
    assert (array + 64 + 56, LOCAL + 0x1000 + 64 + 56, 4, 1) in p.copy_back
    (t,) = p.touches
    assert t.counted == array + 56
    assert [n for _, _, n, _ in touched(p.touches, 1, lambda a: 12 if a == array + 56 else 0)] == [12]


@pytest.mark.parametrize(
    ("op", "pointers"),
    [
        (0, {0, 3}),  # FUTEX_WAIT: the word and the timeout
        (1, {0}),  # FUTEX_WAKE
        (4, {0, 4}),  # FUTEX_CMP_REQUEUE: arg 3 is a count, not a pointer
        (6 | 128, {0, 3}),  # FUTEX_LOCK_PI_PRIVATE
        (12, {0, 4}),  # FUTEX_CMP_REQUEUE_PI
    ],
)
def test_futex_pointers_depend_on_the_operation(op: int, pointers: set[int]) -> None:
    args = (T + 0x10, op, 0, T + 0x20, T + 0x30, 0)
    p = plan("futex", *args)
    assert isinstance(p, Redirect)
    moved = {i for i in range(6) if p.args[i] != args[i]}
    assert moved == pointers
    assert all(p.args[i] == ALIAS + (args[i] - T) for i in moved)


def test_an_ioctl_with_an_encoded_size_knows_what_it_touches() -> None:
    fionread = 0x541B  # legacy number: nothing known, any argument in traced memory moves
    p = plan("ioctl", 3, fionread, T + 0x40)
    assert isinstance(p, Redirect) and p.args[2] == ALIAS + 0x40 and p.retry
    assert [(t.size, t.dir) for t in p.touches] == [(None, Dir.ACCESSES)]
    ior8 = (2 << 30) | (8 << 16) | 0x1234
    p = plan("ioctl", 3, ior8, T + 0x40)
    assert isinstance(p, Redirect) and [(t.size, t.dir) for t in p.touches] == [(8, Dir.WRITES)]


def test_an_opaque_syscall_looks_only_at_the_arguments_it_takes() -> None:
    # prctl takes 5: a traced address left in the sixth register is not a pointer.
    p = plan("prctl", 16, T + 0x100, 0, 0, 0, T + 0x200)
    assert isinstance(p, Redirect) and p.args[1] == ALIAS + 0x100 and p.args[5] == T + 0x200


def test_futex_waitv_entries_go_through_the_aliases() -> None:
    mem = Memory()
    mem.put(LOCAL, struct.pack("<QQII", 5, T + 0x80, 2, 0) + struct.pack("<QQII", 6, LOCAL + 8, 2, 0))
    p = plan("futex_waitv", LOCAL, 2, 0, 0, 0, mem=mem)
    assert isinstance(p, Redirect)
    ((at, data),) = p.writes
    assert p.args[0] == at
    assert struct.unpack_from("<QQII", data, 0) == (5, ALIAS + 0x80, 2, 0)
    assert struct.unpack_from("<QQII", data, 24) == (6, LOCAL + 8, 2, 0)


def test_outputs_are_reported_only_on_success() -> None:
    p = plan("clock_gettime", 1, T + 0x10)
    assert isinstance(p, Redirect)
    assert touched(p.touches, -22, lambda a: 0) == []
    assert [(n, d) for _, _, n, d in touched(p.touches, 0, lambda a: 0)] == [(16, Dir.WRITES)]


def test_a_straddling_recvfrom_becomes_recvmsg_and_gives_back_the_address_length() -> None:
    below = Span(T + 0x1000, T + 0x2000, 3, 0, ALIAS)
    mem = Memory()
    mem.put(LOCAL, struct.pack("<I", 16))
    p = plan("recvfrom", 7, T + 0x1000 - 20, 80, 0x40, LOCAL + 0x100, LOCAL, spans=(below,), mem=mem)
    assert isinstance(p, Redirect) and p.nr == BY_NAME["recvmsg"].nr
    fd, hdr, flags = p.args[:3]
    assert (fd, flags) == (7, 0x40)
    writes = dict(p.writes)
    name, namelen, iov, iovlen, control, controllen, _ = struct.unpack("<QI4xQQQQI4x", writes[hdr])
    assert (name, namelen, iovlen, control, controllen) == (LOCAL + 0x100, 16, 2, 0, 0)
    assert [struct.unpack_from("<QQ", writes[iov], 16 * i) for i in range(2)] == [
        (T + 0x1000 - 20, 20),
        (ALIAS, 60),
    ]
    assert p.copy_back == ((hdr + 8, LOCAL, 4, -1),)


def test_a_straddling_sendto_becomes_sendmsg() -> None:
    below = Span(T + 0x1000, T + 0x2000, 3, 0, ALIAS)
    p = plan("sendto", 7, T + 0x1000 - 20, 80, 0, 0, 0, spans=(below,))
    assert isinstance(p, Redirect) and p.nr == BY_NAME["sendmsg"].nr
    name, namelen, _, iovlen, *_ = struct.unpack("<QI4xQQQQI4x", dict(p.writes)[p.args[1]])
    assert (name, namelen, iovlen) == (0, 0, 2)
