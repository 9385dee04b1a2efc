"""``kmmio diff``'s input side: a log as per-thread streams of tokens.

A token is what the alignment compares: its :attr:`Token.key` is ``(kind, where, width,
detail)``:

* ``("W", where, width, None)`` for a write: the written value is *not* part of the key
  (the alignment pairs writes to the same place whatever their values), it is kept apart
  in :attr:`Token.value` and compared once two writes are paired (a different value is a
  substitution, see :mod:`kmmio.tools.diff_align`);
* ``("R", where, width, None)`` for a read, or a *polling run*: a maximal sequence of
  consecutive accesses of one thread that are all reads of the same (phys, width) is one
  token, whatever its length (1, 2 or 10,000 reads), so a different number of polls is no
  difference (the thread's writes, other reads, ``UNKNOWN`` faults and syscall ``MARK``
  lines end a run; other threads' accesses do not); read values are never compared (the
  device's state differs between runs);
* ``("K", phys, length, "SYSCALL DIRECTION")`` for the kernel reaching traced memory for a
  syscall (a ``MARK ... syscall`` line), ``("U", where, 0, None)`` for an ``UNKNOWN`` fault.

``where`` is the physical address (the same for the same device in both runs, whatever
virtual address or map id each run got; for a file or shared-memory object the offset in
it), or, with a register map, the register the access hit as ``kmmio decode`` names it
(``tdev.CTRL``, ``tdev.CTRL[23:8]``, ``?@0xf7c0000c``).  A token also keeps what is needed to
print its line again and the log line numbers it spans.

Threads are numbered by order of first appearance (their first traced access): thread 0
of one log is paired with thread 0 of the other, and so on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from kmmio.maps.format import register_column
from kmmio.maps.model import RegisterMap, decode_hits
from kmmio.tools.scan import Batch, Progress, scan
from kmmio.trace.records import KernelAccess, Mark, Record, Unknown
from kmmio.trace.writer import format_access, format_record

#: A token's key: kind ("R", "W", "K", "U"), where (phys or register), width, detail (the
#: syscall and direction of a "K" token, else None: a write's value is not in its key).
Key = tuple[str, int | str, int, int | str | None]
#: An access's fields as :func:`~kmmio.trace.writer.format_access` takes them.
Row = tuple[str, int, int, int, int, int, int, int]

#: Records before the first access kept to be numbered back from it.
HEAD = 4096

_LOST = re.compile(r"Lost (\d+) events\.")


class Token:
    """One access, or one polling run, of one thread."""

    __slots__ = ("_full", "count", "key", "last", "line", "rec", "value")

    def __init__(self, key: Key, line: int, rec: Row | Record, value: int | None = None) -> None:
        self.key = key
        #: The written value (a write), else None.
        self.value = value
        self._full: Key | None = None
        #: The line of the (first) access, and of the last one of a polling run.
        self.line = line
        self.last = line
        #: Reads folded into this token (1 for anything but a polling run).
        self.count = 1
        #: The first access's fields (an ``R``/``W`` line), or the record (``K``, ``U``).
        self.rec = rec

    @property
    def is_write(self) -> bool:
        return self.key[0] == "W"

    @property
    def full(self) -> Key:
        """The key with the written value in it: equal only for equal tokens (made when
        first asked for: only a look ahead on values needs it)."""
        if self.value is None:
            return self.key
        full = self._full
        if full is None:
            key = self.key
            full = self._full = (key[0], key[1], key[2], self.value)
        return full

    def __repr__(self) -> str:
        value = "" if self.value is None else f", value={self.value:#x}"
        return f"Token({self.key!r}{value}, line={self.line}, count={self.count})"


def log_text(tok: Token) -> str:
    """The token's (first) line as the log has it."""
    rec = tok.rec
    if isinstance(rec, tuple):
        return format_access(*rec)
    return format_record(rec)


class Locator:
    """``where`` for an access: its phys, or with a map the registers it hit
    (:func:`~kmmio.maps.format.register_column`), remembered per (kind, phys, width)."""

    def __init__(self, regmap: RegisterMap | None, cache_size: int = 1 << 16) -> None:
        self.regmap = regmap
        self.cache_size = cache_size
        self._cache: dict[tuple[str, int, int], str] = {}

    def __call__(self, kind: str, phys: int, width: int) -> int | str:
        if self.regmap is None:
            return phys
        key = (kind, phys, width)
        where = self._cache.get(key)
        if where is None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            hits = self.regmap.lookup(phys, width)
            where = self._cache[key] = register_column(decode_hits(phys, width, 0, hits, kind))
        return where


@dataclass
class SideStats:
    """What one log held: accesses, lines (all, once it is read), threads (tids by first
    appearance), lost events."""

    accesses: int = 0
    lines: int = 0
    tids: list[int] = field(default_factory=list)
    lost: int = 0


