"""Traced mappings that come, go and move while other threads touch them (churn.c)."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import trace

from kmmio.trace import Access, Map, Unmap

THREADS = 8
CHECKSUM_READS = 4 * 4096 // 8  # the main thread reads the whole file at the end


@pytest.mark.parametrize(
    ("mode", "iterations", "moves"), [("auto", 50_000, 100), ("step", 2_000, 100), ("agent", 150_000, 40)]
)
def test_threads_lose_nothing_while_mappings_are_remapped(
    build, tmp_path: Path, mode: str, iterations: int, moves: int
) -> None:
    """8 threads x 2 accesses x ITERATIONS (100,000 accesses a thread in auto mode; 300,000
    on the agent, whose threads run them faster while each of the mapper's calls waits for
    the tracer: it moves the mappings at least MOVES times) while the mapper thread unmaps,
    maps, mremaps and MAP_FIXED-replaces the traced mappings."""
    exe = build("churn")
    plain = subprocess.run(
        [str(exe), str(tmp_path / "plain-regs"), str(THREADS), str(iterations)],
        capture_output=True,
        text=True,
    )
    run = trace(
        [str(exe), str(tmp_path / "churn-regs"), str(THREADS), str(iterations)], "churn-regs", tmp_path, mode
    )
    assert run.status == 0, run.stderr
    remaps, verdict, checksum = run.stdout.split("\n")[:3]
    assert verdict == "ok" and plain.stdout.split("\n")[1:3] == ["ok", checksum]
    assert int(remaps.split()[1]) >= moves, "the mappings hardly moved while the threads ran"
    # every access of a live mapping traced, none lost
    main = next(r.pid for r in run.records if isinstance(r, Map))
    per_thread = Counter(r.pid for r in run.records if isinstance(r, Access))
    assert per_thread.pop(main) == CHECKSUM_READS
    assert sorted(per_thread.values()) == [2 * iterations] * THREADS
    assert f"{THREADS * 2 * iterations + CHECKSUM_READS} accesses traced" in run.stderr
    assert " 0 lost, 0 unknown" in run.stderr
    # one MAP per mapping the program made, each ended by exactly one UNMAP (munmap, mremap
    # away, MAP_FIXED over it, or the program's exit)
    maps = [r for r in run.records if isinstance(r, Map)]
    assert len(maps) == 4 + int(remaps.split()[1])
    unmaps = Counter(r.map_id for r in run.records if isinstance(r, Unmap))
    assert unmaps == Counter(m.map_id for m in maps)
