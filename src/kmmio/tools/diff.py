"""``kmmio diff A B``: what one program does differently from another to the same device.

Rules (the choices made; see also :mod:`kmmio.tools.diff_tokens` and
:mod:`kmmio.tools.diff_align`):

* **What is compared.**  Every access (``R``/``W``), every ``UNKNOWN`` fault and every
  ``MARK ... syscall`` line (the kernel reaching traced memory for a syscall) becomes a
  token keyed on *(kind, where, width)*; a write also carries its value, which is not in
  the key.  Timestamps, program counters, map ids, virtual addresses and thread ids are
  never compared, nor are ``MAP``, ``UNMAP``, ``PCIDEV`` or free ``MARK`` lines.
* **Where.**  The physical address: two runs map the device at different virtual
  addresses, maybe under different map ids, but log the same phys for the same device
  (for a file or shared-memory object, the offset in it).  With ``--map``, the register
  the access hit, as ``kmmio decode`` names it (``tdev.CTRL``, ``tdev.CTRL[23:8]`` for part
  of it, ``?@ADDRESS`` outside every register); the same maps apply to both logs.
* **Values.**  The sequences are aligned on keys, so two writes to the same place are
  paired whatever their values; a pair whose values differ is a *substitution* (one
  ``-`` line and one ``+`` line, the ``+`` line marked ``[value differs]``), a
  divergence of its own (or part of the one next to it).  A write that one log has and
  the other not is an insertion or deletion (when writes to one place follow each other,
  a short look ahead on values tells a missing write from changed values: see
  :mod:`~kmmio.tools.diff_align`).  Read values are never compared (the device's state
  differs between runs).
* **Polling runs.**  A maximal sequence of consecutive accesses of one thread that are
  all reads of the same (phys, width) folds into one token, whatever its length: other
  threads' accesses in between do not end it; any other access of the thread does (a
  write, a read elsewhere or at another width), and so do its ``UNKNOWN`` faults and the
  kernel reaching traced memory for its syscalls.  This is ``kmmio summary``'s rule for
  polling runs, with two differences: no threshold (any run of 2 or more identical reads
  is one token, and it matches a single read too), and no map id (map ids differ between
  runs).  A different number of polls is therefore no difference.  A loop that reads two
  registers in turn is not a run: its reads are compared one by one.
* **Threads.**  Thread ids differ between runs.  Threads are paired by order of first
  appearance (first traced access): the first thread of A with the first of B, and so
  on; each pair's sequences are aligned on their own, so a different interleaving of
  threads is no difference (within the memory bound below).  A thread with no partner
  differs in full.  The single threaded program is the common case.
* **Alignment.**  Streaming: the logs are read a chunk of tokens at a time, from the one
  whose threads are behind their partners', and each pair of sequences is walked while
  it agrees; at a mismatch the walk looks ahead up to ``window`` tokens on each side for
  the nearest point where ``RUN`` (4) keys agree again (see
  :mod:`~kmmio.tools.diff_align`), and a diff of what lies before that point
  (``difflib``'s, on keys) splits it into insertions and deletions and what still
  agrees: A's tokens in a divergence are ``-`` lines, B's ``+`` lines.  A stretch longer
  than the window found in one log only is shown with up to a window of the other's
  tokens beside it, and the alignment after it may be lost: raise ``window``
  (``--window``) for such logs.
* **Memory** is bounded whatever the logs: per pair of threads, the window on each side
  (10,000 tokens by default, a few hundred bytes each), and a cap on the tokens a thread
  keeps while its partner is missing or late: ``window + RUN +`` :data:`CHUNK` tokens
  while the other log has not had that thread at all (a thread only one program has, or
  one started much later in the other), ``backlog`` (``--backlog``, 100,000) once it
  has (the other program's threads interleaved very differently).  A queue that reaches
  its cap is declared found in that log only, at once, and streamed out.
  :attr:`DiffResult.peak_queue` is the longest a queue has been.
* **Output** (standard output), like ``diff -u``: ``--- A`` and ``+++ B``, then a hunk per
  group of divergences whose context meets (as ``diff -u`` joins them), headed ``@@
  -LINE_A +LINE_B @@ thread N: tid T in A, U in B`` (where the hunk starts in each log),
  then one line per token, ``SIGN LINE_A LINE_B  TEXT``: ``' '`` context (``context``
  tokens on each side of a divergence, both line numbers, A's text), ``-`` A's tokens,
  ``+`` B's, each with its line number in its log and its text as in the log (formatted
  again from its fields: the same text for kmmio's logs; with a map, the decoded text
  ``kmmio decode`` prints).  A polling run is its first read followed by ``[xN reads to
  line L]`` (context: ``[xN reads]``, or ``[xN reads in A, xM in B]``).  Hunks are written
  whole, so those of different threads do not mix.  Only the first ``max_shown``
  divergences are printed; all are counted.  Then a summary: the count of divergences,
  of substitutions and of accesses only in A and only in B (a polling run counts its
  reads), whether the logs have different numbers of threads, then per register (or
  address) and width: the writes whose values differ at aligned places (A's value ->
  B's value), the writes only in A, the writes only in B (the first :data:`REGISTERS`
  registers of each, :data:`SAMPLES` values each, the rest counted).  Two logs that do
  not differ print nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from kmmio.errors import TraceFormatError
from kmmio.maps.format import Decoder
from kmmio.maps.model import RegisterMap
from kmmio.tools.diff_align import BACKLOG, RUN, WINDOW, Aligner
from kmmio.tools.diff_tokens import Locator, SideStats, Token, TokenSource, log_text
from kmmio.tools.scan import Progress
from kmmio.trace.records import Access, Kind
from kmmio.trace.writer import format_record

#: Tokens read from one log before the pairs are walked.
CHUNK = 1024
#: Lines of a hunk kept before they are written even though the hunk goes on.
HUNK_LINES = 10_000
#: Value pairs shown per register in the summary.
SAMPLES = 4
#: Registers (or addresses) listed in each part of the summary, in the order they first
#: differed (the writes at others are only counted).
REGISTERS = 20
#: What ends the ``+`` line of a write whose value differs from its ``-`` line's.
_SUBSTITUTED = "  [value differs]"


class LogFormatError(TraceFormatError):
    """A malformed line in log ``side`` (0: A, 1: B)."""

    def __init__(self, side: int, exc: TraceFormatError) -> None:
        super().__init__(exc.line_no, exc.message)
        self.side = side


@dataclass
class WriteDiff:
    """The writes of one (where, width) whose values differ at aligned places: how many,
    and the first few ``(A's value, B's value)`` pairs."""

    count: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class WriteList:
    """The writes of one (where, width) found in one log only: how many, and the first
    few values."""

    count: int = 0
    samples: list[int] = field(default_factory=list)


@dataclass
class DiffResult:
    divergences: int = 0
    shown: int = 0
    changed: int = 0  # substitutions: paired writes whose values differ
    only_a: int = 0  # accesses (reads of a polling run each counted)
    only_b: int = 0
    #: Per (where, width): the writes whose values differ (the first REGISTERS places).
    writes: dict[tuple[int | str, int], WriteDiff] = field(default_factory=dict)
    #: Per (where, width): the writes only in A, only in B (the first REGISTERS places each).
    writes_only: tuple[dict[tuple[int | str, int], WriteList], dict[tuple[int | str, int], WriteList]] = (
        field(default_factory=lambda: ({}, {}))
    )
    #: Writes at places past the first REGISTERS: substitutions, only in A, only in B.
    writes_elsewhere: list[int] = field(default_factory=lambda: [0, 0, 0])
    #: The longest any thread's queue of tokens has been (memory: see diff_align).
    peak_queue: int = 0
    a: SideStats = field(default_factory=SideStats)
    b: SideStats = field(default_factory=SideStats)

    @property
    def equal(self) -> bool:
        return self.divergences == 0


class _Differ:
    """Shared state: options, output, counts."""

    def __init__(
        self,
        write: Callable[[str], object],
        names: tuple[str, str],
        text: Callable[[Token], str],
        context: int,
        max_shown: int,
    ) -> None:
        self.write = write
        self.names = names
        self.text = text
        self.context = context
        self.max_shown = max_shown
        self.result = DiffResult()
        self.started = False

    def emit(self, lines: list[str]) -> None:
        if not lines:
            return
        if not self.started:
            self.started = True
            self.write(f"--- {self.names[0]}\n+++ {self.names[1]}\n")
        self.write("".join(lines))

    def count_change(self, ta: Token, tb: Token) -> None:
        """A substitution: the write ``ta`` in A, paired with ``tb`` in B, another value."""
        res = self.result
        res.changed += 1
        assert ta.value is not None and tb.value is not None
        place = (ta.key[1], ta.key[2])
        wd = res.writes.get(place)
        if wd is None:
            if len(res.writes) >= REGISTERS:
                res.writes_elsewhere[0] += 1
                return
            wd = res.writes[place] = WriteDiff()
        wd.count += 1
        if len(wd.samples) < SAMPLES:
            wd.samples.append((ta.value, tb.value))

    def count_only(self, side: int, toks: list[Token]) -> None:
        """Tokens found in one log only: accesses counted, writes listed per place."""
        res = self.result
        n = sum(t.count for t in toks)
        if side:
            res.only_b += n
        else:
            res.only_a += n
        places = res.writes_only[side]
        for tok in toks:
            if tok.value is None:
                continue
            place = (tok.key[1], tok.key[2])
            wl = places.get(place)
            if wl is None:
                if len(places) >= REGISTERS:
                    res.writes_elsewhere[1 + side] += 1
                    continue
                wl = places[place] = WriteList()
            wl.count += 1
            if len(wl.samples) < SAMPLES:
                wl.samples.append(tok.value)


class _Pair:
    """A pair of threads: their aligner and their hunks."""

    def __init__(self, differ: _Differ, number: int, window: int, run: int, caps: tuple[int, int]) -> None:
        self.d = differ
        self.number = number
        self.aligner = Aligner(self.match, self.diverge, window, run, unpaired=caps[0], backlog=caps[1])
        self.ring: deque[tuple[Token, Token]] = deque(maxlen=differ.context)
        self.gap: list[tuple[Token, Token]] = []
        self.hunk: list[str] | None = None
        self.showing = False
        self.in_divergence = False  # no pair of equal tokens since the last difference
        self.tids: list[int | None] = [None, None]

    def match(self, ta: Token, tb: Token) -> None:
        if ta.value != tb.value:  # paired writes, another value: a substitution
            self.d.count_change(ta, tb)
            self._show([ta], [tb], substitution=True)
            return
        self.in_divergence = False
        if self.hunk is None:
            self.ring.append((ta, tb))
            return
        self.gap.append((ta, tb))
        if len(self.gap) > 2 * self.d.context:
            self.close()

    def diverge(self, only_a: list[Token], only_b: list[Token]) -> None:
        self.d.count_only(0, only_a)
        self.d.count_only(1, only_b)
        self._show(only_a, only_b, substitution=False)

    def _show(self, only_a: list[Token], only_b: list[Token], substitution: bool) -> None:
        d = self.d
        res = d.result
        if not self.in_divergence:
            self.in_divergence = True
            res.divergences += 1
            self.showing = res.shown < d.max_shown
            if self.showing:
                res.shown += 1
        if not self.showing:
            if self.hunk is not None:
                self.close()
            self.ring.clear()
            return
        if self.hunk is None:
            self.hunk = [self._header(only_a, only_b)]
            self.hunk.extend(self._context(ta, tb) for ta, tb in self.ring)
            self.ring.clear()
        else:
            self.hunk.extend(self._context(ta, tb) for ta, tb in self.gap)
        self.gap = []
        mark = _SUBSTITUTED if substitution else ""
        self.hunk.extend(_line("-", t.line, None, d.text(t) + _run(t)) for t in only_a)
        self.hunk.extend(_line("+", None, t.line, d.text(t) + _run(t) + mark) for t in only_b)
        if len(self.hunk) > HUNK_LINES:
            d.emit(self.hunk)
            self.hunk = []

    def close(self) -> None:
        """End the open hunk: its trailing context, then out it goes."""
        if self.hunk is None:
            return
        ctx = self.d.context
        self.hunk.extend(self._context(ta, tb) for ta, tb in self.gap[:ctx])
        self.ring.extend(self.gap[ctx:])
        self.gap = []
        self.d.emit(self.hunk)
        self.hunk = None

    def _header(self, only_a: list[Token], only_b: list[Token]) -> str:
        def start(side: int, block: list[Token], waiting: deque[Token]) -> str:
            if self.ring:
                return str(self.ring[0][side].line)
            if block:
                return str(block[0].line)
            return str(waiting[0].line) if waiting else "end"

        la = start(0, only_a, self.aligner.a)
        lb = start(1, only_b, self.aligner.b)
        ta, tb = (("none" if t is None else str(t)) for t in self.tids)
        return f"@@ -{la} +{lb} @@ thread {self.number + 1}: tid {ta} in A, {tb} in B\n"

    def _context(self, ta: Token, tb: Token) -> str:
        if ta.count == tb.count:
            note = f"  [x{ta.count} reads]" if ta.count > 1 else ""
        else:
            note = f"  [x{ta.count} reads in A, x{tb.count} in B]"
        return _line(" ", ta.line, tb.line, self.d.text(ta) + note)


def _line(sign: str, la: int | None, lb: int | None, text: str) -> str:
    return f"{sign}{'' if la is None else la:>8} {'' if lb is None else lb:>8}  {text}\n"


def _run(tok: Token) -> str:
    return f"  [x{tok.count} reads to line {tok.last}]" if tok.count > 1 else ""


def _texter(regmap: RegisterMap | None) -> Callable[[Token], str]:
    if regmap is None:
        return log_text
    decoder = Decoder(regmap)

    def text(tok: Token) -> str:
        rec = tok.rec
        if isinstance(rec, tuple):
            kind, width, ts, map_id, phys, value, pc, tid = rec
            return decoder.text(Access(Kind(kind), width, ts, map_id, phys, value, pc, tid))
        return format_record(rec)

    return text


def diff_logs(
    a: IO[bytes],
    b: IO[bytes],
    write: Callable[[str], object],
    *,
    regmap: RegisterMap | None = None,
    names: tuple[str, str] = ("A", "B"),
    context: int = 3,
    max_shown: int = 10,
    window: int = WINDOW,
    run: int = RUN,
    backlog: int = BACKLOG,
    progress: tuple[Progress | None, Progress | None] = (None, None),
    tick: Callable[[], object] | None = None,
) -> DiffResult:
    """Diff two logs (binary streams), writing hunks to ``write`` as they are found and
    the summary at the end (nothing at all when they do not differ); see the module's
    docstring.  ``progress`` receives each log's ``advance(bytes, lines)``; ``tick`` is
    called after each chunk of tokens (to redraw a progress line).  A malformed line
    raises :class:`LogFormatError` (a :class:`~kmmio.errors.TraceFormatError` saying
    which log)."""
    # A queue may wait for a lookahead (window + run) plus a chunk read from the other log
    # first: an unpaired thread's queue is cut past that, a lagging one's past ``backlog``.
    unpaired = window + run + CHUNK
    caps = (unpaired, max(backlog, unpaired))
    locate = Locator(regmap)
    differ = _Differ(write, names, _texter(regmap), context, max_shown)
    sources = (TokenSource(a, locate, progress[0]), TokenSource(b, locate, progress[1]))
    its = [iter(s) for s in sources]
    done = [False, False]
    read = [0, 0]
    pairs: list[_Pair] = []
    while not (done[0] and done[1]):
        side = 1 if done[0] else 0 if done[1] else _behind(pairs, read)
        it = its[side]
        touched: set[int] = set()
        for _ in range(CHUNK):
            try:
                item = next(it, None)
            except TraceFormatError as exc:
                raise LogFormatError(side, exc) from None
            if item is None:
                done[side] = True
                break
            thread, tok = item
            while len(pairs) <= thread:
                pairs.append(_Pair(differ, len(pairs), window, run, caps))
            pair = pairs[thread]
            if pair.tids[side] is None:
                pair.tids[side] = sources[side].stats.tids[thread]
            pair.aligner.push(side, tok)
            touched.add(thread)
            read[side] += 1
        for n in range(len(pairs)) if done[side] else sorted(touched):
            pairs[n].aligner.advance(done[0], done[1])
        if tick is not None:
            tick()
    for pair in pairs:
        pair.aligner.advance(True, True)
        pair.close()
    result = differ.result
    result.peak_queue = max((pair.aligner.peak for pair in pairs), default=0)
    result.a, result.b = sources[0].stats, sources[1].stats
    if not result.equal:
        write("".join(line + "\n" for line in summary_lines(result)))
    return result


def _behind(pairs: list[_Pair], read: list[int]) -> int:
    """The log to read next: the one whose threads are behind their partners (fewer tokens
    waiting in the queues of threads both logs have), else the one less read.  Reading
    both by tokens alone would let one side run ahead when its threads share the log
    differently (A: two threads in turn, B: one)."""
    waiting = [0, 0]
    for pair in pairs:
        al = pair.aligner
        if al.seen[0] and al.seen[1]:
            waiting[0] += len(al.a)
            waiting[1] += len(al.b)
    if waiting[0] != waiting[1]:
        return 0 if waiting[0] < waiting[1] else 1
    return 0 if read[0] <= read[1] else 1


def _where(where: int | str) -> str:
    return f"{where:#x}" if isinstance(where, int) else where


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary_lines(res: DiffResult) -> list[str]:
    """The summary printed after the hunks (empty when the logs do not differ)."""
    if res.equal:
        return []
    n = res.divergences
    lines = [
        f"{_plural(n, 'divergence', 'divergences')}: "
        f"{_plural(res.changed, 'write with a different value', 'writes with different values')}, "
        f"{_plural(res.only_a, 'access', 'accesses')} only in A, {res.only_b} only in B (polling runs folded)"
    ]
    if res.shown < n:
        lines.append(f"the first {res.shown} shown (--max)")
    if len(res.a.tids) != len(res.b.tids):
        lines.append(
            f"threads: {len(res.a.tids)} in A, {len(res.b.tids)} in B (paired by order of first appearance)"
        )
    sections: list[tuple[str, list[tuple[tuple[int | str, int], int, list[str]]], int]] = [
        (
            "writes whose values differ at the same place, per register (A -> B):",
            [(p, wd.count, [f"{va:#x} -> {vb:#x}" for va, vb in wd.samples]) for p, wd in res.writes.items()],
            res.writes_elsewhere[0],
        )
    ]
    for side, name in enumerate("AB"):
        sections.append(
            (
                f"writes only in {name}, per register:",
                [(p, wl.count, [f"{v:#x}" for v in wl.samples]) for p, wl in res.writes_only[side].items()],
                res.writes_elsewhere[1 + side],
            )
        )
    for title, rows, elsewhere in sections:
        if not rows:
            continue
        lines.append(title)
        width = max(len(f"{_where(w)}/{size}") for (w, size), _, _ in rows)
        for (where, size), count, shown in rows:
            more = f" (+{count - len(shown)} more)" if count > len(shown) else ""
            lines.append(f"  {f'{_where(where)}/{size}':<{width}}  {', '.join(shown)}{more}")
        if elsewhere:
            lines.append(f"  ... and {_plural(elsewhere, 'write', 'writes')} at other registers or addresses")
    return lines


def lost_notes(res: DiffResult, names: Iterable[str]) -> list[str]:
    """Warnings for logs that lost events (their missing accesses would show as differences)."""
    return [
        f"{name} lost {stats.lost} events: accesses missing from it may show as differences"
        for name, stats in zip(names, (res.a, res.b), strict=True)
        if stats.lost
    ]
