"""Builds ``kmmio.backend._ring`` (the tracer's end of the agent's record ring) with cffi;
``setup.py`` names this file in ``cffi_modules``."""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ffi = FFI()
ffi.cdef(
    """
    void kmmio_ring_init(uintptr_t base, uint32_t cap, uint32_t tracer_pid, int64_t clock_offset_us);
    long kmmio_ring_take(
        uintptr_t base, uint64_t cap, uintptr_t out, long size, uintptr_t counts, uint64_t now);
    long kmmio_ring_pending(uintptr_t base);
    int kmmio_ring_skip(uintptr_t base, uint64_t cap);
    void kmmio_ring_detach(uintptr_t base);
    """
)
ffi.set_source(
    "kmmio.backend._ring",
    (Path(__file__).parent / "_ring_impl.c").read_text(),
    include_dirs=[str(Path(__file__).parent)],  # ring_layout.h, shared with the agent
    depends=[str(Path(__file__).parent / "ring_layout.h")],
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
    py_limited_api=False,
)
