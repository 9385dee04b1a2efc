"""Builds ``kmmio.tools._tools`` with cffi (API mode, compiled at install): the hot loops of
the trace tools, one C file each in ``_SOURCES``, declared in ``_CDEF``.

``setup.py`` names this file in ``cffi_modules``, so ``pip install`` compiles it.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).parent

#: The C files, compiled as one translation unit.
_SOURCES = ["_scan_impl.c", "_summary_impl.c", "_summary_out.c"]

_CDEF = """
    int kmmio_scan(const char *buf, long len, long *pos, long *rows, long cap, long max_line,
                   uint8_t *kind, uint8_t *width, uint64_t *ts, int32_t *map_id, uint64_t *phys,
                   uint64_t *value, uint64_t *pc, uint32_t *tid, uint32_t *wide_off,
                   uint8_t *wide_data);

    /* _summary_impl.c, _summary_out.c: kmmio summary's rows, runs and lines. */
    typedef struct {
        uint64_t key, count, first_ts, last_ts, first_value, last_value, first_line, last_line;
        uint32_t tid;
        int32_t map_id;
        uint8_t reg, width, flags, pad[5];
        uint8_t first[64], last[64];
    } kmmio_sum_run;
    typedef struct {
        uint64_t phys, reads, writes, widths, first_value, last_value, first_ts, last_ts, first_line,
            last_line, runs, polled, longest, distinct, threads;
        uint32_t reg_index, nmaps;
        int32_t maps[8];
        uint8_t reg, flags, first_width, last_width;
        uint32_t ext;
    } kmmio_sum_out;
    typedef struct {
        uint64_t reads, writes, rows, total_runs, polled, first_ts, last_ts, any, spills, peak_bytes,
            segments;
    } kmmio_sum_totals;
    typedef struct kmmio_summary kmmio_summary;
    kmmio_summary *kmmio_sum_new(uint64_t min_run, long top, uint32_t cap_vals, uint32_t cap_tids,
                                 uint32_t cap_maps, uint64_t budget, const char *tmpdir);
    void kmmio_sum_free(kmmio_summary *s);
    int kmmio_sum_set_map(kmmio_summary *s, long nregs, const char *names, const uint64_t *addrs,
                          long nseg, const uint64_t *starts, const uint64_t *ends, const int32_t *regs);
    int kmmio_sum_resolve(kmmio_summary *s, uint8_t kind, uint8_t width, uint64_t phys, int32_t reg);
    long kmmio_sum_need(const kmmio_summary *s, uint64_t *phys);
    long kmmio_sum_add(kmmio_summary *s, const uint8_t *kind, const uint8_t *width, const uint64_t *ts,
                       const int32_t *map_id, const uint64_t *phys, const uint64_t *value,
                       const uint32_t *tid, const uint32_t *wide_off, const uint8_t *wide_data, long n,
                       long start, uint64_t first_line);
    int kmmio_sum_break(kmmio_summary *s, uint64_t tid);
    int kmmio_sum_finish(kmmio_summary *s);
    long kmmio_sum_runs(kmmio_summary *s, kmmio_sum_run *out, long cap);
    void kmmio_sum_totals_of(const kmmio_summary *s, kmmio_sum_totals *out);
    int kmmio_sum_errno(const kmmio_summary *s);
    int kmmio_sum_rewind(kmmio_summary *s);
    long kmmio_sum_rows(kmmio_summary *s, kmmio_sum_out *out, uint8_t *wide, long cap);
    long kmmio_sum_format(kmmio_summary *s, int mode, char *buf, long cap);
"""

ffi = FFI()
ffi.cdef(_CDEF)
ffi.set_source(
    "kmmio.tools._tools",
    "".join((_HERE / name).read_text() for name in _SOURCES),
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
    py_limited_api=False,
)
