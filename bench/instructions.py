"""Instructions the tracer executes per traced access, counted by callgrind: repeatable
where timings are not (the same count whatever else the machine does).

Usage: python bench/instructions.py [N]   (default 5000; needs valgrind)

Runs ``kmmio trace --mode emulate`` over bench/workload.c twice under
``valgrind --tool=callgrind``, with 1,000 and 1,000 + N accesses, and divides the
difference by N, so start-up is not counted.  Only the tracer is counted: the workload
runs natively after its exec.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def instructions(tmp: str, workload: str, count: int) -> int:
    out = os.path.join(tmp, f"callgrind.{count}")
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, "-m", "kmmio", "trace", "-q", "--mode", "emulate",
        "-o", os.path.join(tmp, "log"), "-m", "bench-regs",
        "--", workload, os.path.join(tmp, "bench-regs"), str(count),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1))
    raise SystemExit(f"no instruction count in {out}")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        workload = os.path.join(tmp, "workload")
        subprocess.run(["cc", "-O2", "-o", workload, os.path.join(HERE, "workload.c")], check=True)
        base = instructions(tmp, workload, 1000)
        more = instructions(tmp, workload, 1000 + n)
    print(f"tracer instructions per traced access (callgrind, --mode emulate): {(more - base) / n:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
