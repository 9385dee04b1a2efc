"""A pseudo-terminal's output, read whole (for the progress-line tests)."""

from __future__ import annotations

import os


def read_all(master: int) -> str:
    """Everything written to the terminal whose other side is closed: read until EIO (the
    kernel hands a pty's output over in pieces; one read may return only part of it)."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: drained, and nobody has the other side open
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks).decode()
