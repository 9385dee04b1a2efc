"""``kmmio demo``: trace a bundled Python driver programming a simulated device.

No hardware and no compiler needed: the device is a Python process serving a register
file in shared memory; the driver is traced like any program would be.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from kmmio.demo.registers import BLOCK_SIZE, DATA_OFFSET, REGISTERS
from kmmio.errors import KmmioError
from kmmio.ptrace.tracer import Tracer
from kmmio.trace.reader import read_records
from kmmio.trace.records import Access, Record, Version
from kmmio.trace.writer import TraceWriter, format_record


def summarize(records: list[Record], out: io.TextIOBase | None = None) -> str:
    """Per-register reads, writes and last value, with the register names."""
    reads: Counter[int] = Counter()
    writes: Counter[int] = Counter()
    last: dict[int, int] = {}
    for rec in records:
        if isinstance(rec, Access):
            off = rec.phys if rec.phys < DATA_OFFSET else DATA_OFFSET
            (reads if rec.kind.value == "R" else writes)[off] += 1
            last[off] = rec.value
    lines = [f"{'register':<10} {'offset':>6} {'reads':>6} {'writes':>6}  last value"]
    for off in sorted(set(reads) | set(writes)):
        name = REGISTERS.get(off, "DATA[]" if off == DATA_OFFSET else "?")
        lines.append(f"{name:<10} {off:#6x} {reads[off]:>6} {writes[off]:>6}  {last[off]:#x}")
    return "\n".join(lines)


def _wait_ready(regfile: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(regfile, "rb") as f:
            if f.read(4) != b"\0\0\0\0":
                return
        time.sleep(0.01)
    raise KmmioError("the simulated device did not start")


def run_sim_demo(output: str | None = None) -> int:
    """The same driver, its device a model (``kmmio demo --sim``): every access answered by
    :class:`kmmio.demo.model.ChecksumEngine` at ``/dev/uio0``, in a mount namespace."""
    from kmmio.demo.model import ChecksumEngine
    from kmmio.sim import run

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    driver = [sys.executable, os.path.join(here, "driver.py"), "/dev/uio0"]
    result = run(driver, {"/dev/uio0": ChecksumEngine()}, env=env)
    print("--- the log (mmiotrace format), every access answered by the model ---")
    print(result.log, end="")
    print("--- summary ---")
    print(summarize(list(read_records(result.log.splitlines()))))
    reads = len(result.reads())
    print(f"{reads} reads, {len(result.accesses) - reads} writes; driver exit status {result.status}")
    if output:
        with open(output, "w") as log_file:
            log_file.write(result.log)
    return result.status


def run_demo(output: str | None = None, sim: bool = False) -> int:
    if sim:
        return run_sim_demo(output)
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="kmmio-demo-") as tmp:
        regfile = os.path.join(tmp, "device-regs")
        with open(regfile, "wb") as f:
            f.write(b"\0" * BLOCK_SIZE)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        device = subprocess.Popen([sys.executable, "-m", "kmmio.demo.device", regfile], env=env)
        _wait_ready(regfile)
        records: list[Record] = []
        text = io.StringIO()
        writer = TraceWriter(text)

        def keep(rec: Record) -> None:
            records.append(rec)
            writer.write(rec)

        keep(Version())
        tracer = Tracer([regfile], keep)
        try:
            tracer.spawn([sys.executable, os.path.join(here, "driver.py"), regfile], env=env)
            status = tracer.run()
        finally:
            device.terminate()
            device.wait()
        log = text.getvalue()
    print("--- the log (mmiotrace format) ---")
    print(log, end="")
    print("--- summary ---")
    print(summarize(records))
    c = tracer.log.counts
    print(f"{c['R']} reads, {c['W']} writes, {c['UNKNOWN']} unknown; driver exit status {status}")
    if output:
        with open(output, "w") as log_file:
            log_file.write("\n".join(format_record(r) for r in records) + "\n")
    return status
