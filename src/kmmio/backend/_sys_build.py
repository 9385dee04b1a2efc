"""Builds ``kmmio.backend._sys`` from ``_sys_impl.c`` with cffi (API mode, compiled at install).

``setup.py`` names this file in ``cffi_modules``, so ``pip install`` compiles it.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ffi = FFI()
ffi.cdef(
    """
    long kmmio_ptrace(long request, long pid, uintptr_t addr, uintptr_t data);
    long kmmio_get_fault(long pid, uintptr_t siginfo, uintptr_t regs);
    long kmmio_finish(long pid, uintptr_t regs, uint64_t rip, long rip_offset, long resume);
    int kmmio_waitid(uintptr_t info, int options);
    int kmmio_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
                    unsigned long arg5);
    uintptr_t kmmio_mmap(size_t length, int prot, int flags, int fd, long offset);
    int kmmio_munmap(uintptr_t addr, size_t length);
    int kmmio_view_init(void);
    uint64_t kmmio_load(uintptr_t addr, int width);
    int kmmio_store(uintptr_t addr, int width, uint64_t value);
    int kmmio_copy_wide(uintptr_t dst, uintptr_t src, int width);
    extern int kmmio_view_fault;
    void kmmio_cpuid(uint32_t leaf, uint32_t subleaf, uintptr_t out);
    uint64_t kmmio_xcr0(void);
    int kmmio_copy_zmm(uintptr_t dst, uintptr_t src);
    int kmmio_fast_desc(uintptr_t words);
    void kmmio_fast_forget(uint64_t space);
    int kmmio_fast_ranges(uintptr_t words, int n);
    int kmmio_fast_threads(uintptr_t words, int n);
    long kmmio_serve(uintptr_t info, int options, uintptr_t rows, int max_rows, uintptr_t served);
    long kmmio_format_rows(uintptr_t rows, int n, uintptr_t out, long cap);
    """
)
ffi.set_source(
    "kmmio.backend._sys",
    # The fast loop uses the guarded view accesses: one translation unit.
    "".join((Path(__file__).parent / name).read_text() for name in ("_sys_impl.c", "_fast_impl.c")),
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
    py_limited_api=False,
)
