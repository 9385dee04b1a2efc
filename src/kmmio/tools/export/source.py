"""The log an export reads and the file it writes, and the rows of a batch as integers.

* :func:`open_log` opens ``LOG`` (``-``: standard input) for :func:`kmmio.tools.scan.scan`
  with its progress line; a tool that reads the log twice (``reread``) refuses standard
  input and anything else it cannot rewind, in one line.
* :func:`binary_output` and :func:`text_output` write beside the target and rename it into
  place at the end, so a log that turns out malformed half-way leaves no half-written
  export behind.
* :func:`rows` gives a batch's rows as tuples of Python integers, for the exports that
  handle accesses one by one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from kmmio.errors import UsageError
from kmmio.tools.progress import FileProgress, file_size
from kmmio.tools.scan import Batch

#: One access: kind (0 read, 1 write), width, ts (µs), map id, phys, value, pc, tid.
Row = tuple[int, int, int, int, int, int, int, int]


def log_name(path: str) -> str:
    """How messages name the log."""
    return "standard input" if path == "-" else path


@contextlib.contextmanager
def open_log(
    path: str, *, quiet: bool = False, reread: str | None = None, label: str | None = None
) -> Iterator[tuple[IO[bytes], FileProgress]]:
    """The log as a binary stream and a progress line for it (closed at the end).

    ``reread`` (e.g. ``"export --format vcd"``): the tool reads the log twice, so it must
    be a file it can rewind.  ``label`` names the progress line (default: the path)."""
    if path == "-":
        if reread:
            raise UsageError(f"{reread} reads the log twice: give a log file, not standard input")
        stream: IO[bytes] = sys.stdin.buffer
        owned = False
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        owned = True
    try:
        if reread and not stream.seekable():
            raise UsageError(f"{reread} reads the log twice: {path} is not a regular file")
        total = None if path == "-" else file_size(path)
        progress = FileProgress(label or log_name(path), total, quiet=quiet)
        try:
            yield stream, progress
        finally:
            progress.close()
    finally:
        if owned:
            stream.close()


def binary_output(path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A binary file to write ``path`` through (see :func:`_output`)."""
    return _output(path, "wb")


def text_output(path: str) -> contextlib.AbstractContextManager[IO[str]]:
    """A text file (UTF-8) to write ``path`` through (see :func:`_output`)."""
    return _output(path, "w")


@contextlib.contextmanager
def _output(path: str, mode: str) -> Iterator[IO[Any]]:
    """A temporary file beside ``path``, renamed to ``path`` when the block ends without
    an exception and removed otherwise."""
    if path == "-":
        raise UsageError("-o needs a file name (an export is not written to standard output)")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: Is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def rows(batch: Batch) -> Iterator[Row]:
    """The batch's rows as integers, the whole value of rows wider than 64 bits."""
    cols = [
        batch.kind.tolist(),
        batch.width.tolist(),
        batch.ts.tolist(),
        batch.map_id.tolist(),
        batch.phys.tolist(),
        batch.value.tolist(),
        batch.pc.tolist(),
        batch.tid.tolist(),
    ]
    if batch.wide:
        values: list[int] = cols[5]
        for i, v in batch.wide.items():
            values[i] = v
    yield from zip(*cols, strict=True)
