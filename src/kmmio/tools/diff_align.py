"""``kmmio diff``'s alignment: two token streams walked side by side, resynchronised after
each mismatch within a bounded window.

Equal heads are matched and dropped.  At a mismatch, :func:`resync` looks ahead on each
side for the nearest point where the streams agree again: the smallest ``i + j`` (then the
most even split, then the smallest ``i``) such that A's tokens from ``i`` and B's from
``j`` agree on ``run`` tokens in a row (or on all that is left, when both end sooner).  It
looks 16 tokens ahead first, then 256, then ``window`` (a point found within ``n`` with
``i + j <= n`` is the nearest of all, so the answer is the same, only cheaper).  A's first
``i`` and B's first ``j`` tokens differ; a diff of those two stretches (``difflib``'s, on
tokens) tells the divergences apart from what still agrees between them, and the walk
goes on from the point.

When no point is within the window, the window's tokens on both sides are taken as part
of one divergence, which goes on until the streams agree again: a stretch longer than the
window found in one log only is shown with up to a window of the other's tokens beside
it.  Memory is bounded by the window (and what waits for it) on each side, whatever the
logs' lengths.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Sequence

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
Diverge = Callable[[list[Token], list[Token], bool], None]


class Aligner:
    """One pair of threads: tokens are appended to :attr:`a` and :attr:`b` as they are
    read; :meth:`advance` walks them as far as it can, calling ``on_match(ta, tb)`` for
    each pair of equal tokens and ``on_diverge(only_a, only_b, continued)`` for each
    divergence (``continued``: the same divergence as the last call, which ran past the
    window)."""

    def __init__(self, on_match: Match, on_diverge: Diverge, window: int = WINDOW, run: int = RUN) -> None:
        self.a: deque[Token] = deque()
        self.b: deque[Token] = deque()
        self.on_match = on_match
        self.on_diverge = on_diverge
        self.window = window
        self.run = run
        self._open = False  # a divergence ran past the window and has not ended

    def advance(self, a_done: bool, b_done: bool) -> None:
        """Walk as far as the tokens read so far allow; ``x_done``: side x has no more.
        With both done, everything is walked."""
        a, b = self.a, self.b
        while True:
            if a and b and a[0].key == b[0].key:
                self._open = False
                on_match = self.on_match
                while a and b and a[0].key == b[0].key:
                    on_match(a.popleft(), b.popleft())
            if (not a and not a_done) or (not b and not b_done) or (not a and not b):
                return
            if not a or not b:  # one side has ended: the rest of the other differs
                need = self.window + self.run
                if (not a and len(b) < need and not b_done) or (not b and len(a) < need and not a_done):
                    return
                self._diverge(len(a), len(b))
                self._open = True
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
                self._open = True
                continue
            i, j = point
            if not i or not j or i * j > REFINE:
                self._diverge(i, j)
                self._open = False
                continue
            # Within the stretch before the point, a diff (difflib's) finds what still agrees.
            matcher = difflib.SequenceMatcher(None, ka[:i], kb[:j], autojunk=False)
            for op, a0, a1, b0, b1 in matcher.get_opcodes():
                if op == "equal":
                    self._open = False
                    for _ in range(a1 - a0):
                        self.on_match(a.popleft(), b.popleft())
                else:
                    self._diverge(a1 - a0, b1 - b0)
            self._open = False

    def _diverge(self, i: int, j: int) -> None:
        a, b = self.a, self.b
        self.on_diverge([a.popleft() for _ in range(i)], [b.popleft() for _ in range(j)], self._open)


def _keys(dq: deque[Token], n: int, done: bool) -> list[Key]:
    """The keys of the first ``n`` tokens of a deque, and :data:`EOF` when that is all
    there will be."""
    if len(dq) <= n:
        keys = [t.key for t in dq]
        if done:
            keys.append(EOF)
        return keys
    keys = []
    for tok in dq:
        keys.append(tok.key)
        if len(keys) == n:
            break
    return keys
