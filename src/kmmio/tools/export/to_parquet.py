"""A log as a Parquet table: one row per record, in log order (``export --format parquet``).

Columns (nulls where a column does not apply to a record's kind):

==============  =====================================  ========================================
column          type                                   holds
==============  =====================================  ========================================
``kind``        dictionary<int8, string>               ``R`` ``W`` ``MAP`` ``UNMAP`` ``UNKNOWN``
                                                       ``MARK`` ``VERSION`` ``PCIDEV``
``width``       uint8                                  access width in bytes (R/W)
``ts_us``       int64                                  timestamp, microseconds of the log's
                                                       monotonic clock (null: VERSION, PCIDEV)
``map_id``      int32                                  R/W, MAP, UNMAP, UNKNOWN, MARK map/syscall
``phys``        uint64                                 R/W, MAP, UNKNOWN, MARK syscall
``value``       uint64                                 R/W: the value's low 64 bits
``wide_value``  binary                                 R/W wider than 8 bytes: the whole value,
                                                       ``width`` bytes, little-endian (else null)
``pc``          uint64                                 R/W, MAP, UNMAP, UNKNOWN
``tid``         uint32                                 R/W, MAP, UNMAP, UNKNOWN (the log's pid
                                                       field: a thread id), MARK syscall
``virt``        uint64                                 MAP
``length``      uint64                                 MAP, MARK syscall (when known)
``text``        string                                 MARK: its text; UNKNOWN: the code bytes
                                                       (``8b,04,24``); VERSION: the version;
                                                       PCIDEV: the line after ``PCIDEV``
``register``    dictionary<int32, string>              with ``--map``: the first register an
                                                       R/W touched (its path), else null
==============  =====================================  ========================================

So every line of the log (but blank and ``#`` lines) is a row it can be written back from.
The access columns are built from :func:`~kmmio.tools.scan.scan`'s batches without a
Python step per row (numpy copies of the C arrays); register names are looked up once per
distinct ``(kind, phys, width)`` of a batch.  Rows are written in row groups of
``ROW_GROUP`` rows by ``pyarrow.parquet.ParquetWriter``, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import IO, Any

from kmmio.tools.export.names import Namer, distinct
from kmmio.tools.extras import need
from kmmio.tools.scan import Batch, Progress, scan
from kmmio.trace.records import (
    KernelAccess,
    Map,
    MapInfo,
    Mark,
    PciDev,
    Record,
    Unknown,
    Unmap,
    Version,
)
from kmmio.trace.writer import format_record

#: The ``kind`` column's dictionary: a batch's kind byte (0 read, 1 write) is its index.
KIND_NAMES = ("R", "W", "MAP", "UNMAP", "UNKNOWN", "MARK", "VERSION", "PCIDEV")
_KIND = {name: i for i, name in enumerate(KIND_NAMES)}

#: Rows per row group (the last one may have fewer).
ROW_GROUP = 1 << 18

#: The columns other than ``register``: name → pyarrow type name.
COLUMNS = {
    "kind": "int8",  # dictionary indices; see schema()
    "width": "uint8",
    "ts_us": "int64",
    "map_id": "int32",
    "phys": "uint64",
    "value": "uint64",
    "wide_value": "binary",
    "pc": "uint64",
    "tid": "uint32",
    "virt": "uint64",
    "length": "uint64",
    "text": "string",
}


def schema(with_register: bool) -> Any:
    """The table's pyarrow schema."""
    pa = need("pyarrow", "export --format parquet")
    fields = [
        pa.field(name, pa.dictionary(pa.int8(), pa.string()) if name == "kind" else getattr(pa, t)())
        for name, t in COLUMNS.items()
    ]
    if with_register:
        fields.append(pa.field("register", pa.dictionary(pa.int32(), pa.string())))
    return pa.schema(fields, metadata={b"kmmio": b"mmiotrace log records, one row per line (kmmio export)"})


