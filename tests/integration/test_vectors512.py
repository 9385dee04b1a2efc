"""Masked vector accesses log only the bytes their mask enables; plain zmm moves are emulated.

``avx512.c`` makes masked loads and stores (AVX-512 ``{k}`` of 1-, 2-, 4- and 8-byte
elements, ``vpcompressd``, AVX2 ``vpmaskmovd``, SSE2 ``maskmovdqu``) and plain xmm/ymm/zmm
moves on a traced file mapping; every record is checked against a model of the file, and
the program's output (what it loaded, what its stores left) against an untraced run.
``pack_into.py`` is the issue's case: ``struct.pack_into`` whose ``memset`` is a masked
64-byte store.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROGRAMS, trace

from kmmio.trace import Access

pytestmark = pytest.mark.skipif(
    not {"avx512f", "avx512bw", "avx512vl"} <= set(Path("/proc/cpuinfo").read_text().split()),
    reason="needs AVX-512 F, BW and VL",
)

PATTERN = bytes(range(0xA0, 0xE0))  # the vector the program stores
OTHER = bytes(range(0x40, 0x80))  # what its register loads start from


def _expected() -> list[tuple[str, int, int, int]]:
    """The records of ``avx512.c``, in order: (kind, width, file offset, value)."""
    mem = bytearray((i * 7 + 3) & 0xFF for i in range(8192))
    out: list[tuple[str, int, int, int]] = []

    def load(off: int, runs: list[tuple[int, int]]) -> None:
        for at, n in runs:
            out.append(("R", n, off + at, int.from_bytes(mem[off + at : off + at + n], "little")))

    def store(off: int, runs: list[tuple[int, int]], data: bytes = PATTERN) -> None:
        for at, n in runs:
            mem[off + at : off + at + n] = data[at : at + n]
            out.append(("W", n, off + at, int.from_bytes(data[at : at + n], "little")))

    # masked, single-stepped
    store(0x100, [(1, 3), (10, 5), (40, 1), (48, 16)])  # vmovdqu8 {k}: runs of 3, 5, 1, 16
    load(0x140, [(0, 4), (8, 4), (60, 4)])  # vmovdqu32 {k}{z}: dwords 0, 2, 15
    load(0x183, [(i, 1) for i in range(0, 16, 2)])  # vmovdqu8 {k}, k = 0x5555
    sign_runs = [(0, 4), (12, 12), (28, 4)]  # dwords 0, 3, 4, 5, 7 have their sign bit set
    store(0x200, sign_runs)  # vpmaskmovd store
    load(0x240, sign_runs)  # vpmaskmovd load
    store(0x262, [(2, 4), (8, 2)])  # vmovdqu16 xmm {k}, k = 0b10110
    # vmovdqu64 {k} with k = 0: no access at all
    store(0x2C0, [(0, 32)], PATTERN[:16] + PATTERN[32:48])  # vpcompressd, 8 dwords
    store(0xFE0, [(24, 17)])  # vmovdqu8 {k}: 17 bytes over the end of the first page
    store(0x2F0, [(0, 3), (7, 1)])  # maskmovdqu
    # plain, emulated in auto mode
    load(0x300, [(0, 64)])  # vmovdqu64 zmm
    store(0x341, [(0, 64)])  # vmovdqu64 zmm store, unaligned
    store(0x380, [(0, 64)])  # vmovdqa64 zmm store
    load(0x3C1, [(0, 64)])  # vmovdqu8 zmm20
    load(0x400, [(0, 32)])  # vmovdqu ymm1 (VEX)
    load(0x420, [(0, 16)])  # movdqu xmm2 (SSE)
    load(0x430, [(0, 16)])  # vmovdqu32 xmm21
    load(0x4C0, [(0, 16)])  # vmovdqa xmm3 (VEX)
    load(0x480, [(0, 64)])  # vmovdqa64 zmm30
    store(0x501, [(0, 64)], OTHER)  # vmovups zmm25 store
    return out


MASKED, PLAIN = 9, 10  # instructions of each kind that touch the mapping


def test_masked_accesses_log_their_enabled_bytes_and_zmm_moves_are_emulated(
    build, tmp_path: Path, mode: str
) -> None:
    exe = build("avx512")
    dev = tmp_path / "avx512-regs.bin"
    plain = subprocess.run([str(exe), str(dev)], capture_output=True, text=True, check=True)
    run = trace([str(exe), str(dev)], "avx512-regs.bin", tmp_path, mode)
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout  # loads merged, zeroed and kept as the CPU does
    logged = [(r.kind.value, r.width, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    assert logged == _expected()
    if mode == "auto":
        assert f"{PLAIN} instructions emulated, {MASKED} stepped" in run.stderr
    elif mode == "agent":  # relocated, each once (the program runs each instruction once)
        assert f"0 accesses performed in the program, {MASKED + PLAIN} instructions relocated" in run.stderr
    else:
        assert f"0 instructions emulated, {MASKED + PLAIN} stepped" in run.stderr


def test_struct_pack_into_logs_no_64_byte_write(tmp_path: Path, mode: str) -> None:
    script = PROGRAMS / "pack_into.py"
    dev = tmp_path / "pack-regs.bin"
    plain = subprocess.run(
        [sys.executable, str(script), str(dev)], capture_output=True, text=True, check=True
    )
    run = trace([sys.executable, str(script), str(dev)], "pack-regs.bin", tmp_path, mode)
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout == "44332211\n"
    logged = [(r.kind.value, r.width, r.phys, r.value) for r in run.records if isinstance(r, Access)]
    # memset's masked store of 4 zero bytes, then the value
    assert logged == [("W", 4, 0x10, 0), ("W", 4, 0x10, 0x11223344)]
