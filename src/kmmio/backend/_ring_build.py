"""Builds ``kmmio.backend._ring`` (the tracer's end of the agent's record ring) with cffi;
``setup.py`` names this file in ``cffi_modules``."""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ffi = FFI()
ffi.cdef(
    """
    void kmmio_ring_init(uintptr_t base, uint32_t cap, uint32_t tracer_pid);
    long kmmio_ring_take(uintptr_t base, uintptr_t out, long cap, uintptr_t counts, int final);
    long kmmio_ring_pending(uintptr_t base);
    void kmmio_ring_skip(uintptr_t base);
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
