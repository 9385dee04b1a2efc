"""``kmmio plot``: a log's accesses over time per register, and the values of some.

``kmmio plot LOG -o FILE.png|FILE.svg [--map FILE[@BASE] ...] [--registers R1,R2]
[--size WxH] [--dpi N] [-q]``: the format comes from the extension (anything else is
refused); ``--registers`` takes register paths or names (with ``--map``) and ``0x``
addresses.  The figure is ``--size`` inches (default 12 wide, high enough for what it
shows) at ``--dpi`` dots per inch: a PNG is exactly ``W * dpi`` by ``H * dpi`` pixels.
See :mod:`kmmio.tools.export.plot` for what is drawn.  Bad input is one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kmmio.cli_common import add_map_option
from kmmio.errors import UsageError


def add_plot_parser(sub: Any) -> None:
    """The ``plot`` subcommand, on ``kmmio``'s subparsers."""
    pl = sub.add_parser(
        "plot",
        help="draw a log's accesses over time per register (and some registers' values) to PNG or SVG",
        description="Plot an mmiotrace log: a raster of reads and writes per register or address over "
        "time, and the value over time of the registers asked for; needs the 'plot' extra "
        "(pip install 'kmmio[plot]').",
    )
    pl.add_argument("log", help="the log ('-' for standard input)")
    pl.add_argument("-o", "--output", metavar="FILE", required=True, help="the image to write: .png or .svg")
    add_map_option(pl, " to name registers")
    pl.add_argument(
        "--registers",
        metavar="R1,R2",
        default=None,
        help="plot these registers' values over time: paths or names (with --map) or 0x addresses",
    )
    pl.add_argument("--size", metavar="WxH", default=None, help="figure size in inches (e.g. 12x8)")
    pl.add_argument("--dpi", metavar="N", type=float, default=100.0, help="dots per inch (default 100)")
    pl.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")


def parse_size(text: str) -> tuple[float, float]:
    """``12x8`` to ``(12.0, 8.0)``; anything else (or a size out of 0.5..200) refused."""
    w, x, h = text.lower().partition("x")
    try:
        size = (float(w), float(h)) if x else None
    except ValueError:
        size = None
    if size is None or not all(0.5 <= v <= 200 for v in size):
        raise UsageError(f"--size wants WIDTHxHEIGHT in inches, like 12x8, not {text!r}")
    return size


def run_plot(args: argparse.Namespace) -> int:
    """Plot ``args.log`` to ``args.output``."""
    from kmmio.tools.export.plot import FORMATS

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"plot writes .png or .svg files (from -o's extension), not {args.output!r}")
    size = parse_size(args.size) if args.size is not None else None
    if not 10 <= args.dpi <= 1000:
        raise UsageError(f"--dpi wants 10 to 1000, not {args.dpi:g}")
    from kmmio.tools.extras import need

    need("matplotlib", "plot")
    need("numpy", "plot")
    from kmmio.cli_export import log_errors, namer_for
    from kmmio.tools.export.names import parse_selection
    from kmmio.tools.export.plot import Plot
    from kmmio.tools.export.source import binary_output, log_name, open_log

    namer = namer_for(args.maps)
    selected = []
    for spec in parse_selection(args.registers) if args.registers is not None else []:
        var = namer.find(spec)
        if var not in selected:
            selected.append(var)
    plot = Plot(namer, selected)
    with open_log(args.log, quiet=args.quiet) as (stream, progress), log_errors(args.log):
        plot.read(stream, progress)
    title = os.path.basename(args.log) if args.log != "-" else log_name(args.log)
    with binary_output(args.output) as out:
        plot.draw(out, ext[1:], size or plot.default_size(), args.dpi, title)
    if not args.quiet:
        print(f"kmmio: {args.output}: {plot.raster.accesses:,} accesses", file=sys.stderr)
    return 0
