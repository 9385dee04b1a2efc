"""The Python API: a per-access callback, and probes with handlers the kmmio way."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import PROGRAMS

import kmmio


def test_per_access_callback(tmp_path: Path) -> None:
    dev = tmp_path / "api-regs.bin"
    seen: list[kmmio.TracedAccess] = []
    records: list[object] = []
    status = kmmio.trace_program(
        [sys.executable, str(PROGRAMS / "mmio_driver.py"), str(dev)],
        ["api-regs.bin"],
        records.append,
        on_access=seen.append,
    )
    assert status == 0
    regs = [(a.kind.value, a.width, a.phys, a.value) for a in seen if a.phys < 0x100]
    assert ("W", 4, 0x4, 0xDEADBEEF) in regs and ("R", 8, 0x8, 0x0123456789ABCDEF) in regs
    assert all(a.path.endswith("api-regs.bin") and a.tid > 0 and a.instruction for a in seen)


@pytest.mark.parametrize("mode", [kmmio.Mode.STEP, kmmio.Mode.AUTO])
def test_probes_with_handlers_the_kmmio_way(tmp_path: Path, mode: kmmio.Mode) -> None:
    dev = tmp_path / "api-regs.bin"
    events: list[tuple[str, int]] = []
    records: list[object] = []

    def pre(probe: kmmio.Probe, regs: kmmio.Registers, addr: int) -> None:
        events.append(("pre", addr - probe.addr))

    def post(probe: kmmio.Probe, condition: kmmio.StepCondition, regs: kmmio.Registers) -> None:
        value = int.from_bytes(tracer.read_memory(regs.tid, probe.addr, 4), "little")
        events.append((condition.value, value))

    def probes_for(mapping: kmmio.Mapping) -> list[kmmio.Probe]:
        return [kmmio.Probe(mapping.virt + 4, 4, pre_handler=pre, post_handler=post)]

    tracer = kmmio.Tracer(["api-regs.bin"], records.append, probes_for=probes_for, mode=mode)
    tracer.spawn([sys.executable, str(PROGRAMS / "mmio_driver.py"), str(dev)])
    assert tracer.run() == 0
    # ctypes reads before it writes: both faults reach the probe, the write leaves 0xdeadbeef
    ran = "stepped" if mode is kmmio.Mode.STEP else "emulated"
    assert (ran, 0xDEADBEEF) in events
    assert events[0] == ("pre", 0)
    assert len([e for e in events if e[0] == "pre"]) == len([e for e in events if e[0] == ran])
    # The probe's own accesses are logged too (the 4 bytes it covers, as kmmio's probes).
    logged = [(r.kind.value, r.width, r.phys, r.value) for r in records if isinstance(r, kmmio.trace.Access)]
    assert ("W", 4, 4, 0xDEADBEEF) in logged and {phys for _, _, phys, _ in logged} == {4}


def test_a_thread_killed_in_the_middle_of_a_stepped_access_is_one_lost_event(build, tmp_path: Path) -> None:
    """``MARK ... Lost N events.``: the probe's pre-handler (which runs when the access has
    faulted, before the single step) kills the thread with SIGKILL at its first traced
    access (``forms.c``'s 1-byte store at 0x10); the step finds it gone, so that access is
    lost: exactly 1, said by the last line of the log, and the program's status is 128+9."""
    out = io.StringIO()
    killed: list[tuple[int, int]] = []

    def pre(probe: kmmio.Probe, regs: kmmio.Registers, addr: int) -> None:
        if not killed:
            killed.append((regs.tid, addr - probe.addr))
            os.kill(regs.tid, signal.SIGKILL)

    def probes_for(mapping: kmmio.Mapping) -> list[kmmio.Probe]:
        return [kmmio.Probe(mapping.virt, mapping.length, pre_handler=pre)]

    tracer = kmmio.Tracer(
        ["lost-regs.bin"], kmmio.TraceWriter(out).write, probes_for=probes_for, mode=kmmio.Mode.STEP
    )
    pid = tracer.spawn([str(build("forms")), str(tmp_path / "lost-regs.bin")])
    assert tracer.run() == 128 + signal.SIGKILL
    assert killed == [(pid, 0x10)]
    assert (tracer.stats.emulated, tracer.stats.stepped) == (0, 1)
    assert {k: tracer.log.counts[k] for k in ("R", "W", "UNKNOWN", "LOST")} == {
        "R": 0,
        "W": 0,
        "UNKNOWN": 0,
        "LOST": 1,
    }
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"MARK \d+\.\d{6} Lost 1 events\.", lines[-1])
    records = list(kmmio.trace.read_records(lines))
    # the mapping, ended by the program's death, then the lost access: no access record
    assert [type(r).__name__ for r in records] == ["Version", "Map", "MapInfo", "Unmap", "Mark"]
    assert records[1].pid == pid and records[2].map_id == records[1].map_id
