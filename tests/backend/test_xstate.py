"""Vector and opmask registers of a stopped thread, written and read back through the kernel."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from kmmio.backend import _ptrace as pt
from kmmio.backend.xstate import ThreadVectors, avx512f, cpuid, xcr0

M128 = (1 << 128) - 1
M512 = (1 << 512) - 1


@pytest.fixture
def stopped() -> Iterator[int]:
    """A child process held in a ptrace stop (``sleep``: its AVX-512 state is likely in its
    initial state, so writing it exercises the XSTATE_BV bits)."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        pt.seize(child.pid, 0)
        pt.interrupt(child.pid)
        pt.wait(child.pid)
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_the_xsave_layout_comes_from_cpuid() -> None:
    assert cpuid(0)[0] >= 1
    assert xcr0() & 0b11 == 0b11  # x87 and SSE state are always on
    if avx512f():
        # opmask, ZMM_Hi256, Hi16_ZMM: 8 k registers of 8 bytes, 16 x 32 and 16 x 64 bytes
        assert [cpuid(0xD, n)[0] for n in (5, 6, 7)] == [64, 512, 1024]


@pytest.mark.ptrace
def test_xmm_and_ymm_round_trip(stopped: int) -> None:
    tv = ThreadVectors(stopped)
    before = [tv.read(i) for i in range(16)]
    tv.write(4, 0x0123456789ABCDEF_FEDCBA9876543210, keep_upper=True)  # legacy SSE
    tv.write(5, (1 << 255) | 0xAA, keep_upper=False)  # VEX: the rest zeroed
    tv.flush()
    again = ThreadVectors(stopped)
    assert again.read(4) == (before[4] & ~M128) | 0x0123456789ABCDEF_FEDCBA9876543210
    assert again.read(5) == (1 << 255) | 0xAA
    assert [again.read(i) for i in range(16) if i not in (4, 5)] == [
        before[i] for i in range(16) if i not in (4, 5)
    ]


@pytest.mark.ptrace
@pytest.mark.skipif(not avx512f(), reason="no AVX-512 here")
def test_zmm_and_opmask_round_trip(stopped: int) -> None:
    tv = ThreadVectors(stopped)
    before = [tv.read(i) for i in range(32)]
    masks = [tv.opmask(i) for i in range(8)]
    full = int.from_bytes(bytes(range(1, 65)), "little")
    tv.write(3, full, keep_upper=False)
    tv.write(20, full ^ M512, keep_upper=False)
    tv.write(31, 0x77, keep_upper=False)
    tv.write_opmask(2, 0xDEADBEEF_CAFEF00D)
    tv.write_opmask(7, 1 << 63)
    tv.flush()
    again = ThreadVectors(stopped)
    assert again.read(3) == full and again.read(20) == full ^ M512 and again.read(31) == 0x77
    assert again.opmask(2) == 0xDEADBEEF_CAFEF00D and again.opmask(7) == 1 << 63
    assert [again.read(i) for i in range(32) if i not in (3, 20, 31)] == [
        before[i] for i in range(32) if i not in (3, 20, 31)
    ]
    assert [again.opmask(i) for i in (0, 1, 3, 4, 5, 6)] == [masks[i] for i in (0, 1, 3, 4, 5, 6)]
    # a legacy SSE write keeps bits 128-511; a VEX one of 256 bits zeroes 256-511
    again.write(3, 0x55, keep_upper=True)
    again.write(20, 1 << 200, keep_upper=False)
    again.flush()
    last = ThreadVectors(stopped)
    assert last.read(3) == (full & ~M128) | 0x55 and last.read(20) == 1 << 200
