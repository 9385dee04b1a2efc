"""The tracer's exact-width accesses survive a view whose file shrank (SIGBUS), and only that."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmmio.backend.shadow import ViewFault, load, store
from kmmio.backend.xstate import avx512f

#: Widths of one access through a view: 64 (one vmovdqu64) where the CPU has AVX-512.
WIDTHS = (1, 2, 4, 8, 16, 32, 64) if avx512f() else (1, 2, 4, 8, 16, 32)


def test_accesses_have_the_exact_width(tmp_path: Path) -> None:
    buf = (ctypes.c_ubyte * 80)(*range(80))
    addr = ctypes.addressof(buf)
    assert [load(addr + 1, w) for w in (1, 2, 4, 8)] == [
        int.from_bytes(bytes(range(1, 1 + w)), "little") for w in (1, 2, 4, 8)
    ]
    assert load(addr + 3, 16) == int.from_bytes(bytes(range(3, 19)), "little")
    assert load(addr + 5, 32) == int.from_bytes(bytes(range(5, 37)), "little")
    if 64 in WIDTHS:
        assert load(addr + 9, 64) == int.from_bytes(bytes(range(9, 73)), "little")
    for width in WIDTHS:
        before = bytes(buf)
        store(addr + 7, width, (1 << (8 * width)) - 2)  # all 0xff but the lowest byte
        after = bytes(buf)
        assert after[7 : 7 + width] == b"\xfe" + b"\xff" * (width - 1)
        assert after[:7] == before[:7] and after[7 + width :] == before[7 + width :]
        buf[:] = (ctypes.c_ubyte * 80)(*range(80))


def test_an_access_hitting_a_truncated_page_raises_view_fault(tmp_path: Path) -> None:
    path = tmp_path / "shrinking"
    path.write_bytes(b"\x11" * 8192)
    with open(path, "r+b") as f:
        view = mmap.mmap(f.fileno(), 8192)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
        assert load(addr + 4096, 4) == 0x11111111
        os.truncate(path, 4096)
        for width in WIDTHS:
            with pytest.raises(ViewFault):
                load(addr + 4096, width)
            with pytest.raises(ViewFault):
                store(addr + 4096, width, 1)
        assert load(addr, 4) == 0x11111111  # and accesses go on working
        store(addr, 2, 0x2222)
        assert load(addr, 4) == 0x11112222
        view.close()


def test_a_sigbus_elsewhere_still_kills(tmp_path: Path) -> None:
    """Outside an access the handler steps aside: the process dies of SIGBUS as before."""
    path = tmp_path / "elsewhere"
    code = f"""
import ctypes, mmap, os
from kmmio.backend.shadow import load
load(id(0), 1)  # installs the handler
path = {str(path)!r}
open(path, "wb").write(bytes(8192))
f = open(path, "r+b")
m = mmap.mmap(f.fileno(), 8192)
os.truncate(path, 0)
ctypes.string_at(ctypes.addressof(ctypes.c_char.from_buffer(m)) + 4096, 1)
"""
    proc = subprocess.run([sys.executable, "-X", "faulthandler=0", "-c", code], capture_output=True)
    assert proc.returncode == -7, proc.stderr
