"""A thread's xmm/ymm registers, read and written through ``NT_X86_XSTATE``.

The XSAVE standard layout the kernel hands out: xmm0-15 at byte 160 of the legacy area,
the upper halves of ymm0-15 at byte 576 (the AVX component), and the header's
``XSTATE_BV`` at byte 512 saying which components hold live values (a clear bit means
"in its initial state": all zero, whatever the area holds).
"""

from __future__ import annotations

from kmmio.backend import _ptrace as pt

_XMM = 160
_YMM_HI = 576
_XSTATE_BV = 512
_SSE, _AVX = 1 << 1, 1 << 2


class ThreadVectors:
    """Lazily fetched vector registers of one stopped thread; :meth:`flush` writes back."""

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

    def read(self, index: int) -> int:
        data, bv = self._state(), self._bv()
        low = int.from_bytes(data[_XMM + 16 * index : _XMM + 16 * index + 16], "little") if bv & _SSE else 0
        high = 0
        if bv & _AVX:
            high = int.from_bytes(data[_YMM_HI + 16 * index : _YMM_HI + 16 * index + 16], "little")
        return low | high << 128

    def write(self, index: int, value: int, keep_upper: bool) -> None:
        data, bv = self._state(), self._bv()
        if not bv & _SSE:
            data[_XMM : _XMM + 256] = bytes(256)  # the initial state, made explicit
        data[_XMM + 16 * index : _XMM + 16 * index + 16] = (value & (1 << 128) - 1).to_bytes(16, "little")
        bv |= _SSE
        if not keep_upper:
            if not bv & _AVX:
                data[_YMM_HI : _YMM_HI + 256] = bytes(256)
            hi = (value >> 128) & (1 << 128) - 1
            data[_YMM_HI + 16 * index : _YMM_HI + 16 * index + 16] = hi.to_bytes(16, "little")
            bv |= _AVX
        data[_XSTATE_BV : _XSTATE_BV + 8] = bv.to_bytes(8, "little")
        self._dirty = True

    def flush(self) -> None:
        if self._dirty and self._data is not None:
            pt.set_xstate(self.tid, self._data)
            self._dirty = False
