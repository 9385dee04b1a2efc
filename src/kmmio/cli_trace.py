"""``kmmio trace`` and ``kmmio check``."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TextIO

from kmmio.cli_common import load_regmap
from kmmio.devices import Roots, pci_devices
from kmmio.errors import LogWriteError, TraceFormatError, UsageError
from kmmio.ptrace.faults import TraceStats
from kmmio.ptrace.tracer import Mode, Tracer, check_attachable, resolve_program
from kmmio.sim.hooks import OnRead, OnWrite, load_hooks
from kmmio.tools.progress import Progress, human
from kmmio.trace.reader import read_records
from kmmio.trace.records import Access, Kind, Mark, Record, Version
from kmmio.trace.writer import TraceWriter

if TYPE_CHECKING:
    from kmmio.maps.model import RegisterMap
    from kmmio.mmiotrace import MmioTrace, TracedAccess


def open_output(path: str | None) -> tuple[TextIO, bool]:
    """The log stream, and whether kmmio opened it (and must close it)."""
    if path is None:
        return sys.stderr, False
    if path == "-":
        return sys.stdout, False
    try:
        return open(path, "w", encoding="ascii"), True
    except OSError as exc:
        raise UsageError(f"cannot write the log to {path}: {exc.strerror}") from None


def _finish_log(writer: TraceWriter, owned: TextIO | None, report: bool) -> None:
    """Flush (and close) the log.  A failure is reported unless an error already is: the
    first error is the one to say."""
    try:
        writer.flush()
        if owned is not None:
            owned.close()
    except LogWriteError:
        if report:
            raise
    except OSError as exc:
        if report:
            raise LogWriteError(f"cannot write the log: {exc.strerror or exc}") from None


def _live_decoding(
    args: argparse.Namespace,
) -> tuple[Callable[[TracedAccess], None] | None, RegisterMap | None]:
    """With ``--regs``: the register map, and a callback showing each access decoded on
    standard error (the log goes to ``-o``'s file or standard output)."""
    if not args.regs:
        return None, None
    if args.output is None:
        raise UsageError(
            "--regs shows decoded accesses on standard error: give -o FILE (or -o -) for the log"
        )
    from kmmio.maps.format import Decoder, text_line

    regmap = load_regmap(args.regs)
    decoder = Decoder(regmap)
    err = sys.stderr

    def show(a: TracedAccess) -> None:
        middle = decoder.middle(a.kind.value, a.phys, a.width, a.value)
        err.write(text_line(a.kind.value, a.width, a.ts, middle, a.pc, a.tid) + "\n")

    return show, regmap


def run_trace(args: argparse.Namespace) -> int:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if program and args.pids:
        raise UsageError("give either -p PID or a program to run, not both")
    if not program and not args.pids:
        raise UsageError("no program given: kmmio trace -m PATTERN -- PROGRAM [ARG ...] (or -p PID)")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration takes a positive number of seconds")
    if program:
        resolve_program(program[0])
    for pid in args.pids:
        check_attachable(pid)
    on_access, regmap = _live_decoding(args)
    hooks: tuple[OnRead | None, OnWrite | None] = (None, None)
    if args.hook is not None:
        if args.mode == "step":
            raise UsageError("--hook needs the accesses kmmio performs itself: not with --mode step")
        hooks = load_hooks(args.hook)
    stream, owned = open_output(args.output)
    # The writer's VERSION header waits for the first record or write_header(), called once
    # tracing starts: a refused spawn or attach leaves no log behind.
    roots = Roots.from_env()
    # VERSION, then one PCIDEV line per PCI device, as the kernel's log starts.
    header: list[Record] = [Version(), *pci_devices(roots)]
    writer = TraceWriter(stream, flush_every=1 if stream is sys.stderr else 256, header=header)
    backend, fallback = choose_backend(args, program)
    if backend == "agent":
        return _run_agent(args, program, writer, stream, owned)
    tracer = Tracer(
        args.patterns,
        writer.write,
        on_access,
        mode=Mode(args.mode),
        regmap=regmap,
        roots=roots,
        on_read=hooks[0],
        on_write=hooks[1],
    )
    # The status line shares standard error with nothing of kmmio's: not with the log,
    # nor with --regs's decoded accesses.
    quiet = args.quiet or stream is sys.stderr or on_access is not None

    def start() -> None:
        if program:
            tracer.spawn(program)
        for pid in args.pids:
            tracer.attach(pid)

    def ways(s: TraceStats) -> str:
        return f"{s.emulated} instructions emulated, {s.stepped} stepped; backend ptrace{fallback}"

    return _run_and_report(args, tracer, start, writer, stream, owned, quiet, ways, tracer.regions.matched)


class _Traced(Protocol):
    """What :func:`_run_and_report` needs of a backend's tracer."""

    log: MmioTrace

    @property
    def stats(self) -> TraceStats: ...

    def run(self, duration: float | None = None) -> int: ...

    def accesses_so_far(self) -> int: ...


def _run_and_report(
    args: argparse.Namespace,
    tracer: _Traced,
    start: Callable[[], object],
    writer: TraceWriter,
    stream: TextIO,
    owned: bool,
    quiet: bool,
    ways: Callable[[TraceStats], str],
    matched: set[str],
) -> int:
    """Start, trace until the end, close the log; the one-line summary (``ways``: how the
    backend performed the accesses) and the patterns that matched nothing."""
    status_line = status_progress(tracer, quiet=quiet)
    traced = False
    try:
        start()
        writer.write_header()
        status_line.in_background()
        status = tracer.run(args.duration)
        traced = True
    finally:
        status_line.close()
        _finish_log(writer, stream if owned else None, report=traced)
    if not args.quiet and stream is not sys.stderr:
        c = tracer.log.counts
        print(
            f"kmmio: {c['R'] + c['W']} accesses traced ({c['R']} reads, {c['W']} writes), "
            f"{c['LOST']} lost, {c['UNKNOWN']} unknown, "
            f"{c['MAP']} mappings traced; {ways(tracer.stats)}; exit status {status}",
            file=sys.stderr,
        )
    unmatched = [p for p in args.patterns if p not in matched]
    if unmatched and not args.quiet:
        print(f"kmmio: no mapping matched {', '.join(map(repr, unmatched))}", file=sys.stderr)
    return status


def choose_backend(args: argparse.Namespace, program: list[str]) -> tuple[str, str]:
    """``--backend``: "agent" or "ptrace", and for ``auto`` falling back to ptrace, why
    (as the summary line says it: `` (static program)``)."""
    if args.backend == "ptrace":
        return "ptrace", ""
    why = None
    if args.pids:
        why = "attached program"
    elif args.hook is not None:
        why = "--hook"
    elif args.regs:
        why = "--regs"
    else:
        from kmmio.agent import why_not
        from kmmio.launch import resolve_program

        why = why_not(resolve_program(program[0]))
    if why is None:
        return "agent", ""
    if args.backend == "agent":
        raise UsageError(f"--backend agent: not with this program ({why}); try --backend ptrace")
    return "ptrace", f" ({why})"


def _run_agent(
    args: argparse.Namespace, program: list[str], writer: TraceWriter, stream: TextIO, owned: bool
) -> int:
    """``kmmio trace`` on the agent backend."""
    from kmmio.agent.tracer import AgentTracer

    tracer = AgentTracer(args.patterns, writer.write, mode=Mode(args.mode), roots=Roots.from_env())

    def ways(s: TraceStats) -> str:
        done = f"{s.emulated} accesses performed in the program, {s.stepped} instructions relocated"
        return f"{done}; backend agent"

    quiet = args.quiet or stream is sys.stderr
    return _run_and_report(
        args, tracer, lambda: tracer.spawn(program), writer, stream, owned, quiet, ways, tracer.matched
    )


def status_progress(tracer: _Traced, quiet: bool) -> Progress:
    """``kmmio trace``'s status line on a terminal: elapsed time, accesses, their rate
    over the last second or so, lost, mappings traced; redrawn four times a second."""
    last = [0.0, 0]  # when and at what count the rate was last measured
    rate = [0.0]

    def render(elapsed: float) -> str:
        n = tracer.accesses_so_far()
        c = tracer.log.counts
        if elapsed - last[0] >= 1.0 or not last[0]:
            span = elapsed - last[0]
            rate[0] = (n - last[1]) / span if span > 0 else 0.0
            last[0], last[1] = elapsed, n
        return (
            f"kmmio: {elapsed:.1f} s, {n:,} accesses, {human(rate[0])}/s, "
            f"{c['LOST']} lost, {c['MAP']} mappings"
        )

    return Progress(render, sys.stderr, quiet=quiet)


#: A ``MARK`` the kernel (and kmmio) writes when records were lost.
_LOST = re.compile(r"Lost (\d+) events\.")


def run_check(path: str) -> int:
    """Count a log's records by type, and its reads, writes, threads (distinct PIDs of
    ``R``/``W`` records) and lost events; a log without records is refused."""
    name = "standard input" if path == "-" else path
    counts: dict[str, int] = {}
    reads = writes = lost = 0
    threads: set[int] = set()
    with contextlib.ExitStack() as stack:
        if path == "-":
            stream: TextIO = sys.stdin
        else:
            try:
                stream = stack.enter_context(open(path, encoding="utf-8", errors="replace"))
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        try:
            for rec in read_records(stream):
                kind = type(rec).__name__
                counts[kind] = counts.get(kind, 0) + 1
                if isinstance(rec, Access):
                    threads.add(rec.pid)
                    if rec.kind is Kind.READ:
                        reads += 1
                    else:
                        writes += 1
                elif isinstance(rec, Mark) and (m := _LOST.fullmatch(rec.text.strip())):
                    lost += int(m.group(1))
        except TraceFormatError as exc:
            raise UsageError(f"{name}: {exc}") from None
    if not counts:
        raise UsageError(f"{name}: no records")
    by_type = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"{by_type} reads={reads} writes={writes} threads={len(threads)} lost={lost}")
    return 0
