"""The tracer's exact-width stubs survive a view whose file shrank (SIGBUS), and only that."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmmio.backend.shadow import ViewFault, stubs


def test_a_stub_hitting_a_truncated_page_raises_view_fault(tmp_path: Path) -> None:
    path = tmp_path / "shrinking"
    path.write_bytes(b"\x11" * 8192)
    with open(path, "r+b") as f:
        view = mmap.mmap(f.fileno(), 8192)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
        s = stubs()
        assert s.read(addr + 4096, 4) == 0x11111111
        os.truncate(path, 4096)
        with pytest.raises(ViewFault):
            s.read(addr + 4096, 4)
        with pytest.raises(ViewFault):
            s.write(addr + 4096, 8, 1)
        with pytest.raises(ViewFault):
            s.read(addr + 4096, 32)
        assert s.read(addr, 4) == 0x11111111  # and the stubs go on working
        del s
        view.close()


def test_a_sigbus_elsewhere_still_kills(tmp_path: Path) -> None:
    """Outside the stubs the handler steps aside: the process dies of SIGBUS as before."""
    path = tmp_path / "elsewhere"
    code = f"""
import ctypes, mmap, os
from kmmio.backend.shadow import stubs
stubs()
path = {str(path)!r}
open(path, "wb").write(bytes(8192))
f = open(path, "r+b")
m = mmap.mmap(f.fileno(), 8192)
os.truncate(path, 0)
ctypes.string_at(ctypes.addressof(ctypes.c_char.from_buffer(m)) + 4096, 1)
"""
    proc = subprocess.run([sys.executable, "-X", "faulthandler=0", "-c", code], capture_output=True)
    assert proc.returncode == -7, proc.stderr
