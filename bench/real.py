"""Benchmark: real code nobody here wrote, traced on both backends (issue 14).

Usage: python bench/real.py [--rounds R]   (default 3)

Runs, in R interleaved rounds (medians shown), tests/integration/programs/numpy_memmap.py
(numpy on an np.memmap of 20,000 float64: fill, sum, strided update, sort, views) and
lmdb_writemap.py (LMDB through the ``lmdb`` package, ``writemap=True``, 2,000 keys): untraced,
under ``kmmio trace --backend agent`` and under ``--backend ptrace``, wall-clock seconds of
the whole run (start-up included), the accesses each traced, and the ptrace / agent ratio.
Each traced run's output must equal the untraced one's, or the benchmark stops.

Not a test: the figures depend on the machine; compare the numbers of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "..", "tests", "integration", "programs")


def timed(cmd: list[str]) -> tuple[float, str, str]:
    start = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - start
    if run.returncode:
        raise SystemExit(f"{cmd[:6]} failed ({run.returncode}): {run.stderr[-500:]}")
    return took, run.stdout, run.stderr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    cases = {
        "numpy np.memmap (20,000 float64)": ("numpy_memmap.py", "np.bin", "20000", False),
        "LMDB writemap (2,000 keys)": ("lmdb_writemap.py", "data.mdb", "2000", True),
    }
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}")
    print(f"each figure: the median of {args.rounds} interleaved rounds, seconds of the whole run")
    for name, (script, pattern, count, is_dir) in cases.items():
        times: dict[str, list[float]] = {"untraced": [], "agent": [], "ptrace": []}
        accesses: dict[str, str] = {}
        for _ in range(args.rounds):
            for how in times:
                with tempfile.TemporaryDirectory() as tmp:
                    target = os.path.join(tmp, "db") if is_dir else os.path.join(tmp, pattern)
                    if is_dir:
                        os.mkdir(target)
                    program = [py, os.path.join(PROGRAMS, script), target, count]
                    if how == "untraced":
                        took, out, _ = timed(program)
                        plain = out
                    else:
                        log = os.path.join(tmp, "trace.log")
                        cmd = [py, "-m", "kmmio", "trace", "--backend", how, "-o", log, "-m", pattern, "--"]
                        took, out, err = timed([*cmd, *program])
                        if out != plain:
                            raise SystemExit(f"{name} on {how}: output differs from the untraced run")
                        found = re.search(r"(\d+) accesses traced", err)
                        accesses[how] = found.group(1) if found else "?"
                    times[how].append(took)
        plain_s, agent_s, ptrace_s = (statistics.median(times[k]) for k in times)
        print(
            f"{name}: untraced {plain_s:.2f} s, agent {agent_s:.2f} s, ptrace {ptrace_s:.2f} s "
            f"({accesses['agent']} accesses); ptrace / agent {ptrace_s / agent_s:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
