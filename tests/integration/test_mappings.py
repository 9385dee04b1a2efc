"""Traced mappings made by other calls than mmap: System V shared memory (shmat/shmdt), and
a mapping whose first page is given another page of its file (remap_file_pages, MAP_FIXED).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import Run, trace

from kmmio.trace import Access, Map, Unmap


def _unmapped_once(run: Run) -> None:
    """Every mapping traced is ended by exactly one UNMAP."""
    maps = [r.map_id for r in run.records if isinstance(r, Map)]
    assert Counter(r.map_id for r in run.records if isinstance(r, Unmap)) == Counter(maps)


def test_a_system_v_shared_memory_segment_is_traced_from_shmat_to_shmdt(
    build, tmp_path: Path, mode: str
) -> None:
    """sysvshm.c attaches one 2-page segment twice (read-write at A, read-only at B): each
    attach is a MAP of the segment's size at offset 0, every access is logged on the
    mapping it went through with its value, and each shmdt is that mapping's UNMAP, logged
    when it happens (B's last reads come after A's UNMAP)."""
    exe = build("sysvshm")
    plain = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    run = trace([str(exe)], "/SYSV00000000", tmp_path, mode)  # IPC_PRIVATE: key 0
    assert run.status == 0, run.stderr
    assert run.stdout == plain.stdout
    assert run.stdout.splitlines()[-1] == "done"
    maps = [r for r in run.records if isinstance(r, Map)]
    assert [(m.phys, m.length) for m in maps] == [(0, 0x2000), (0, 0x2000)]
    a, b = (m.map_id for m in maps)
    events = [
        (r.map_id, "UNMAP") if isinstance(r, Unmap) else (r.map_id, r.kind.value, r.width, r.phys, r.value)
        for r in run.records
        if isinstance(r, Access | Unmap)
    ]
    assert events == [
        (a, "W", 4, 0x0, 0x11223344),
        (a, "W", 8, 0xFFC, 0x5566778899AABBCC),  # across the pages' line: one record
        (a, "W", 2, 0x1FFE, 0xDDEE),
        (b, "R", 4, 0x0, 0x11223344),
        (b, "R", 8, 0xFFC, 0x5566778899AABBCC),
        (a, "UNMAP"),  # shmdt(A)
        (b, "R", 2, 0x1FFE, 0xDDEE),
        (b, "R", 4, 0x1000, 0x55667788),
        (b, "UNMAP"),  # shmdt(B)
    ]
    # what the program printed of each access is what the log says
    printed = [ln.split() for ln in run.stdout.splitlines() if ln[:2] in ("R ", "W ")]
    name = {a: "A", b: "B"}
    logged = [(e[1], name[e[0]], hex(e[3]), hex(e[4])) for e in events if len(e) == 5]
    assert [tuple(p) for p in printed] == logged
    assert " 0 lost" in run.stderr


@pytest.mark.parametrize("how", ["remap", "fixed"])
def test_a_page_remapped_within_a_traced_mapping_logs_its_file_offsets(
    build, tmp_path: Path, mode: str, how: str
) -> None:
    """remap.c maps 4 pages of an 8-page file, then puts file page 3 at the first page
    (``remap``: remap_file_pages, which the kernel emulates with a new mapping; ``fixed``: a
    MAP_FIXED mmap of that page), and only then touches both the moved page and the pages
    that stayed.  Each access is logged at the file offset it reached (physical = file
    offset), and the program reads and writes the same bytes of the file as untraced."""
    exe = build("remap")
    plain = subprocess.run([str(exe), str(tmp_path / "plain-regs"), how], capture_output=True, text=True)
    run = trace([str(exe), str(tmp_path / "remap-regs"), how], "remap-regs", tmp_path, mode)
    assert plain.returncode == 0 and run.status == 0, run.stderr
    assert plain.stdout.splitlines() == [
        "R 0x3000 0x33323130",
        "W 0x3008 0xcafef00d",
        "R 0x1004 0x17161514",
        "W 0x2010 0x600dcafe",
        "R 0x3008 0xcafef00d",
        "file 0x3008 0xcafef00d",
        "file 0x2010 0x600dcafe",
        "file 0x8 0xb0a0908",
        "done",
    ]
    assert run.stdout == plain.stdout
    maps = [r for r in run.records if isinstance(r, Map)]
    # the 4 pages at file offset 0; then file page 3 at the first of them
    assert [(m.phys, m.length) for m in maps] == [(0, 0x4000), (0x3000, 0x1000)]
    assert maps[1].virt == maps[0].virt
    whole, moved = maps[0].map_id, maps[1].map_id
    logged = [
        (r.map_id, r.kind.value, r.width, r.phys, r.value) for r in run.records if isinstance(r, Access)
    ]
    assert logged == [
        (moved, "R", 4, 0x3000, 0x33323130),
        (moved, "W", 4, 0x3008, 0xCAFEF00D),
        (whole, "R", 4, 0x1004, 0x17161514),
        (whole, "W", 4, 0x2010, 0x600DCAFE),
        (moved, "R", 4, 0x3008, 0xCAFEF00D),
    ]
    _unmapped_once(run)
    assert " 0 lost" in run.stderr


def test_part_of_a_mapping_is_traced_with_at_offset_plus_length(build, tmp_path: Path, mode: str) -> None:
    """``-m PATTERN@OFFSET+LENGTH`` traces only those bytes of the mapped file: the MAP
    line is theirs, accesses elsewhere run untraced and are never logged."""
    exe, dev = build("window"), tmp_path / "win-regs.bin"
    run = trace([str(exe), str(dev)], "win-regs.bin@0x1000+0x100", tmp_path, mode)
    assert run.status == 0 and run.stdout == "sum 255\n", run.stderr
    (m,) = [r for r in run.records if isinstance(r, Map)]
    assert (m.phys, m.length) == (0x1000, 0x100)
    got = [(a.kind.value, a.width, a.phys, a.value) for a in run.records if isinstance(a, Access)]
    assert got == [
        ("W", 4, 0x1010, 0x22), ("W", 4, 0x1020, 0x33), ("W", 8, 0x10F8, 0x44),
        ("R", 4, 0x1010, 0x22), ("R", 4, 0x1020, 0x33), ("R", 8, 0x10F8, 0x44),
    ]  # fmt: skip


def test_a_pattern_window_is_parsed_or_refused() -> None:
    from kmmio.errors import UsageError
    from kmmio.patterns import Pattern

    spec = "resource0@0x1000+0x100"
    assert Pattern.parse(spec) == Pattern(spec, "resource0", 0x1000, 0x100)
    assert Pattern.parse("mem@4096") == Pattern("mem@4096", "mem", 4096, None)
    assert Pattern.parse("/home/me@work/regs") == Pattern("/home/me@work/regs", "/home/me@work/regs")
    with pytest.raises(UsageError):
        Pattern.parse("regs@0x10+0")
