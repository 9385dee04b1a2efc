"""Emulation against the CPU: the same program untraced, stepped and emulated.

Every form of ``forms.c`` and every operation/width/edge value of ``alu.c`` must leave the
same results, flags and memory when the tracer performs the access as when the CPU does;
and the logs of step and emulate modes must be the same records apart from timestamps
(address-space randomisation is turned off so that PCs and addresses agree).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import trace

from kmmio.trace import Access, Map, Record, Unknown, Unmap


def _norm(records: list[Record]) -> list[tuple[object, ...]]:
    """Records without timestamps and with thread ids numbered in order of appearance."""
    tids: dict[int, int] = {}
    out: list[tuple[object, ...]] = []
    for r in records:
        if isinstance(r, Access | Map | Unmap | Unknown):
            tid = tids.setdefault(r.pid, len(tids))
            fields = {k: getattr(r, k) for k in r.__slots__ if k not in ("ts", "pid")}  # type: ignore[union-attr]
            out.append((type(r).__name__, tid, tuple(sorted(fields.items()))))
    return out


def _emulated_like_the_cpu(build, name: str, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    """Run program ``name`` untraced, then traced in emulate mode; same output, none stepped."""
    exe = build(name)
    dev = tmp_path / f"{name}-regs.bin"
    plain = subprocess.run([str(exe), str(dev)], capture_output=True, text=True, check=True)
    run = trace([str(exe), str(dev)], f"{name}-regs.bin", tmp_path, "emulate")
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout
    assert " 0 stepped" in run.stderr  # every access was emulated
    return plain.stdout


def test_alu_results_and_flags_match_the_cpu(build, tmp_path: Path) -> None:
    assert len(_emulated_like_the_cpu(build, "alu", tmp_path).splitlines()) > 17000


def test_vector_moves_match_the_cpu(build, tmp_path: Path) -> None:
    """Every xmm/ymm load leaves all 256 bits as the CPU does; every store the same bytes."""
    assert len(_emulated_like_the_cpu(build, "vectors", tmp_path).splitlines()) == 29


def test_step_and_emulate_logs_are_the_same(build, tmp_path: Path) -> None:
    exe = build("forms")
    runs = {}
    for mode in ("step", "emulate"):
        where = tmp_path / mode
        where.mkdir()
        run = trace(
            ["setarch", "-R", str(exe), str(tmp_path / "forms-regs.bin")], "forms-regs.bin", where, mode
        )
        assert run.status == 0, run.stderr
        runs[mode] = run
    assert runs["step"].stdout == runs["emulate"].stdout  # results, registers, memory hash
    assert _norm(runs["step"].records) == _norm(runs["emulate"].records)
    assert "0 instructions emulated" in runs["step"].stderr
    emulated = int(runs["emulate"].stderr.split(" instructions emulated")[0].rsplit(" ", 1)[1])
    assert emulated >= 30
