"""Builds ``kmmio.tools._tools`` with cffi (API mode, compiled at install): the hot loops of
the trace tools, one C file each in ``_SOURCES``, declared in ``_CDEF``.

``setup.py`` names this file in ``cffi_modules``, so ``pip install`` compiles it.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).parent

#: The C files, compiled as one translation unit.
_SOURCES = ["_scan_impl.c", "_summary_impl.c"]

_CDEF = """
    int kmmio_scan(const char *buf, long len, long *pos, long *rows, long cap, uint8_t *kind,
                   uint8_t *width, uint64_t *ts, int32_t *map_id, uint64_t *phys, uint64_t *value,
                   uint64_t *pc, uint32_t *tid);

    /* _summary_impl.c: kmmio summary's aggregation (all fields 64 bits: read with struct). */
    typedef struct {
        uint64_t kind, width; int64_t map_id; uint64_t phys, count, first_ts, last_ts,
            first_value, last_value, first_line, last_line, distinct, threads, runs, polled,
            longest;
    } kmmio_sum_entry;
    typedef struct {
        uint64_t entry, tid, count, first_ts, last_ts, first_value, last_value, first_line,
            last_line;
    } kmmio_sum_run;
    typedef struct kmmio_summary kmmio_summary;
    kmmio_summary *kmmio_sum_new(uint64_t min_run, long top);
    void kmmio_sum_free(kmmio_summary *s);
    int kmmio_sum_add(kmmio_summary *s, const uint8_t *kind, const uint8_t *width, const uint64_t *ts,
                      const int32_t *map_id, const uint64_t *phys, const uint64_t *value,
                      const uint32_t *tid, long n, uint64_t first_line, const uint32_t *skip,
                      long nskip);
    int kmmio_sum_break(kmmio_summary *s, uint32_t tid);
    int kmmio_sum_finish(kmmio_summary *s);
    long kmmio_sum_nentries(const kmmio_summary *s);
    const kmmio_sum_entry *kmmio_sum_entries(const kmmio_summary *s);
    long kmmio_sum_runs(const kmmio_summary *s, kmmio_sum_run *out, long cap);
    long kmmio_sum_nruns(const kmmio_summary *s);
    long kmmio_sum_live(const kmmio_summary *s, uint64_t *out, long cap);
    int kmmio_sum_group(kmmio_summary *s, const uint32_t *group, long ngroups, uint64_t *distinct,
                        uint64_t *threads);
"""

ffi = FFI()
ffi.cdef(_CDEF)
ffi.set_source(
    "kmmio.tools._tools",
    "".join((_HERE / name).read_text() for name in _SOURCES),
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
    py_limited_api=False,
)
