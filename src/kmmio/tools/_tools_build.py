"""Builds ``kmmio.tools._tools`` with cffi (API mode, compiled at install): the hot loops of
the trace tools, one C file each in ``_SOURCES``, declared in ``_CDEF``.

``setup.py`` names this file in ``cffi_modules``, so ``pip install`` compiles it.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).parent

#: The C files, compiled as one translation unit.
_SOURCES = ["_scan_impl.c"]

_CDEF = """
    int kmmio_scan(const char *buf, long len, long *pos, long *rows, long cap, uint8_t *kind,
                   uint8_t *width, uint64_t *ts, int32_t *map_id, uint64_t *phys, uint64_t *value,
                   uint64_t *pc, uint32_t *tid);
"""

ffi = FFI()
ffi.cdef(_CDEF)
ffi.set_source(
    "kmmio.tools._tools",
    "".join((_HERE / name).read_text() for name in _SOURCES),
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
    py_limited_api=False,
)
