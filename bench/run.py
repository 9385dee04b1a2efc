"""Benchmark: traced accesses in emulate and step mode, against a C yardstick, in one run.

Usage: python bench/run.py [N] [--memory M] [--rounds R]   (defaults: 20000, 1000000, 5)

Builds bench/workload.c, bench/ctracer.c and bench/native.c with cc, then on the same machine, in R
interleaved rounds (medians shown, so that the machine's noise hits each alike):

* the workload untraced (N 4-byte accesses, half writes, half reads, to a mapped file);
* under ``kmmio trace --mode emulate`` and ``--mode step``: µs per traced access and
  accesses per second (the loop's own clock, so start-up is not counted);
* under ``ctracer``, the least a C ptrace tracer can do for the same emulation: the floor
  (see its header for what it does and does not do);
* ``native`` (bench/native.c), issue 14's floor for an in-process agent: the workload
  tracing itself, its own SIGSEGV handler performing each access through a second
  mapping of the same file and recording it in a ring in memory (see its header);
* emulate and the floor again with tracer and program pinned to one CPU (``taskset -c 0``:
  the context switches are cheap there, so what each tracer does itself weighs more);
* a "cold" workload whose hot loop never touches the mapping, untraced and traced;
* ``kmmio trace`` over M traced accesses: the tracer's peak memory (and at M/10, to show
  it stays flat);
* bench/syscalls.c, a loop of 1,000,000 ``getppid`` + ``write(/dev/null)`` from an untraced
  buffer: under ``kmmio trace`` with its mapping traced and with nothing traced, against
  the same loop under a one-rule seccomp filter (the least any seccomp-based tracer
  costs) and under a two-rule one (the least a tracer that must see buffers in traced
  memory costs: the kernel then runs the filters on every ``write``);
* bench/handed.c, ``pwrite`` of a traced buffer: redirected through the mapping's alias
  (shared) or with its page lent (private).

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

HERE = os.path.dirname(os.path.abspath(__file__))
#: Iterations of bench/syscalls.c's loop.
SYSCALL_LOOP = 1_000_000


def loop_us(cmd: list[str]) -> float:
    """Run a command whose first output word is the workload loop's time in µs."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def peak_rss_mb(cmd: list[str]) -> float:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{cmd[:4]} failed: status {status}")
    return usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=20000)
    ap.add_argument("--memory", type=int, default=1_000_000, help="traced accesses for the memory figure")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are shown")
    args = ap.parse_args()
    n = args.n
    kmmio = [sys.executable, "-m", "kmmio", "trace", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        wl, ct = os.path.join(tmp, "workload"), os.path.join(tmp, "ctracer")
        sl, hd = os.path.join(tmp, "syscalls"), os.path.join(tmp, "handed")
        nv = os.path.join(tmp, "native")
        subprocess.run(["cc", "-O2", "-o", wl, os.path.join(HERE, "workload.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", ct, os.path.join(HERE, "ctracer.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", nv, os.path.join(HERE, "native.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", sl, os.path.join(HERE, "syscalls.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", hd, os.path.join(HERE, "handed.c")], check=True)
        dev, log = os.path.join(tmp, "bench-regs"), os.path.join(tmp, "bench.log")

        def traced(mode: str, *extra: str, count: int = n) -> list[str]:
            return [*kmmio, "--mode", mode, "-o", log, "-m", "bench-regs", "--", wl, dev, str(count), *extra]

        # Interleaved rounds, medians: the machine's noise hits every contestant alike.
        pin = ["taskset", "-c", "0"]
        rounds: dict[str, list[float]] = {
            "untraced": [], "emulate": [], "step": [], "floor": [], "emulate pinned": [], "floor pinned": [],
            "native": [],
        }  # fmt: skip
        for _ in range(args.rounds):
            rounds["untraced"].append(loop_us([wl, dev, str(n)]))
            rounds["emulate"].append(loop_us(traced("emulate")))
            rounds["floor"].append(loop_us([ct, log, wl, dev, str(n), "armed"]))
            rounds["native"].append(loop_us([nv, dev, str(n)]))
            rounds["step"].append(loop_us(traced("step")))
            rounds["emulate pinned"].append(loop_us([*pin, *traced("emulate")]))
            rounds["floor pinned"].append(loop_us([*pin, ct, log, wl, dev, str(n), "armed"]))
        untraced, emulate, step, floor, emulate_pinned, floor_pinned, native = (
            statistics.median(rounds[k]) for k in rounds
        )

        def spread(a: str, b: str) -> str:
            each = sorted(x / y for x, y in zip(rounds[a], rounds[b], strict=True))
            return ", ".join(f"{r:.2f}" for r in each)

        cold_n = 200_000_000
        cold_plain = loop_us([wl, dev, str(cold_n), "cold"])
        cold_traced = loop_us(traced("auto", "cold", count=cold_n))
        mem_small = peak_rss_mb(traced("emulate", count=args.memory // 10))
        mem_big = peak_rss_mb(traced("emulate", count=args.memory))
        sys_n, sdev = str(SYSCALL_LOOP), os.path.join(tmp, "sys-regs")
        loops: dict[str, list[float]] = {"one rule": [], "two rules": [], "traced": [], "nothing traced": []}
        for _ in range(args.rounds):
            loops["one rule"].append(loop_us([sl, sdev, sys_n, "onerule"]))
            loops["traced"].append(loop_us([*kmmio, "-o", log, "-m", "sys-regs", "--", sl, sdev, sys_n]))
            loops["two rules"].append(loop_us([sl, sdev, sys_n, "tworule"]))
            loops["nothing traced"].append(
                loop_us([*kmmio, "-o", log, "-m", "no-such-map", "--", sl, sdev, sys_n])
            )
        one, two, sys_traced, sys_none = (statistics.median(loops[k]) for k in loops)
        hdev, hn = os.path.join(tmp, "handed-regs"), 2000
        handed: dict[str, list[float]] = {"shared": [], "private": []}
        for _ in range(args.rounds):
            for kind, times in handed.items():
                times.append(loop_us([*kmmio, "-o", log, "-m", "handed-regs", "--", hd, hdev, str(hn), kind]))
        redirected, lent = (statistics.median(handed[k]) / hn for k in handed)
    with open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}, Linux {platform.release()}")
    print(f"workload: {n} 4-byte accesses to a mapped file, half writes, half reads")
    print(f"each figure: the median of {args.rounds} interleaved rounds")
    print(f"untraced:            {untraced / n * 1000:8.1f} ns per access")
    for name, us in (
        ("kmmio --mode emulate", emulate),
        ("kmmio --mode step", step),
        ("C floor tracer", floor),
        ("emulate, pinned", emulate_pinned),
        ("C floor, pinned", floor_pinned),
    ):
        print(f"{name:20} {us / n:8.1f} us per access  {n / (us / 1e6):10,.0f} accesses/s")
    print(
        f"native SIGSEGV handler (issue 14's floor): {native / n:.2f} µs per access  "
        f"{n / (native / 1e6):,.0f} accesses/s"
    )
    free = spread("emulate", "floor")
    print(f"emulate / C floor:         {emulate / floor:.2f}x   (goal <= 1.25x; each round: {free})")
    print(
        f"emulate / C floor, pinned: {emulate_pinned / floor_pinned:.2f}x   "
        f"(goal <= 1.4x; each round: {spread('emulate pinned', 'floor pinned')})"
    )
    print(
        f"kmmio emulate / native: {emulate / native:.1f}x   (each round: {spread('emulate', 'native')}); "
        f"C floor / native: {floor / native:.1f}x"
    )
    print(f"step / emulate:        {step / emulate:.2f}x   (goal >= 4x)")
    slowdown = cold_traced / cold_plain - 1
    print(f"hot loop not touching the mapping: {slowdown:+.1%} traced vs untraced (goal within 5%)")
    print(
        f"tracer peak memory: {mem_small:.0f} MB at {args.memory // 10:,} accesses, "
        f"{mem_big:.0f} MB at {args.memory:,} (goal < 100 MB, flat)"
    )
    per = 1000 / SYSCALL_LOOP  # µs per loop -> ns per getppid + write pair
    print(
        f"syscall loop ({SYSCALL_LOOP:,} getppid + write pairs), ns per pair: one-rule filter "
        f"{one * per:.0f}, two-rule filter {two * per:.0f}, kmmio nothing traced {sys_none * per:.0f}, "
        f"kmmio mapping traced {sys_traced * per:.0f}"
    )
    print(f"syscall loop, nothing traced / one-rule filter: {sys_none / one:.2f}x   (goal <= 1.05x)")
    print(
        f"syscall loop, mapping traced / one-rule filter: {sys_traced / one:.2f}x   (goal <= 1.05x; "
        f"the two-rule floor is {two / one:.2f}x, kmmio / two-rule {sys_traced / two:.2f}x)"
    )
    print(
        f"a traced buffer handed to pwrite: {redirected:.1f} us redirected through the alias (shared), "
        f"{lent:.1f} us with its page lent (private)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
