"""``kmmio export``: a log as a Perfetto trace, a VCD or a Parquet table.

``kmmio export LOG --format perfetto|vcd|parquet -o OUT [--map FILE[@BASE] ...] [-q]``
(``--format`` may be left out when OUT ends in ``.pftrace``/``.perfetto-trace``,
``.vcd`` or ``.parquet``).  The log streams through in bounded memory; a progress line
is drawn on a terminal (none with ``-q``).  OUT is written beside itself and renamed into
place at the end, so a malformed log leaves nothing half-written.  VCD reads the log
twice (its variables are declared before any value), so its LOG must be a file, not
``-``.  A missing log, map or library, a malformed line or a bad option is one line on
standard error and exit 2 (a :class:`~kmmio.errors.UsageError`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Any

from kmmio.cli_common import add_map_option, load_regmap
from kmmio.errors import TraceFormatError, UsageError

FORMATS = ("perfetto", "vcd", "parquet")
#: Output extensions that tell the format when --format is left out.
EXTENSIONS = {".pftrace": "perfetto", ".perfetto-trace": "perfetto", ".vcd": "vcd", ".parquet": "parquet"}


def add_export_parser(sub: Any) -> None:
    """The ``export`` subcommand, on ``kmmio``'s subparsers."""
    ex = sub.add_parser(
        "export",
        help="write a log as a Perfetto trace, a VCD (GTKWave, Surfer) or a Parquet table",
        description="Export an mmiotrace log: perfetto (open in ui.perfetto.dev), vcd (GTKWave, Surfer) or "
        "parquet (pyarrow, polars, DuckDB); needs the 'export' extra (pip install 'kmmio[export]').",
    )
    ex.add_argument("log", help="the log ('-' for standard input; not for vcd, which reads it twice)")
    ex.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        default=None,
        help="the output format (default: from OUT's extension: .pftrace, .vcd, .parquet)",
    )
    ex.add_argument("-o", "--output", metavar="OUT", required=True, help="the file to write")
    add_map_option(ex, ": registers are named instead of addresses")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")


def output_format(fmt: str | None, output: str) -> str:
    """``--format``, or the format ``output``'s extension names."""
    if fmt is not None:
        return fmt
    lower = output.lower()
    for ext, name in EXTENSIONS.items():
        if lower.endswith(ext):
            return name
    raise UsageError(f"--format is needed ({', '.join(FORMATS)}): {output!r} does not say which")


def namer_for(specs: list[str]) -> Any:
    """A :class:`~kmmio.tools.export.names.Namer` for ``--map`` specs (addresses without)."""
    from kmmio.tools.export.names import Namer

    if not specs:
        return Namer(None)
    return Namer(load_regmap(specs))


@contextlib.contextmanager
def log_errors(path: str) -> Iterator[None]:
    """A malformed line as a usage error naming the log."""
    from kmmio.tools.export.source import log_name

    try:
        yield
    except TraceFormatError as exc:
        raise UsageError(f"{log_name(path)}: {exc}") from None


def run_export(args: argparse.Namespace) -> int:
    """Export ``args.log`` to ``args.output``."""
    fmt = output_format(args.format, args.output)
    from kmmio.tools.extras import need

    # VCD is text kmmio writes itself, its first pass counted with numpy.
    need({"perfetto": "perfetto", "vcd": "numpy", "parquet": "pyarrow"}[fmt], f"export --format {fmt}")
    from kmmio.tools.export.source import binary_output, open_log, text_output

    namer = namer_for(args.maps)
    what = f"export --format {fmt}"
    if fmt == "vcd":
        from kmmio.tools.export.to_vcd import export_vcd

        def open_pass(n: int) -> contextlib.AbstractContextManager[tuple[IO[bytes], Any]]:
            label = f"{args.log} (pass {n} of 2)"
            return open_log(args.log, quiet=args.quiet, reread=what, label=label)

        with open_log(args.log, reread=what, quiet=True):  # refuse '-' before creating OUT
            pass
        with log_errors(args.log), text_output(args.output) as out:
            nvars, changes = export_vcd(open_pass, out, namer)
        summary = f"{nvars:,} variables, {changes:,} value changes"
    else:
        with (
            open_log(args.log, quiet=args.quiet) as (stream, progress),
            log_errors(args.log),
            binary_output(args.output) as sink,
        ):
            if fmt == "parquet":
                from kmmio.tools.export.to_parquet import export_parquet

                summary = f"{export_parquet(stream, sink, namer, progress):,} rows"
            else:
                from kmmio.tools.export.to_perfetto import export_perfetto

                exp = export_perfetto(stream, sink, namer, progress)
                summary = (
                    f"{exp.events - exp.counter_values:,} instants in {len(exp.threads):,} threads, "
                    f"{exp.counter_values:,} values in {len(exp.counters):,} counters"
                )
    if not args.quiet:
        print(f"kmmio: {args.output}: {summary} ({fmt})", file=sys.stderr)
    return 0