def _record_row(rec: Record) -> dict[str, Any]:
    """The columns of a record that is not an access."""
    match rec:
        case Map():
            return {"kind": "MAP", "ts_us": rec.ts, "map_id": rec.map_id, "phys": rec.phys, "pc": rec.pc,
                    "tid": rec.pid, "virt": rec.virt, "length": rec.length}  # fmt: skip
        case Unmap():
            return {"kind": "UNMAP", "ts_us": rec.ts, "map_id": rec.map_id, "pc": rec.pc, "tid": rec.pid}
        case Unknown():
            return {"kind": "UNKNOWN", "ts_us": rec.ts, "map_id": rec.map_id, "phys": rec.phys,
                    "pc": rec.pc, "tid": rec.pid, "text": ",".join(f"{b:02x}" for b in rec.code)}  # fmt: skip
        case KernelAccess():
            return {"kind": "MARK", "ts_us": rec.ts, "map_id": rec.map_id, "phys": rec.phys,
                    "length": rec.length, "tid": rec.tid, "text": rec.text}  # fmt: skip
        case MapInfo():
            return {"kind": "MARK", "ts_us": rec.ts, "map_id": rec.map_id, "text": rec.text}
        case Mark():
            return {"kind": "MARK", "ts_us": rec.ts, "text": rec.text}
        case Version():
            return {"kind": "VERSION", "text": rec.version}
        case PciDev():
            return {"kind": "PCIDEV", "text": format_record(rec)[len("PCIDEV ") :]}
    raise TypeError(f"not a record: {rec!r}")  # an Access comes in a Batch


