"""Benchmark: traced accesses in emulate and step mode, against a C yardstick, in one run.

Usage: python bench/run.py [N] [--memory M] [--rounds R]   (defaults: 20000, 1000000, 5)

Builds bench/workload.c, bench/ctracer.c, bench/native.c and bench/threads.c with cc, then on
the same machine, in R interleaved rounds (medians shown, so that the machine's noise hits
each alike):

* the workload untraced (N 4-byte accesses, half writes, half reads, to a mapped file);
* under ``kmmio trace --backend agent`` (the in-process agent, issue 14): µs per access;
* under ``kmmio trace --backend ptrace --mode emulate`` and ``--mode step``: µs per traced
  access and accesses per second (the loop's own clock, so start-up is not counted);
* under ``ctracer``, the least a C ptrace tracer can do for the same emulation: the floor
  (see its header for what it does and does not do);
* ``native`` (bench/native.c), issue 14's floor for an in-process agent: the workload
  tracing itself, its own SIGSEGV handler performing each access through a second
  mapping of the same file and recording it in a ring in memory (see its header);
* emulate and the floor again with tracer and program pinned to one CPU (``taskset -c 0``:
  the context switches are cheap there, so what each tracer does itself weighs more);
* bench/threads.c on the agent: 4 threads hammering one traced page against 1 thread,
  accesses per second (2 cores here: the tracer drains the records on them too), and the
  same for bench/faults.c, the floor: a SIGSEGV handler that does nothing;
* a "cold" workload whose hot loop never touches the mapping, untraced and traced (both
  backends);
* ``kmmio trace`` over M traced accesses: the tracer's peak memory (and at M/10, to show
  it stays flat), for both backends, and on the agent the program's own (the agent's
  included);
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


def program_rss_kb(cmd: list[str]) -> int:
    """The traced workload's own peak memory (its third output word, KiB)."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])


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
    ptrace, on_agent = [*kmmio, "--backend", "ptrace"], [*kmmio, "--backend", "agent"]
    with tempfile.TemporaryDirectory() as tmp:
        wl, ct = os.path.join(tmp, "workload"), os.path.join(tmp, "ctracer")
        sl, hd = os.path.join(tmp, "syscalls"), os.path.join(tmp, "handed")
        nv, th, fl = os.path.join(tmp, "native"), os.path.join(tmp, "threads"), os.path.join(tmp, "faults")
        subprocess.run(["cc", "-O2", "-o", wl, os.path.join(HERE, "workload.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", ct, os.path.join(HERE, "ctracer.c")], check=True)
        agent_c = ["-I", os.path.join(HERE, "..", "src", "kmmio", "agent")]  # _resume.h
        subprocess.run(["cc", "-O2", *agent_c, "-o", nv, os.path.join(HERE, "native.c")], check=True)
        subprocess.run(["cc", "-O2", "-pthread", "-o", th, os.path.join(HERE, "threads.c")], check=True)
        subprocess.run(
            ["cc", "-O2", "-pthread", *agent_c, "-o", fl, os.path.join(HERE, "faults.c")], check=True
        )
        subprocess.run(["cc", "-O2", "-o", sl, os.path.join(HERE, "syscalls.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", hd, os.path.join(HERE, "handed.c")], check=True)
        dev, log = os.path.join(tmp, "bench-regs"), os.path.join(tmp, "bench.log")

        def traced(mode: str, *extra: str, count: int = n) -> list[str]:
            return [
                *kmmio, "--backend", "ptrace", "--mode", mode, "-o", log, "-m", "bench-regs", "--",
                wl, dev, str(count), *extra,
            ]  # fmt: skip

        def agent(*extra: str, count: int = n, program: str = wl) -> list[str]:
            return [*kmmio, "--backend", "agent", "-o", log, "-m", "bench-regs", "--", program, dev, *extra]

        # Interleaved rounds, medians: the machine's noise hits every contestant alike.
        pin = ["taskset", "-c", "0"]
        rounds: dict[str, list[float]] = {
            "untraced": [], "emulate": [], "step": [], "floor": [], "emulate pinned": [], "floor pinned": [],
            "native": [], "agent": [],
        }  # fmt: skip
        for _ in range(args.rounds):
            rounds["untraced"].append(loop_us([wl, dev, str(n)]))
            rounds["agent"].append(loop_us(agent(str(n))))
            rounds["emulate"].append(loop_us(traced("emulate")))
            rounds["floor"].append(loop_us([ct, log, wl, dev, str(n), "armed"]))
            rounds["native"].append(loop_us([nv, dev, str(n)]))
            rounds["step"].append(loop_us(traced("step")))
            rounds["emulate pinned"].append(loop_us([*pin, *traced("emulate")]))
            rounds["floor pinned"].append(loop_us([*pin, ct, log, wl, dev, str(n), "armed"]))
        untraced, emulate, step, floor, emulate_pinned, floor_pinned, native, in_process = (
            statistics.median(rounds[k]) for k in rounds
        )

        def spread(a: str, b: str) -> str:
            each = sorted(x / y for x, y in zip(rounds[a], rounds[b], strict=True))
            return ", ".join(f"{r:.2f}" for r in each)

        cold_n = 200_000_000
        colds: dict[str, list[float]] = {"plain": [], "ptrace": [], "agent": []}
        for _ in range(args.rounds):
            colds["plain"].append(loop_us([wl, dev, str(cold_n), "cold"]))
            colds["ptrace"].append(loop_us(traced("auto", "cold", count=cold_n)))
            colds["agent"].append(loop_us(agent(str(cold_n), "cold")))
        cold_plain, cold_traced, cold_agent = (statistics.median(colds[k]) for k in colds)
        mem_small = peak_rss_mb(traced("emulate", count=args.memory // 10))
        mem_big = peak_rss_mb(traced("emulate", count=args.memory))
        agent_mem = {m: peak_rss_mb(agent(str(m))) for m in (args.memory // 10, args.memory)}
        program_kb = {m: program_rss_kb(agent(str(m))) for m in (args.memory // 10, args.memory)}
        tn = 200_000
        scaling: dict[int, list[float]] = {1: [], 4: []}
        bare: dict[int, list[float]] = {1: [], 4: []}
        for _ in range(args.rounds):
            for t in scaling:
                us = loop_us(agent(str(t), str(tn), program=th))
                scaling[t].append(t * tn / us)  # accesses per microsecond
                bare[t].append(t * tn / loop_us([fl, str(t), str(tn)]))
        single, quad = (statistics.median(scaling[t]) for t in scaling)
        bare_single, bare_quad = (statistics.median(bare[t]) for t in bare)
        sys_n, sdev = str(SYSCALL_LOOP), os.path.join(tmp, "sys-regs")
        loops: dict[str, list[float]] = {
            "one rule": [], "two rules": [], "traced": [], "nothing traced": [], "agent traced": [],
            "agent nothing": [],
        }  # fmt: skip
        for _ in range(args.rounds):
            loops["one rule"].append(loop_us([sl, sdev, sys_n, "onerule"]))
            loops["traced"].append(loop_us([*ptrace, "-o", log, "-m", "sys-regs", "--", sl, sdev, sys_n]))
            loops["agent traced"].append(
                loop_us([*on_agent, "-o", log, "-m", "sys-regs", "--", sl, sdev, sys_n])
            )
            loops["two rules"].append(loop_us([sl, sdev, sys_n, "tworule"]))
            loops["nothing traced"].append(
                loop_us([*ptrace, "-o", log, "-m", "no-such-map", "--", sl, sdev, sys_n])
            )
            loops["agent nothing"].append(
                loop_us([*on_agent, "-o", log, "-m", "no-such-map", "--", sl, sdev, sys_n])
            )
        one, two, sys_traced, sys_none, agent_traced, agent_none = (
            statistics.median(loops[k]) for k in loops
        )
        hdev, hn = os.path.join(tmp, "handed-regs"), 2000
        handed: dict[str, list[float]] = {"shared": [], "private": []}
        for _ in range(args.rounds):
            for kind, times in handed.items():
                times.append(
                    loop_us([*ptrace, "-o", log, "-m", "handed-regs", "--", hd, hdev, str(hn), kind])
                )
        redirected, lent = (statistics.median(handed[k]) / hn for k in handed)
    with open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}, Linux {platform.release()}")
    print(f"workload: {n} 4-byte accesses to a mapped file, half writes, half reads")
    print(f"each figure: the median of {args.rounds} interleaved rounds")
    print(f"untraced:            {untraced / n * 1000:8.1f} ns per access")
    print(
        f"agent (in-process):  {in_process / n:8.2f} us per access  "
        f"{n / (in_process / 1e6):10,.0f} accesses/s"
    )
    print(f"native yardstick:    {native / n:8.2f} us per access")
    print(
        f"agent / native yardstick: {in_process / native:.2f}x   (goal <= 2.0x; each round: "
        f"{spread('agent', 'native')})"
    )
    print(
        f"ptrace emulate / agent: {emulate / in_process:.1f}x faster on the agent   (goal >= 5x; "
        f"each round: {spread('emulate', 'agent')})"
    )
    print(
        f"agent, 4 threads on one page / 1 thread: {quad / single:.2f}x the accesses per second "
        f"({quad * 1e6:,.0f}/s against {single * 1e6:,.0f}/s; goal >= 1.3x)"
    )
    print(
        f"  the floor (bench/faults.c, a SIGSEGV handler doing nothing), 4 threads / 1: "
        f"{bare_quad / bare_single:.2f}x ({bare_quad * 1e6:,.0f}/s against {bare_single * 1e6:,.0f}/s); "
        f"the agent scales {quad / single / (bare_quad / bare_single):.2f} of what the kernel allows"
    )
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
    print(
        f"hot loop not touching the mapping: {slowdown:+.1%} ptrace, "
        f"{cold_agent / cold_plain - 1:+.1%} agent, "
        "traced vs untraced (goal within 5%)"
    )
    print(
        f"tracer peak memory: {mem_small:.0f} MB at {args.memory // 10:,} accesses, "
        f"{mem_big:.0f} MB at {args.memory:,} (goal < 100 MB, flat)"
    )
    small, big = args.memory // 10, args.memory
    print(
        f"agent backend peak memory: tracer {agent_mem[small]:.0f} MB at {small:,} accesses, "
        f"{agent_mem[big]:.0f} MB at {big:,}; program with its agent {program_kb[small] / 1024:.1f} MB, "
        f"{program_kb[big] / 1024:.1f} MB (goal: flat)"
    )
    per = 1000 / SYSCALL_LOOP  # µs per loop -> ns per getppid + write pair
    print(
        f"syscall loop ({SYSCALL_LOOP:,} getppid + write pairs), ns per pair: one-rule filter "
        f"{one * per:.0f}, two-rule filter {two * per:.0f}, kmmio nothing traced {sys_none * per:.0f}, "
        f"kmmio mapping traced {sys_traced * per:.0f}"
    )
    print(f"syscall loop, nothing traced / one-rule filter: {sys_none / one:.2f}x   (goal <= 1.05x)")
    print(
        f"syscall loop on the agent: nothing traced {agent_none / one:.2f}x, mapping traced "
        f"{agent_traced / one:.2f}x the one-rule filter"
    )
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
