"""The mmiotrace log format: records, a writer and a reader (pure, on streams)."""

from kmmio.trace.reader import parse_line, read_records
from kmmio.trace.records import (
    MMIOTRACE_VERSION,
    Access,
    KernelAccess,
    Kind,
    Map,
    MapInfo,
    Mark,
    PciDev,
    Record,
    Unknown,
    Unmap,
    Version,
)
from kmmio.trace.writer import TraceWriter, format_record, format_ts

__all__ = [
    "MMIOTRACE_VERSION",
    "Access",
    "KernelAccess",
    "Kind",
    "Map",
    "MapInfo",
    "Mark",
    "PciDev",
    "Record",
    "TraceWriter",
    "Unknown",
    "Unmap",
    "Version",
    "format_record",
    "format_ts",
    "parse_line",
    "read_records",
]
