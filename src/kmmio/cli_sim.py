"""``kmmio sim`` and ``kmmio replay``: a program against device models, or against a
recorded trace.

Exit statuses: the program's own when it ran to its end; 1 when a model failed on an
access, the program did what no model can answer, or (replay) it diverged from the
recording: one line saying what and where, the program killed; 2 for bad usage (a model
that cannot be loaded, a log that cannot be read); 3 when kmmio itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from typing import Any

from kmmio.errors import ServedAccessError, TraceFormatError, UsageError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write the log to FILE ('-' for standard output; default: none)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on standard error")
    p.add_argument("--verbose", action="store_true", help="show the model's traceback when it fails")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=None,
                   help="send the program SIGTERM after SECONDS")  # fmt: skip
    p.add_argument("program", nargs="*", help="-- PROGRAM [ARG ...]")


def add_sim_parsers(sub: Any) -> None:
    sim = sub.add_parser(
        "sim",
        help="run a program with Python device models answering its device accesses",
        description="Run PROGRAM with each --device PATH standing for a device whose model (a Python "
        "object with size, read(offset, width) and write(offset, width, value)) answers every access "
        "the program makes to it. Needs root (a private mount namespace puts the device at PATH).",
    )
    sim.add_argument("--device", metavar="PATH=MODEL", action="append", required=True, dest="devices",
                     help="PATH the program opens (need not exist); MODEL: FILE.py:NAME or module:NAME, "
                     "NAME a class or a function returning the model (repeatable)")  # fmt: skip
    _common(sim)
    rep = sub.add_parser(
        "replay",
        help="run a program with a recorded trace as its device: reads answered, writes checked",
        description="Run PROGRAM with the devices LOG recorded: each read answered with the recorded "
        "value, each write checked against the recorded one; the first divergence stops the program "
        "(exit 1). A poll loop may read more or fewer times than recorded.",
    )
    rep.add_argument("log", help="the recorded mmiotrace log")
    rep.add_argument("--device", metavar="PATH", action="append", default=None, dest="devices",
                     help="the path the program opens for the log's N-th device (repeatable; default: the "
                     "paths the log's MARK map lines name)")  # fmt: skip
    _common(rep)


def _program(args: argparse.Namespace) -> list[str]:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise UsageError(f"no program given: kmmio {args.command} ... -- PROGRAM [ARG ...]")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout takes a positive number of seconds")
    return program


def run_sim(args: argparse.Namespace) -> int:
    from kmmio.sim.load import parse_device

    program = _program(args)
    devices = dict(parse_device(d) for d in args.devices)
    if len(devices) != len(args.devices):
        raise UsageError("a --device PATH is given twice")
    return _run(args, program, devices, None)


def run_replay(args: argparse.Namespace) -> int:
    from kmmio.sim.replay import Replay

    program = _program(args)
    try:
        replay = Replay(args.log, args.devices)
    except OSError as exc:
        raise UsageError(f"cannot read {args.log}: {exc.strerror}") from None
    except TraceFormatError as exc:
        raise UsageError(f"{args.log}: {exc}") from None
    devices = {path: replay.device(path) for path in replay.devices}
    status = _run(args, program, devices, replay)
    end = replay.finish()
    if status == 0 and not args.quiet and end.remaining:
        print(f"kmmio: {end.note}", file=sys.stderr)
    return status


def _run(args: argparse.Namespace, program: list[str], devices: dict[str, Any], replay: Any) -> int:
    from kmmio.cli_trace import open_output
    from kmmio.sim.runner import run

    with contextlib.ExitStack() as stack:
        # `trace`'s -o; but no -o keeps no log (standard error is the program's and kmmio's).
        log, owned = open_output(os.devnull if args.output is None else args.output)
        if owned:
            stack.callback(log.close)
        try:
            result = run(program, devices, log=log, timeout=args.timeout)
        except ServedAccessError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if args.verbose and cause is not exc:
                traceback.print_exception(cause, file=sys.stderr)
            print(f"kmmio: {exc}", file=sys.stderr)
            return 1
    if not args.quiet:
        reads = sum(1 for a in result.accesses if a.kind.value == "R")
        print(
            f"kmmio: {len(result.accesses)} accesses answered ({reads} reads, "
            f"{len(result.accesses) - reads} writes); exit status {result.status}",
            file=sys.stderr,
        )
    return result.status
