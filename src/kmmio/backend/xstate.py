"""A thread's vector registers (xmm/ymm/zmm 0-31) and opmask registers (k0-k7), read and
written through ``NT_X86_XSTATE``; and what the CPU offers (``cpuid``, ``XCR0``).

The kernel hands out the XSAVE standard layout: xmm0-15 at byte 160 of the legacy area,
the header's ``XSTATE_BV`` at byte 512, the upper halves of ymm0-15 at byte 576 (the AVX
component, fixed by the architecture).  Where the AVX-512 components lie, CPUID leaf 0xD
says (sub-leaf = component number, EBX = offset, EAX = size): 5 the opmask registers
k0-k7 (8 bytes each), 6 ``ZMM_Hi256`` (bits 256-511 of zmm0-15, 32 bytes each), 7
``Hi16_ZMM`` (zmm16-31 whole, 64 bytes each).  A clear ``XSTATE_BV`` bit means "in its
initial state": all zero, whatever the area holds; writing a component sets its bit, its
other registers made explicitly zero first.
"""

from __future__ import annotations

import ctypes
import struct
from functools import cache

from kmmio.backend import _ptrace as pt
from kmmio.backend._sys import lib

_XMM = 160
_YMM_HI = 576
_XSTATE_BV = 512
_SSE, _AVX = 1, 2
_OPMASK, _ZMM_HI256, _HI16_ZMM = 5, 6, 7
_M128 = (1 << 128) - 1

_cpuid_out = ctypes.create_string_buffer(16)


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """``CPUID``: EAX, EBX, ECX, EDX."""
    lib.kmmio_cpuid(leaf, subleaf, ctypes.addressof(_cpuid_out))
    eax, ebx, ecx, edx = struct.unpack("<4I", _cpuid_out.raw)
    return eax, ebx, ecx, edx


@cache
def xcr0() -> int:
    """The state components the kernel enabled (the same for every process)."""
    return lib.kmmio_xcr0()


@cache
def avx512f() -> bool:
    """Whether zmm and k registers exist here: AVX-512F in CPUID, its state in XCR0."""
    if cpuid(0)[0] < 7:
        return False
    return bool(cpuid(7)[1] >> 16 & 1) and xcr0() & 0xE6 == 0xE6


@cache
def _area(component: int) -> tuple[int, int] | None:
    """(offset, size) of an XSAVE component in the standard layout, if the kernel keeps it."""
    if component == _AVX:
        return (_YMM_HI, 256) if xcr0() >> _AVX & 1 else None
    if not xcr0() >> component & 1:
        return None
    size, offset, _, _ = cpuid(0xD, component)
    return (offset, size) if size else None


class ThreadVectors:
    """Lazily fetched vector and opmask registers of one stopped thread; :meth:`flush`
    writes them back.  Vector registers are unsigned numbers of up to 512 bits."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self._data: bytearray | None = None
        self._dirty = False

    def _state(self) -> bytearray:
        if self._data is None:
            self._data = pt.get_xstate(self.tid)
        return self._data

    def _bv(self) -> int:
        return int.from_bytes(self._state()[_XSTATE_BV : _XSTATE_BV + 8], "little")

    def _slot(self, component: int, index: int, size: int) -> tuple[int, tuple[int, int], bool] | None:
        """Where register ``index`` of a component of ``size``-byte registers lies: its
        offset, the component's (offset, size), and whether the component is live (not in
        its initial state); ``None`` if the thread's state has no such component."""
        area = _area(component)
        data = self._state()
        if area is None or area[0] + area[1] > len(data) or (index + 1) * size > area[1]:
            return None
        return area[0] + index * size, area, bool(self._bv() >> component & 1)

    def _get(self, component: int, index: int, size: int) -> int:
        slot = self._slot(component, index, size)
        if slot is None or not slot[2]:
            return 0
        return int.from_bytes(self._state()[slot[0] : slot[0] + size], "little")

    def _set(self, component: int, index: int, size: int, value: int) -> None:
        slot = self._slot(component, index, size)
        if slot is None:
            if value:
                raise ValueError(f"no XSAVE component {component} for register {index}")
            return
        at, (offset, length), live = slot
        data = self._state()
        if not live:  # the initial state, made explicit
            data[offset : offset + length] = bytes(length)
            bv = self._bv() | 1 << component
            data[_XSTATE_BV : _XSTATE_BV + 8] = bv.to_bytes(8, "little")
        data[at : at + size] = value.to_bytes(size, "little")
        self._dirty = True

    def _legacy(self, index: int) -> int:
        if not self._bv() & 1 << _SSE:
            return 0
        at = _XMM + 16 * index
        return int.from_bytes(self._state()[at : at + 16], "little")

    def read(self, index: int) -> int:
        """zmm ``index`` (0-31), all 512 bits (the xmm and ymm registers are its low part)."""
        if index >= 16:
            return self._get(_HI16_ZMM, index - 16, 64)
        high = self._get(_AVX, index, 16) | self._get(_ZMM_HI256, index, 32) << 128
        return self._legacy(index) | high << 128

    def write(self, index: int, value: int, keep_upper: bool) -> None:
        """Set bits 0-127 of vector register ``index`` and keep the rest (``keep_upper``:
        legacy SSE), or set all 512 bits to ``value``, zero-extended (VEX and EVEX)."""
        if index >= 16:
            self._set(_HI16_ZMM, index - 16, 64, value)
            return
        data = self._state()
        bv = self._bv()
        if not bv & 1 << _SSE:
            data[_XMM : _XMM + 256] = bytes(256)
            data[_XSTATE_BV : _XSTATE_BV + 8] = (bv | 1 << _SSE).to_bytes(8, "little")
        data[_XMM + 16 * index : _XMM + 16 * index + 16] = (value & _M128).to_bytes(16, "little")
        self._dirty = True
        if not keep_upper:
            self._set(_AVX, index, 16, value >> 128 & _M128)
            self._set(_ZMM_HI256, index, 32, value >> 256)

    def opmask(self, index: int) -> int:
        """Opmask register k``index`` (0-7), 64 bits."""
        return self._get(_OPMASK, index, 8)

    def write_opmask(self, index: int, value: int) -> None:
        self._set(_OPMASK, index, 8, value)

    def flush(self) -> None:
        if self._dirty and self._data is not None:
            pt.set_xstate(self.tid, self._data)
            self._dirty = False
