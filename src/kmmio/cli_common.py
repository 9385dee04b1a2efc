"""What the log-reading subcommands share: the ``--map`` option, counts, opening a log,
loading maps with their errors as usage errors, and a quiet exit on a closed pipe."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import IO, TYPE_CHECKING, Any

from kmmio.errors import UsageError

if TYPE_CHECKING:
    from kmmio.maps.model import RegisterMap

MAP_HELP = "a register map (SystemRDL, IP-XACT or CMSIS-SVD; the 'maps' extra)"


def add_map_option(parser: Any, purpose: str, required: bool = False) -> None:
    """``--map FILE[@BASE]`` (also ``--regs``), repeatable, into ``args.maps``."""
    parser.add_argument(
        "--map",
        "--regs",
        metavar="FILE[@BASE]",
        action="append",
        required=required,
        default=None if required else [],
        dest="maps",
        help=f"{MAP_HELP}{purpose}; @BASE (e.g. @0xf7c00000) is added to its addresses (repeatable)",
    )


def load_regmap(specs: list[str]) -> RegisterMap:
    """The maps ``specs`` name, one; a map that cannot be had is a usage error (one line)."""
    from kmmio.maps import MapError, load_maps

    try:
        return load_maps(specs)
    except MapError as exc:
        raise UsageError(str(exc)) from None


def count(text: str) -> int:
    """An argparse type: a number, 0 or more (``0x`` hex too)."""
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return n


def positive(text: str) -> int:
    """An argparse type: a number, 1 or more."""
    n = count(text)
    if n == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def open_log(path: str, stack: contextlib.ExitStack) -> IO[bytes]:
    """A log to read as bytes (``-``: standard input); one that cannot be read is a usage
    error."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(open(path, "rb"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def quiet_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush of what
    is left in its buffer does not fail again on a closed pipe (``kmmio ... | head``)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
