"""``kmmio diff``'s alignment: two token streams walked side by side, resynchronised after
each mismatch within a bounded window.

Tokens are aligned on their keys, *(kind, where, width)*, without the written value
(:mod:`kmmio.tools.diff_tokens`): a write at the same place on both sides is paired
whatever its value, so a value that differs every iteration of a loop does not stop the
logs from being in step.  Two paired writes whose values differ are a *substitution*.

Equal heads are matched and dropped (``on_match``; the caller compares the values).
Where the heads' keys agree but their values do not, the write may be a substitution, or
a write one side has and the other not (``x=1, x=2, x=3`` against ``x=2, x=3``): a short
look ahead (:data:`VALUE_LOOKAHEAD` tokens) on the *full* keys, values included, for a
point where both agree again (:func:`resync`) tells; there, the stretches before the point
are diffed on keys (a pair is a substitution, the rest insertions and deletions), and
without a point the heads are paired: a substitution.

At a mismatch of keys, :func:`resync` looks ahead on each side for the nearest point where
the streams agree again: the smallest ``i + j`` (then the most even split, then the
smallest ``i``) such that A's tokens from ``i`` and B's from ``j`` agree on ``run`` keys in
a row (or on all that is left, when both end sooner).  It looks 16 tokens ahead first,
then 256, then ``window`` (a point found within ``n`` with ``i + j <= n`` is the nearest
of all, so the answer is the same, only cheaper).  A's first ``i`` and B's first ``j``
tokens differ; a diff of those two stretches (``difflib``'s, on keys) tells the
insertions and deletions apart from what still agrees between them (pairs, maybe
substitutions), and the walk goes on from the point.

When no point is within the window, the window's tokens on both sides are taken as part
of one divergence, which goes on until the streams agree again: a stretch longer than the
window found in one log only is shown with up to a window of the other's tokens beside
it.

Memory.  A side's queue grows only while the other side's tokens are late: the other log
has not reached this thread yet (an *unpaired* thread: the other program may have no such
thread at all) or is busy in its other threads (a different interleaving).  Tokens are
added through :meth:`Aligner.push`, which bounds each queue: when it reaches ``unpaired``
tokens while the other side has never had one, or ``backlog`` tokens otherwise, the whole
queue is declared a divergence (only on that side) at once and streamed out.  So memory
is bounded by those caps per pair of threads, whatever the logs; :attr:`Aligner.peak`
counts the longest a queue has been.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice

from kmmio.tools.diff_tokens import Key, Token

#: What a stream's keys end with once it has ended: a key no token has.
EOF: Key = ("EOF", 0, 0, None)

#: Default lookahead (tokens on each side) when resynchronising.
WINDOW = 10_000
#: Lookaheads tried before the whole window, nearest first.
LEVELS = (16, 256)
#: The largest i * j whose stretches are diffed (difflib's cost grows with it).
REFINE = 1 << 20
#: Tokens in a row that must agree to call the streams in step again.
RUN = 4
#: Tokens looked ahead, on full keys (values included), when two paired writes differ.
VALUE_LOOKAHEAD = 16
#: Default cap of a queue whose partner thread has had tokens (see the module's docstring).
BACKLOG = 100_000


def resync(
    ka: Sequence[Key], kb: Sequence[Key], window: int = WINDOW, run: int = RUN
) -> tuple[int, int] | None:
    """Where two key sequences agree again: ``(i, j)`` with ``ka[i:i + run] ==
    kb[j:j + run]``, ``i, j <= window``, ``i + j`` smallest (ties: ``|i - j|`` smallest,
    then ``i``), or ``None``.  A sequence that ends with :data:`EOF` has ended: a shorter
    stretch up to its end agrees only with the same stretch up to the other's end.
    ``ka[0] != kb[0]``, or ``(0, 0)`` would be the answer."""
    firsts: dict[tuple[Key, ...], int] = {}
    for j in range(min(window, len(kb) - 1) + 1):
        firsts.setdefault(tuple(kb[j : j + run]), j)
    best: tuple[int, int, int, int] | None = None
    for i in range(min(window, len(ka) - 1) + 1):
        if best is not None and i > best[0]:
            break
        j_found = firsts.get(tuple(ka[i : i + run]))
        if j_found is None:
            continue
        cand = (i + j_found, abs(i - j_found), i, j_found)
        if best is None or cand < best:
            best = cand
    return None if best is None else (best[2], best[3])


Match = Callable[[Token, Token], None]
Diverge = Callable[[list[Token], list[Token]], None]


class Aligner:
    """One pair of threads: tokens are added with :meth:`push` as they are read;
    :meth:`advance` walks them as far as it can, calling ``on_match(ta, tb)`` for each
    pair of tokens with equal keys (written values may differ: a substitution) and
    ``on_diverge(only_a, only_b)`` for each stretch found on one side only (consecutive
    calls with no pair between them are parts of one divergence).

    ``unpaired`` and ``backlog`` cap each queue (see the module's docstring); both must
    be more than ``window + run`` plus the tokens read from one log before the other's
    are (or a queue would be cut while it waits for a lookahead)."""

    def __init__(
        self,
        on_match: Match,
        on_diverge: Diverge,
        window: int = WINDOW,
        run: int = RUN,
        *,
        unpaired: int | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        self.a: deque[Token] = deque()
        self.b: deque[Token] = deque()
        self.on_match = on_match
        self.on_diverge = on_diverge
        self.window = window
        self.run = run
        self.unpaired = 2 * (window + run) if unpaired is None else unpaired
        self.backlog = max(backlog, self.unpaired)
        #: Whether each side has had a token.
        self.seen = [False, False]
        #: Each side's cap: ``backlog`` once the other side has had a token.
        self._caps = [self.unpaired, self.unpaired]
        #: The longest either queue has been.
        self.peak = 0

    def push(self, side: int, tok: Token) -> None:
        """Add a token to side ``side``'s queue (0: A, 1: B); a queue that reaches its cap
        is declared a divergence and emptied."""
        q = self.b if side else self.a
        q.append(tok)
        if not self.seen[side]:
            self.seen[side] = True
            self._caps[1 - side] = self.backlog  # the other side's partner is here
        n = len(q)
        if n > self.peak:
            self.peak = n
        if n >= self._caps[side]:
            if side:
                self._diverge(0, n)
            else:
                self._diverge(n, 0)

    def advance(self, a_done: bool, b_done: bool) -> None:
        """Walk as far as the tokens read so far allow; ``x_done``: side x has no more.
        With both done, everything is walked."""
        a, b = self.a, self.b
        on_match = self.on_match
        while True:
            while a and b and a[0].key == b[0].key:
                if a[0].value != b[0].value:
                    # A substitution, or a write only one side has: look on full keys.
                    n = VALUE_LOOKAHEAD
                    if (len(a) < n + self.run and not a_done) or (len(b) < n + self.run and not b_done):
                        return
                    near = resync(
                        _keys(a, n + self.run, a_done, True),
                        _keys(b, n + self.run, b_done, True),
                        n,
                        self.run,
                    )
                    if near is not None:
                        self._refine(*near)
                        continue
                on_match(a.popleft(), b.popleft())
            if (not a and not a_done) or (not b and not b_done) or (not a and not b):
                return
            if not a or not b:  # one side has ended: the rest of the other differs
                need = self.window + self.run
                if (not a and len(b) < need and not b_done) or (not b and len(a) < need and not a_done):
                    return
                self._diverge(len(a), len(b))
                continue
            # Near points first (cheap), then farther: a point found within a lookahead of
            # ``n`` with i + j <= n is the nearest of all.
            point: tuple[int, int] | None = None
            for n in (*(m for m in LEVELS if m < self.window), self.window):
                if (len(a) < n + self.run and not a_done) or (len(b) < n + self.run and not b_done):
                    return
                ka, kb = _keys(a, n + self.run, a_done), _keys(b, n + self.run, b_done)
                point = resync(ka, kb, n, self.run)
                if point is not None and (sum(point) <= n or n == self.window):
                    break
                point = None
            if point is None:  # no agreement within the window: the divergence goes on
                self._diverge(min(self.window, len(a)), min(self.window, len(b)))
                continue
            self._refine(*point)

    def _refine(self, i: int, j: int) -> None:
        """A's first ``i`` tokens against B's first ``j``: within them, a diff (difflib's,
        on keys) finds the pairs (maybe substitutions); the rest differs."""
        a, b = self.a, self.b
        if not i or not j or i * j > REFINE:
            self._diverge(i, j)
            return
        ka, kb = _keys(a, i, False), _keys(b, j, False)
        matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
        for op, a0, a1, b0, b1 in matcher.get_opcodes():
            if op == "equal":
                for _ in range(a1 - a0):
                    self.on_match(a.popleft(), b.popleft())
            else:
                self._diverge(a1 - a0, b1 - b0)

    def _diverge(self, i: int, j: int) -> None:
        a, b = self.a, self.b
        self.on_diverge([a.popleft() for _ in range(i)], [b.popleft() for _ in range(j)])


def _keys(dq: deque[Token], n: int, done: bool, full: bool = False) -> list[Key]:
    """The keys (``full``: values included) of the first ``n`` tokens of a deque, and
    :data:`EOF` when that is all there will be."""
    keys = [tok.full for tok in islice(dq, n)] if full else [tok.key for tok in islice(dq, n)]
    if done and len(dq) <= n:
        keys.append(EOF)
    return keys
