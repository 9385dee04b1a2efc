"""A TraceWriter starts its log with ``VERSION 20070824``, and only once it logs something."""

from __future__ import annotations

import io
import re
import types
from pathlib import Path

import kmmio
from kmmio.trace import Access, Kind, Map, Mark, PciDev, TraceWriter, Unmap, Version, read_records

README = Path(__file__).parents[2] / "README.md"


def _records_a_tracer_writes(writer: TraceWriter) -> None:
    """What the tracer hands a writer: ``MAP`` records, access lines in batches, ``UNMAP``."""
    writer.write(Map(1_000_000, 1, 0x0, 0x7F0000000000, 0x1000, 0x401000, 42))
    writer.write_accesses([("W", 4, 1_000_001, 1, 0x4, 0xDEADBEEF, 0x401010, 42)])
    writer.write(Access(Kind.READ, 8, 1_000_002, 1, 0x8, 0x1, 0x401020, 43))
    writer.write(Unmap(1_000_003, 1, 0x401030, 42))
    writer.flush()


def _readme_api_writer(stream: io.StringIO) -> TraceWriter:
    """The writer of the README's first Python API example, writing to ``stream``."""
    api = README.read_text().split("\n## Python API\n", 1)[1]
    example = re.search(r"```python\n(.*?)```", api, re.S)
    assert example is not None, "README.md has no python example"
    line = next((x for x in example.group(1).splitlines() if x.startswith("writer = ")), None)
    assert line is not None, "the README's first python example makes no `writer = ...`"
    scope: dict[str, object] = {"kmmio": kmmio, "sys": types.SimpleNamespace(stdout=stream)}
    exec(line, scope)
    writer = scope["writer"]
    assert isinstance(writer, TraceWriter)
    return writer


def test_the_readme_api_writer_makes_a_log_that_starts_with_version() -> None:
    out = io.StringIO()
    _records_a_tracer_writes(_readme_api_writer(out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "VERSION 20070824"
    assert lines.count("VERSION 20070824") == 1
    records = list(read_records(lines))
    assert [type(r) for r in records] == [Version, Map, Access, Access, Unmap]


def test_the_header_comes_before_the_first_batch_of_access_lines() -> None:
    out = io.StringIO()
    TraceWriter(out).write_accesses([("R", 1, 0, 1, 0x0, 0x7, 0x0, 1)])
    assert out.getvalue() == "VERSION 20070824\nR 1 0.000000 1 0x0 0x7 0x0 1\n"


def test_a_writer_given_nothing_writes_nothing() -> None:
    """A trace refused before it starts (the CLI's refused attach) leaves no header behind."""
    out = io.StringIO()
    writer = TraceWriter(out, flush_every=1)
    writer.flush()
    assert out.getvalue() == ""


def test_write_header_writes_it_once() -> None:
    out = io.StringIO()
    writer = TraceWriter(out)
    writer.write_header()
    writer.write_header()
    writer.write(Mark(1, "hello"))
    assert out.getvalue() == "VERSION 20070824\nMARK 0.000001 hello\n"
    assert writer.count == 2


def test_a_version_written_first_is_the_header() -> None:
    """Code that writes its own ``Version`` first (the demo does) gets one line, not two."""
    out = io.StringIO()
    writer = TraceWriter(out)
    writer.write(Version("20070824"))
    writer.write(Mark(1, "x"))
    writer.write(Version())  # later, a record like any other
    assert out.getvalue().splitlines() == ["VERSION 20070824", "MARK 0.000001 x", "VERSION 20070824"]


def test_another_header_or_none() -> None:
    out = io.StringIO()
    writer = TraceWriter(out, header=Mark(0, "start"))
    writer.write(Version())
    assert out.getvalue().splitlines() == ["MARK 0.000000 start", "VERSION 20070824"]
    bare = io.StringIO()
    TraceWriter(bare, header=None).write(Mark(2, "x"))
    assert bare.getvalue() == "MARK 0.000002 x\n"


def test_a_header_of_several_records() -> None:
    """The tracer's header: VERSION then the PCIDEV lines, before the first record; a
    Version the caller writes first takes the header Version's place, the rest follows."""
    starts, sizes = (0xF7C00000, 0, 0xE001, 0, 0, 0, 0), (0x20000, 0, 0x20, 0, 0, 0, 0)
    dev = PciDev(0x0300, 0x8086_10D3, 0x1A, starts, sizes)
    out = io.StringIO()
    TraceWriter(out, header=[Version(), dev]).write(Mark(1, "x"))
    assert out.getvalue().splitlines() == [
        "VERSION 20070824",
        "PCIDEV 0300 808610d3 1a f7c00000 0 e001 0 0 0 0 20000 0 20 0 0 0 0 ",
        "MARK 0.000001 x",
    ]
    own = io.StringIO()
    writer = TraceWriter(own, header=(Version(), dev))
    writer.write(Version("20070824"))
    writer.write(Mark(1, "x"))
    assert [line.split()[0] for line in own.getvalue().splitlines()] == ["VERSION", "PCIDEV", "MARK"]
    empty = io.StringIO()
    TraceWriter(empty, header=[Version(), dev]).write_header()
    assert len(empty.getvalue().splitlines()) == 2