class TokenSource:
    """The tokens of one log, as ``(thread number, token)`` in the order they complete
    (a polling run completes when its thread does something else, or at the end)."""

    def __init__(
        self,
        stream: IO[bytes],
        locate: Callable[[str, int, int], int | str],
        progress: Progress | None = None,
    ) -> None:
        self.stream = stream
        self.locate = locate
        self.progress = progress
        self.stats = SideStats()
        self._threads: dict[int, int] = {}
        #: tid -> (thread number, the polling run it is in, its phys and width).
        self._runs: dict[int, tuple[int, Token, int, int]] = {}

    def _thread(self, tid: int) -> int:
        n = self._threads.get(tid)
        if n is None:
            n = self._threads[tid] = len(self._threads)
            self.stats.tids.append(tid)
        return n

    def __iter__(self) -> Iterator[tuple[int, Token]]:
        # Records carry no line number: those after an access line are numbered on from
        # it (a log has no blank or '#' lines past its header); those before the first
        # access back from it (the kernel's '#' header lines come first), up to HEAD.
        next_line = 1
        head: list[Record] | None = []
        for item in scan(self.stream, progress=self):
            if isinstance(item, Batch):
                if head is not None:
                    start = item.first_line - len(head)
                    for k, rec in enumerate(head):
                        yield from self._record(rec, start + k)
                    head = None
                yield from self._batch(item)
                next_line = item.first_line + item.n
                continue
            if head is not None:
                if len(head) < HEAD:
                    head.append(item)
                    continue
                for rec in head:
                    yield from self._record(rec, next_line)
                    next_line += 1
                head = None
            yield from self._record(item, next_line)
            next_line += 1
        if head:  # no access at all: back from the end
            start = max(self.stats.lines - len(head) + 1, 1)
            for k, rec in enumerate(head):
                yield from self._record(rec, start + k)
        runs, self._runs = self._runs, {}
        for thread, tok, _, _ in sorted(runs.values(), key=lambda run: run[0]):
            yield thread, tok

    def advance(self, nbytes: int, nlines: int) -> None:
        """The reader's progress: lines counted, and passed on."""
        self.stats.lines += nlines
        if self.progress is not None:
            self.progress.advance(nbytes, nlines)

    def _batch(self, batch: Batch) -> Iterator[tuple[int, Token]]:
        n = batch.n
        self.stats.accesses += n
        kinds = batch.kind.tolist()
        widths = batch.width.tolist()
        physs = batch.phys.tolist()
        values = batch.value.tolist()
        tids = batch.tid.tolist()
        ts = batch.ts.tolist()
        maps = batch.map_id.tolist()
        pcs = batch.pc.tolist()
        wide = batch.wide
        first = batch.first_line
        runs = self._runs
        locate = self.locate
        for i in range(n):
            tid = tids[i]
            phys = physs[i]
            width = widths[i]
            run = runs.get(tid)
            if kinds[i] == 0:  # a read: start or extend a polling run
                if run is not None:
                    thread, tok, run_phys, run_width = run
                    if run_phys == phys and run_width == width:
                        tok.count += 1
                        tok.last = first + i
                        continue
                    yield thread, tok
                else:
                    thread = self._thread(tid)
                value = wide.get(i, values[i]) if wide else values[i]
                row = ("R", width, ts[i], maps[i], phys, value, pcs[i], tid)
                tok = Token(("R", locate("R", phys, width), width, None), first + i, row)
                runs[tid] = (thread, tok, phys, width)
                continue
            if run is not None:
                del runs[tid]
                thread = run[0]
                yield thread, run[1]
            else:
                thread = self._thread(tid)
            value = wide.get(i, values[i]) if wide else values[i]
            row = ("W", width, ts[i], maps[i], phys, value, pcs[i], tid)
            yield thread, Token(("W", locate("W", phys, width), width, None), first + i, row, value)

    def _record(self, rec: Record, line: int) -> Iterator[tuple[int, Token]]:
        key: Key
        if isinstance(rec, KernelAccess):
            tid = rec.tid
            key = ("K", rec.phys, -1 if rec.length is None else rec.length, f"{rec.syscall} {rec.direction}")
        elif isinstance(rec, Unknown):
            tid = rec.pid
            key = ("U", self.locate("R", rec.phys, 1), 0, None)
        else:  # accesses all come in batches
            if isinstance(rec, Mark):
                lost = _LOST.fullmatch(rec.text.strip())
                if lost:
                    self.stats.lost += int(lost.group(1))
            return
        run = self._runs.pop(tid, None)
        if run is not None:
            thread = run[0]
            yield thread, run[1]
        else:
            thread = self._thread(tid)
        yield thread, Token(key, line, rec)
