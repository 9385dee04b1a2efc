"""One status line on standard error, redrawn a few times a second, cleared at the end.

Shown only when the stream is a terminal (and not asked to be quiet), like ``pv`` or
``rsync --info=progress2``: a log piped to another program, or standard error sent to a
file, gets no control characters.  Callers tell it what happened as often as they like;
it looks at the clock at most once per ``every`` calls and draws at most every
``interval`` seconds, so a hot loop can call :meth:`Progress.update` cheaply.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO


def human(n: float) -> str:
    """``n`` with a k/M/G suffix past a thousand: ``1.23M``."""
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}G"  # pragma: no cover - the loop always returns


def wanted(stream: TextIO, quiet: bool = False) -> bool:
    """Whether a progress line belongs on ``stream``: a terminal, not quiet, and not a
    ``TERM=dumb`` one."""
    if quiet or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A status line whose text ``render(elapsed_seconds)`` gives.

    ``enabled=None`` asks :func:`wanted`.  Use as a context manager, or call :meth:`close`:
    the line is erased, so what is printed next starts on a clean line.
    """

    def __init__(
        self,
        render: Callable[[float], str],
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        enabled: bool | None = None,
        interval: float = 0.25,
        every: int = 1,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = wanted(self.stream, quiet) if enabled is None else enabled
        self.render = render
        self.interval = interval
        self.every = max(1, every)
        self.start = time.monotonic()
        self._next = self.start + interval
        self._calls = 0
        self._shown = False
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def update(self) -> None:
        """Redraw if ``interval`` has passed since the last drawing."""
        if not self.enabled:
            return
        self._calls += 1
        if self._calls % self.every:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self.draw(now)

    def draw(self, now: float | None = None) -> None:
        """Redraw now."""
        with self._lock:
            if not self.enabled:
                return
            elapsed = (time.monotonic() if now is None else now) - self.start
            text = self.render(elapsed)
            width = _columns(self.stream)
            if width and len(text) >= width:
                text = text[: width - 1]
            try:
                self.stream.write("\r\x1b[K" + text)
                self.stream.flush()
                self._shown = True
            except (OSError, ValueError):
                self.enabled = False

    def in_background(self) -> Progress:
        """Redraw every ``interval`` from a thread of its own, until :meth:`close`: for a
        loop that blocks (a tracer waiting for its program) and cannot call :meth:`update`.
        ``render`` then runs in that thread: it may only read what it shows."""
        if self.enabled and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="kmmio-progress", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()

    def close(self) -> None:
        """Stop redrawing and erase the line (once)."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        with self._lock:
            if self._shown:
                try:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            self._shown = False
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class FileProgress(Progress):
    """Progress through a log being read: ``NAME: 41% 4.1M lines 2.0M lines/s``.

    The reader calls :meth:`advance` with the bytes and lines it consumed (per chunk);
    ``total`` is the file's size, or ``None`` for a pipe.
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        enabled: bool | None = None,
    ) -> None:
        super().__init__(self._text, stream, quiet=quiet, enabled=enabled)
        self.name = name
        self.total = total
        self.bytes = 0
        self.lines = 0

    def advance(self, nbytes: int, nlines: int) -> None:
        self.bytes += nbytes
        self.lines += nlines
        self.update()

    def _text(self, elapsed: float) -> str:
        rate = self.lines / elapsed if elapsed > 0 else 0.0
        share = f" {100 * self.bytes / self.total:.0f}%" if self.total else ""
        return f"{self.name}:{share} {human(self.lines)} lines, {human(rate)} lines/s"


def file_size(path: str) -> int | None:
    """The size of a regular file, ``None`` for anything else (a pipe, standard input)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
