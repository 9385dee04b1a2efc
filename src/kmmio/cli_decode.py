"""``kmmio decode``: every access of a log with the register it hit and its fields.

``kmmio decode --map FILE[@BASE] [--map ...] [--json] LOG``.  The log is read and the
result written line by line, so a log of any length decodes in constant memory.  A
missing log or map, a malformed map or log line, or a map whose library (the ``maps``
extra) is not installed is one line on standard error and exit 2 (a
:class:`~kmmio.errors.UsageError` for ``kmmio.cli.main``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, TextIO

from kmmio.cli_common import add_map_option, load_regmap, quiet_stdout
from kmmio.errors import TraceFormatError, UsageError


def add_decode_parser(sub: Any) -> None:
    """The ``decode`` subcommand, on ``kmmio``'s subparsers."""
    dec = sub.add_parser(
        "decode",
        help="name the register and fields of every access of a log, from register maps",
        description="Decode every R/W line of an mmiotrace log with register maps: SystemRDL (.rdl), "
        "IP-XACT (.xml) or CMSIS-SVD (.svd); needs the 'maps' extra (pip install 'kmmio[maps]').",
    )
    add_map_option(dec, "", required=True)
    dec.add_argument("--json", action="store_true", help="one JSON object per access (other lines left out)")
    dec.add_argument("log", help="the log ('-' for standard input)")


def run_decode(args: argparse.Namespace) -> int:
    """Decode ``args.log`` with ``args.maps``, writing to standard output."""
    from kmmio.maps import decode_log

    name = "standard input" if args.log == "-" else args.log
    with contextlib.ExitStack() as stack:
        if args.log == "-":
            stream: TextIO = sys.stdin
        else:
            try:
                stream = stack.enter_context(open(args.log, encoding="utf-8", errors="replace"))
            except OSError as exc:
                raise UsageError(f"cannot read {args.log}: {exc.strerror}") from None
        regmap = load_regmap(args.maps)
        try:
            decode_log(stream, regmap, sys.stdout.write, as_json=args.json)
            sys.stdout.flush()
        except TraceFormatError as exc:
            raise UsageError(f"{name}: {exc}") from None
        except BrokenPipeError:  # `kmmio decode ... | head`: the reader has seen enough
            quiet_stdout()
    return 0
