"""``kmmio``: the command line.  ``main`` returns the exit status and never exits itself.

Exit statuses: the traced program's own (128 + N when signal N killed it); 0 for ``-h``
and ``--version``; 2 for bad usage (no arguments at all: the help, on standard error), a
program that cannot be run or a log ``check`` refuses; 3 when the tracer itself failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from kmmio import __version__
from kmmio.errors import KmmioError, UsageError

EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _ParserExit(Exception):
    """``-h`` or ``--version`` was answered: ``main`` returns ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


def _pattern(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("PATTERN must not be empty (it would match every mapping)")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kmmio", description="Trace what a program does to memory-mapped regions.")
    parser.add_argument("--version", action="version", version=f"kmmio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tr = sub.add_parser("trace", help="run a program and log its accesses to matching mappings")
    tr.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the log to FILE ('-' for standard output; default standard error)",
    )
    tr.add_argument(
        "-m",
        "--map",
        metavar="PATTERN",
        action="append",
        required=True,
        dest="patterns",
        type=_pattern,
        help="trace every mapping whose /proc/PID/maps path contains PATTERN (repeatable)",
    )
    tr.add_argument(
        "--mode",
        choices=["auto", "emulate", "step"],
        default="auto",
        help="auto/emulate: the tracer performs each access it can reproduce exactly, pages never "
        "open; step: the kmmio way for every access (open the page, single-step, re-arm)",
    )
    tr.add_argument(
        "--backend",
        choices=["auto", "agent", "ptrace"],
        default="auto",
        help="agent: an agent inside the program performs each access in the faulting thread "
        "(LD_PRELOAD; a dynamically linked program started by kmmio); ptrace: the tracer does, "
        "through ptrace; auto (default): the agent where it can be loaded, else ptrace",
    )
    tr.add_argument(
        "-p",
        "--pid",
        metavar="PID",
        type=int,
        action="append",
        dest="pids",
        default=[],
        help="join the running program PID instead of starting one (repeatable); "
        "Ctrl-C, SIGTERM, SIGHUP or --duration detach and leave it running",
    )
    tr.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        default=None,
        help="end the trace after SECONDS: an attached program (-p), or any on the agent backend, is let "
        "go (pages restored); one spawned on the ptrace backend is sent SIGTERM and traced until it exits",
    )
    tr.add_argument(
        "--regs",
        metavar="FILE[@BASE]",
        action="append",
        default=[],
        help="a register map (SystemRDL, IP-XACT or CMSIS-SVD; the 'maps' extra): every access is "
        "also shown on standard error with its register and fields, as 'kmmio decode' shows it; "
        "needs -o for the log (repeatable)",
    )
    tr.add_argument(
        "--hook",
        metavar="FILE.py",
        default=None,
        help="fault injection: FILE.py's on_read(access) may replace a read's value, its "
        "on_write(access) may drop a write (return False); see kmmio.sim.hooks",
    )
    tr.add_argument("-q", "--quiet", action="store_true", help="no summary on standard error")
    tr.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARG ...]")
    demo = sub.add_parser("demo", help="trace a bundled example driver on a simulated device")
    demo.add_argument("-o", "--output", metavar="FILE", default=None, help="also write the log to FILE")
    demo.add_argument(
        "--sim",
        action="store_true",
        help="the device as a model: kmmio sim answers every access (needs root or user namespaces)",
    )
    rd = sub.add_parser("check", help="parse an mmiotrace log and count its records")
    rd.add_argument("file", help="log file ('-' for standard input)")
    from kmmio.cli_decode import add_decode_parser

    add_decode_parser(sub)
    from kmmio.cli_summary import add_summary_parser

    add_summary_parser(sub)
    from kmmio.cli_diff import add_diff_parser

    add_diff_parser(sub)
    from kmmio.cli_export import add_export_parser

    add_export_parser(sub)
    from kmmio.cli_plot import add_plot_parser

    add_plot_parser(sub)
    from kmmio.cli_sim import add_sim_parsers

    add_sim_parsers(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, args_list: list[str]) -> argparse.Namespace:
    """Parse, the program's words after the first ``--`` kept whole: options may follow
    positional arguments (``kmmio replay LOG -q -- PROGRAM``) and the program's own
    options are never taken for kmmio's."""
    if "--" in args_list:
        cut = args_list.index("--")
        args = parser.parse_args(args_list[:cut])
        if hasattr(args, "program"):
            if args.program:
                raise UsageError(f"unexpected {args.program[0]!r} before --")
            args.program = args_list[cut + 1 :]
            return args
    return parser.parse_args(args_list)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        if not args_list:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        args = _parse(parser, args_list)
        if args.command == "trace":
            from kmmio.cli_trace import run_trace

            return run_trace(args)
        if args.command == "demo":
            from kmmio.demo import run_demo

            return run_demo(args.output, args.sim)
        if args.command == "check":
            from kmmio.cli_trace import run_check

            return run_check(args.file)
        if args.command == "decode":
            from kmmio.cli_decode import run_decode

            return run_decode(args)
        if args.command == "summary":
            from kmmio.cli_summary import run_summary

            return run_summary(args)
        if args.command == "diff":
            from kmmio.cli_diff import run_diff

            return run_diff(args)
        if args.command == "export":
            from kmmio.cli_export import run_export

            return run_export(args)
        if args.command == "plot":
            from kmmio.cli_plot import run_plot

            return run_plot(args)
        if args.command in ("sim", "replay"):
            from kmmio.cli_sim import run_replay, run_sim

            return run_sim(args) if args.command == "sim" else run_replay(args)
    except _ParserExit as done:
        return done.status
    except UsageError as exc:
        print(f"kmmio: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KmmioError as exc:
        print(f"kmmio: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # a bug in kmmio: the traced programs were restored and released
        if os.environ.get("KMMIO_DEBUG"):
            raise
        print(
            f"kmmio: internal error: {type(exc).__name__}: {exc} (KMMIO_DEBUG=1 shows where)", file=sys.stderr
        )
        return EXIT_INTERNAL
    return EXIT_USAGE
