"""Benchmark: N traced 4-byte accesses, untraced and traced, in one run.

Usage: python bench/run.py [N]   (default 20000).  Builds bench/workload.c with cc, runs it
untraced, then under ``kmmio trace`` (single-step mode, the kmmio way), and prints the
untraced loop time, µs per traced access and accesses per second.  Not a test: figures
depend on the machine; compare the numbers of one run with each other.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "workload")
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "workload.c")], check=True)
        dev = os.path.join(tmp, "bench-regs")
        out = subprocess.run([exe, dev, str(n)], capture_output=True, text=True, check=True).stdout
        untraced_us = float(out.split()[0])
        log = os.path.join(tmp, "bench.log")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kmmio",
                "trace",
                "-q",
                "-o",
                log,
                "-m",
                "bench-regs",
                "--",
                exe,
                dev,
                str(n),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - t0
        traced_us = float(proc.stdout.split()[0])
        with open(log) as f:
            records = sum(1 for line in f if line[:2] in ("R ", "W "))
    with open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}, Linux {platform.release()}")
    print(f"accesses: {n} (4-byte, half writes, half reads); records logged: {records}")
    print(f"untraced loop: {untraced_us:.0f} us total, {untraced_us / n * 1000:.1f} ns per access")
    print(f"traced (step mode): {traced_us / n:.1f} us per access, {n / (traced_us / 1e6):,.0f} accesses/s")
    print(f"traced run, wall time including start-up: {wall:.2f} s")
    return 0 if records == n else 1


if __name__ == "__main__":
    sys.exit(main())
