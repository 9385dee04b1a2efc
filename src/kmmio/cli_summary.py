"""``kmmio summary``: a table per register (or address) and the longest polling runs.

``kmmio summary LOG [--map FILE[@BASE] ...] [--json] [--runs N] [-q]``: see
:mod:`kmmio.tools.summary` for what is counted and :mod:`kmmio.tools.summary_format`
for the text and JSON forms.  The log is streamed and the rows are streamed out (bounded
memory, whatever the log's length or its number of addresses: the compiled table spills
to a temporary file, in ``$TMPDIR``, when it is full), with a progress line on a
terminal's standard error unless ``-q``.  Nothing is printed before the whole log is read:
a missing log or map, a malformed map or log line, a map whose library (the ``maps``
extra) is missing, a temporary file that cannot be written is one line on standard error
and exit 2 (a :class:`~kmmio.errors.UsageError` for ``kmmio.cli.main``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable
from typing import Any

from kmmio.cli_common import add_map_option, count, load_regmap, open_log, quiet_stdout
from kmmio.errors import TraceFormatError, UsageError


def add_summary_parser(sub: Any) -> None:
    """The ``summary`` subcommand, on ``kmmio``'s subparsers."""
    from kmmio.tools.summary import MIN_RUN, TOP_RUNS

    p = sub.add_parser(
        "summary",
        help="count a log's accesses per register or address, polling loops folded",
        description="A table per register (with --map) or address: reads, writes, widths, distinct "
        "values written, first and last value and time, threads; most accessed first.  Then the "
        f"longest polling runs (a thread reading one register, or address, at one width {MIN_RUN} "
        "times or more in a row).",
    )
    add_map_option(p, " naming the registers")
    p.add_argument("--json", action="store_true", help="one JSON object per line (rows, runs, totals)")
    p.add_argument(
        "--runs",
        metavar="N",
        type=count,
        default=TOP_RUNS,
        help=f"show the N longest polling runs (default {TOP_RUNS}; 0: none)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument("log", help="the log ('-' for standard input)")


def run_summary(args: argparse.Namespace) -> int:
    """Summarize ``args.log``, writing to standard output."""
    from kmmio.tools.progress import FileProgress, file_size
    from kmmio.tools.summary import SpillError, summarize
    from kmmio.tools.summary_format import format_json, format_text

    name = "standard input" if args.log == "-" else args.log
    with contextlib.ExitStack() as stack:
        stream = open_log(args.log, stack)
        regmap = load_regmap(args.maps) if args.maps else None
        progress = FileProgress(name, None if args.log == "-" else file_size(args.log), quiet=args.quiet)
        stack.callback(progress.close)
        try:
            summary = summarize(stream, regmap, top=args.runs, progress=progress)
        except TraceFormatError as exc:
            raise UsageError(f"{name}: {exc}") from None
        except SpillError as exc:
            raise UsageError(f"{exc.filename}: {exc.strerror} (set TMPDIR elsewhere)") from None
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        progress.close()
    pieces: Iterable[bytes] = format_json(summary) if args.json else format_text(summary)
    try:
        sys.stdout.flush()
        out = getattr(sys.stdout, "buffer", None)  # bytes as they come, or text
        for piece in pieces:
            if out is not None:
                out.write(piece)
            else:
                sys.stdout.write(piece.decode())
        (out or sys.stdout).flush()
    except BrokenPipeError:  # `kmmio summary ... | head`
        quiet_stdout()
    except SpillError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror}") from None
    return 0