class ParquetExport:
    """Writes batches and records to a Parquet file as they come; :meth:`close` writes the
    last row group and the footer."""

    def __init__(self, sink: IO[bytes], namer: Namer | None = None, row_group: int = ROW_GROUP) -> None:
        self.pa = need("pyarrow", "export --format parquet")
        self.pq = need("pyarrow.parquet", "export --format parquet")
        self.np = need("numpy", "export --format parquet")
        self.namer = namer if namer is not None and namer.regmap is not None else None
        self.schema = schema(self.namer is not None)
        self.row_group = row_group
        self.writer = self.pq.ParquetWriter(sink, self.schema, compression="snappy")
        self._kinds = self.pa.array(KIND_NAMES, self.pa.string())
        self._types = {name: self.schema.field(name).type for name in COLUMNS if name != "kind"}
        self._segments: list[Any] = []  # record batches (kind as int8 indices), in order
        self._registers: list[Any] = []  # int32 register indices (-1: none) per segment
        self._records: list[Record] = []  # records waiting to become a segment
        self._pending = 0
        self._names: list[str] = []  # the register dictionary, growing
        self._index: dict[str, int] = {}
        self.rows = 0

    def batch(self, b: Batch) -> None:
        """Add a batch of accesses."""
        self._end_records()
        np, pa = self.np, self.pa
        n = b.n

        def col(name: str, dtype: Any) -> Any:
            # A copy: a batch's C arrays are sized for a full batch, however few rows it has.
            return np.frombuffer(getattr(b, name), dtype=dtype).copy()

        kind, width, phys = col("kind", np.int8), col("width", np.uint8), col("phys", np.uint64)
        value = col("value", np.uint64)
        arrays = {
            "kind": pa.array(kind),
            "width": pa.array(width),
            "ts_us": pa.array(col("ts", np.int64)),
            "map_id": pa.array(col("map_id", np.int32)),
            "phys": pa.array(phys),
            "value": pa.array(value),
            "wide_value": self._wide(b, width),
            "pc": pa.array(col("pc", np.uint64)),
            "tid": pa.array(col("tid", np.uint32)),
        }
        for name in ("virt", "length", "text"):
            arrays[name] = pa.nulls(n, self._types[name])
        if self.namer is not None:
            self._registers.append(self._register_indices(kind, phys, width))
        self._add(pa.record_batch([arrays[c] for c in COLUMNS], names=list(COLUMNS)), n)

    def _wide(self, b: Batch, width: Any) -> Any:
        """The ``wide_value`` column, straight from the batch's wide area (its layout is
        Arrow's: offsets and bytes), null where the access is 8 bytes or less."""
        pa, np = self.pa, self.np
        if not b.has_wide:
            return pa.nulls(b.n, pa.binary())
        offsets = pa.py_buffer(np.frombuffer(b.wide_offsets, dtype=np.int32).copy())
        data = pa.py_buffer(bytes(b.wide_bytes))
        valid = pa.py_buffer(np.packbits(width > 8, bitorder="little"))
        return pa.Array.from_buffers(pa.binary(), b.n, [valid, offsets, data])

    def _register_indices(self, kind: Any, phys: Any, width: Any) -> Any:
        """Each row's index in the register dictionary (-1: none), looking up each
        distinct (kind, phys, width) once."""
        np = self.np
        assert self.namer is not None
        keys, inv = distinct(np, kind, phys, width)
        lut = np.empty(len(keys), dtype=np.int32)
        for j, key in enumerate(keys):
            reg = self.namer.naming(*key).register
            if reg is None:
                lut[j] = -1
                continue
            idx = self._index.get(reg)
            if idx is None:
                idx = self._index[reg] = len(self._names)
                self._names.append(reg)
            lut[j] = idx
        return lut[inv]

    def record(self, rec: Record) -> None:
        """Add a record that is not an access."""
        self._records.append(rec)
        if len(self._records) >= 4096:
            self._end_records()

    def _end_records(self) -> None:
        if not self._records:
            return
        pa, recs = self.pa, self._records
        self._records = []
        rows = [_record_row(r) for r in recs]
        arrays = [pa.array([_KIND[r["kind"]] for r in rows], pa.int8())]
        arrays += [pa.array([r.get(name) for r in rows], self._types[name]) for name in list(COLUMNS)[1:]]
        if self.namer is not None:
            self._registers.append(self.np.full(len(rows), -1, dtype=self.np.int32))
        self._add(pa.record_batch(arrays, names=list(COLUMNS)), len(rows))

    def _add(self, rb: Any, n: int) -> None:
        self._segments.append(rb)
        self._pending += n
        if self._pending >= self.row_group:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        """Write whole row groups of what is held (everything, when ``final``)."""
        if not self._pending:
            return
        pa, np = self.pa, self.np
        table = pa.Table.from_batches(self._segments)
        n = len(table)
        cut = n if final else n - n % self.row_group
        idx = np.concatenate(self._registers) if self.namer is not None else None
        self._segments = table.slice(cut).to_batches()
        self._registers = [idx[cut:]] if idx is not None else []
        self._pending = n - cut
        table = table.slice(0, cut)
        kinds = pa.chunked_array(
            [pa.DictionaryArray.from_arrays(c, self._kinds) for c in table.column("kind").chunks],
            self.schema.field("kind").type,
        )
        table = table.set_column(0, self.schema.field("kind"), kinds)
        if idx is not None:
            idx = idx[:cut]
            names = pa.array(self._names, pa.string())
            regs = pa.DictionaryArray.from_arrays(pa.array(idx, mask=idx < 0), names)
            table = table.append_column(self.schema.field("register"), pa.chunked_array([regs]))
        self.writer.write_table(table, row_group_size=self.row_group)
        self.rows += cut

    def close(self) -> None:
        """Write what is left and the file's footer."""
        self._end_records()
        self._flush(final=True)
        self.writer.close()


def export_parquet(
    stream: IO[bytes],
    sink: IO[bytes],
    namer: Namer | None = None,
    progress: Progress | None = None,
    row_group: int = ROW_GROUP,
) -> int:
    """Write the log read from ``stream`` to ``sink`` as Parquet; returns the rows written.
    A malformed line raises :class:`~kmmio.errors.TraceFormatError`."""
    exp = ParquetExport(sink, namer, row_group)
    try:
        feed(exp, scan(stream, progress=progress))
        exp.close()
    except BaseException:
        with contextlib.suppress(Exception):
            exp.writer.close()  # now, while the sink is open (the output is removed anyway)
        raise
    return exp.rows


def feed(exp: ParquetExport, items: Iterable[Batch | Record]) -> None:
    for item in items:
        if isinstance(item, Batch):
            exp.batch(item)
        else:
            exp.record(item)
