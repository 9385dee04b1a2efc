"""Benchmark: the trace tools on a generated log, µs per line and peak memory.

Usage: python bench/tools.py [LINES] [--rounds R] [--log PATH] [--only NAME,...] [--shape S]
(defaults: 10,000,000 lines, 3 rounds).

Generates a driver-like log with bench/genlog.py (kept at PATH when given, and reused if it
is already there), then runs each tool as a user would (``kmmio summary LOG``, ``kmmio
export LOG --format parquet -o OUT``...) in R interleaved rounds, and prints per tool the
median wall time per line of the log, lines per second, and the peak resident memory of
its process (the largest of the rounds).  The issue's goals: ``summary`` at most 1 µs a
line and ``export --format parquet`` at most 2 µs, every tool under 500 MB on 10^7 lines.

Not a test: the figures depend on the machine; compare the numbers of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KMMIO = [sys.executable, "-m", "kmmio"]

#: Per-line goals (µs) and the memory goal (MB).
GOALS = {"summary": 1.0, "export parquet": 2.0}
MEMORY_MB = 500


def tools(log: str, out: str) -> dict[str, list[str]]:
    return {
        "summary": [*KMMIO, "summary", log],
        "export parquet": [*KMMIO, "export", log, "--format", "parquet", "-o", f"{out}.parquet"],
        "export perfetto": [*KMMIO, "export", log, "--format", "perfetto", "-o", f"{out}.pftrace"],
        "export vcd": [*KMMIO, "export", log, "--format", "vcd", "-o", f"{out}.vcd"],
        "plot": [*KMMIO, "plot", log, "-o", f"{out}.png"],
        "diff (itself)": [*KMMIO, "diff", log, log],
    }


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status:
        raise SystemExit(f"{' '.join(cmd[2:5])} failed (status {status}): {err.strip()}")
    return wall, usage.ru_maxrss / 1024


def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b""))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("lines", nargs="?", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--log", help="where the generated log is kept (reused when it exists)")
    ap.add_argument("--only", help="comma-separated tool names (as printed) to run")
    ap.add_argument("--shape", default="driver", choices=["driver", "addresses", "wide"],
                    help="the generated log: a driver's (default), one write per distinct address, "
                    "or 16-byte writes of distinct values (see bench/genlog.py)")  # fmt: skip
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kmmio-bench-tools-")
    log = args.log or os.path.join(tmp, "generated.log")
    if not os.path.exists(log):
        print(f"generating {args.lines:,} lines into {log} ...", flush=True)
        genlog = [sys.executable, os.path.join(HERE, "genlog.py"), str(args.lines), log, args.shape]
        subprocess.run(genlog, check=True)
    n = count_lines(log)
    size = os.path.getsize(log) / 1e6
    print(
        f"log: {n:,} lines, {size:,.0f} MB; {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    cmds = tools(log, os.path.join(tmp, "out"))
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        cmds = {k: v for k, v in cmds.items() if k in wanted}
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    peaks: dict[str, float] = dict.fromkeys(cmds, 0.0)
    for _ in range(args.rounds):
        for name, cmd in cmds.items():
            wall, peak = run(cmd)
            walls[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    print(f"{'tool':<18} {'µs/line':>8} {'lines/s':>12} {'peak MB':>8}  goal")
    failed = False
    for name in cmds:
        us = statistics.median(walls[name]) / n * 1e6
        goal = GOALS.get(name)
        met = (goal is None or us <= goal) and peaks[name] < MEMORY_MB
        failed |= not met
        want = f"≤ {goal} µs, " if goal is not None else ""
        print(
            f"{name:<18} {us:8.3f} {1e6 / us:12,.0f} {peaks[name]:8.0f}  "
            f"{want}< {MEMORY_MB} MB: {'met' if met else 'MISSED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
