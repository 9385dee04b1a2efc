"""``kmmio diff``: what one program does differently from another to the same device.

``kmmio diff A B [--map FILE[@BASE] ...] [--context N] [--max N] [--window W] [--backlog N]
[-q]``.
Exit status as ``diff``'s: 0 when the logs do not differ (nothing printed), 1 when they
do, 2 for bad input (a missing log or map, a malformed line: one line on standard error).
The rules are in :mod:`kmmio.tools.diff`.  On a terminal, a progress line on standard
error shows how far each log has been read (none with ``-q``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from kmmio.cli_common import add_map_option, count, load_regmap, open_log, positive, quiet_stdout
from kmmio.errors import UsageError

#: Seconds between two drawings of the progress line.
PROGRESS_INTERVAL = 0.25


def add_diff_parser(sub: Any) -> None:
    """The ``diff`` subcommand, on ``kmmio``'s subparsers."""
    from kmmio.tools.diff_align import BACKLOG, WINDOW

    p = sub.add_parser(
        "diff",
        help="what one log's program does differently from another's to the same device",
        description="Align the accesses of two mmiotrace logs on (kind, register or address, width), "
        "written values compared (a different value is a substitution), polling runs folded, threads "
        "paired by first appearance; print the divergences like diff -u and, per register, the writes "
        "whose values differ and those found in one log only. Exit 0 when they do not differ, 1 when they "
        "do, 2 for bad input.",
    )
    p.add_argument("a", metavar="A", help="the first log ('-' for standard input)")
    p.add_argument("b", metavar="B", help="the second log ('-' for standard input)")
    add_map_option(p, ": align on registers and show accesses decoded")
    p.add_argument(
        "-U",
        "--context",
        metavar="N",
        type=count,
        default=3,
        help="tokens of context around each divergence (3)",
    )
    p.add_argument(
        "--max",
        metavar="N",
        type=count,
        default=10,
        dest="max_shown",
        help="print the first N divergences (10); all are counted",
    )
    p.add_argument(
        "--window",
        metavar="W",
        type=positive,
        default=WINDOW,
        help=f"tokens looked ahead on each side to find where the logs agree again ({WINDOW})",
    )
    p.add_argument(
        "--backlog",
        metavar="N",
        type=positive,
        default=BACKLOG,
        help="tokens of one thread kept while its partner in the other log is busy elsewhere; past them "
        f"they are taken as found in one log only ({BACKLOG:,}; memory: a few hundred bytes each)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")


def run_diff(args: argparse.Namespace) -> int:
    """Diff ``args.a`` against ``args.b``; the exit status (0 same, 1 different)."""
    from kmmio.maps import RegisterMap
    from kmmio.tools.diff import LogFormatError, diff_logs, lost_notes
    from kmmio.tools.progress import FileProgress, Progress, file_size

    if args.a == "-" and args.b == "-":
        raise UsageError("only one of A and B can be standard input")
    regmap: RegisterMap | None = None
    if args.maps:
        regmap = load_regmap(args.maps)
    names = (_name(args.a), _name(args.b))
    with contextlib.ExitStack() as stack:
        streams = [open_log(path, stack) for path in (args.a, args.b)]
        counters = [
            FileProgress(name, None if path == "-" else file_size(path), enabled=False)
            for name, path in zip(names, (args.a, args.b), strict=True)
        ]
        shown = stack.enter_context(
            Progress(
                lambda t: f"{counters[0].render(t)} | {counters[1].render(t)}",
                quiet=args.quiet,
                interval=PROGRESS_INTERVAL,
            )
        )
        try:
            result = diff_logs(
                streams[0],
                streams[1],
                sys.stdout.write,
                regmap=regmap,
                names=names,
                context=args.context,
                max_shown=args.max_shown,
                window=args.window,
                backlog=args.backlog,
                progress=(counters[0], counters[1]),
                tick=shown.update,
            )
            sys.stdout.flush()
        except LogFormatError as exc:
            raise UsageError(f"{names[exc.side]}: {exc}") from None
        except BrokenPipeError:  # `kmmio diff A B | head`: the reader has seen enough
            quiet_stdout()
            return 1
    for note in lost_notes(result, names):
        print(f"kmmio: warning: {note}", file=sys.stderr)
    return 0 if result.equal else 1


def _name(path: str) -> str:
    return "standard input" if path == "-" else path
