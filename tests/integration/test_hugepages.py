"""Huge pages: hugetlbfs memory (2 MiB fault pages) and transparent huge pages (tmpfs)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Run, backend_args, trace

from kmmio.trace import Access, Map, Unmap, read_records

NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
HUGE = 2 << 20


@pytest.fixture
def huge_pages() -> Iterator[None]:
    """At least 4 free 2 MiB pages in the kernel's pool, given back afterwards."""
    if os.geteuid() != 0:
        pytest.skip("reserving huge pages needs root")
    before = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(str(before + 4))
    if int(NR_HUGEPAGES.read_text()) < before + 4:
        NR_HUGEPAGES.write_text(str(before))
        pytest.fail("the kernel could not reserve 4 huge pages")
    yield
    NR_HUGEPAGES.write_text(str(before))


def _check(run: Run, plain: str, mapping_length: int) -> None:
    """The traced program printed what it prints untraced (``plain``: the values it read),
    and the log holds exactly the accesses the untraced run reports, each process in order."""
    assert run.status == 0, run.stderr
    assert run.stdout == plain
    assert plain.splitlines()[-1] == "done"
    maps = [r for r in run.records if isinstance(r, Map)]
    assert [m.length for m in maps] == [mapping_length, mapping_length]  # the parent's, the child's
    assert {u.map_id for u in run.records if isinstance(u, Unmap)} == {m.map_id for m in maps}
    parent = maps[0].pid

    def accesses(mine: bool) -> list[tuple[str, str, str]]:
        return [
            (r.kind.value, hex(r.phys), hex(r.value))
            for r in run.records
            if isinstance(r, Access) and (r.pid == parent) == mine
        ]

    lines = [ln.split() for ln in plain.splitlines()]
    assert accesses(True) == [(k, o, v) for k, o, v, *_ in (ln for ln in lines if ln[0] in ("R", "W"))]
    assert accesses(False) == [tuple(ln[1:]) for ln in lines if ln[0] == "fork-child"]
    assert " 0 lost" in run.stderr and " 0 unknown" in run.stderr


def test_hugetlbfs_memory_is_traced_in_2_mib_pages(
    build, huge_pages: None, tmp_path: Path, mode: str
) -> None:
    exe = build("hugepages")
    plain = subprocess.run([str(exe), "hugetlb"], capture_output=True, text=True, check=True)
    run = trace([str(exe), "hugetlb"], "huge-regs", tmp_path, mode)
    _check(run, plain.stdout, 2 * HUGE)
    # the accesses across 4 KiB lines inside a huge page and across two huge pages
    widths = {(r.phys, r.width) for r in run.records if isinstance(r, Access)}
    assert {(0xFFC, 8), (HUGE - 1, 2)} <= widths


def test_transparent_huge_pages_are_traced(build, tmp_path: Path, mode: str) -> None:
    """On a tmpfs mounted huge=always, in a mount namespace of its own: the program runs
    there untraced (its file removed after), then traced."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private tmpfs mount needs root and unshare")
    mnt = tmp_path / "thp"
    mnt.mkdir()
    log = tmp_path / "thp.log"
    plain = tmp_path / "plain.out"
    exe = build("hugepages")
    kmmio = [sys.executable, "-m", "kmmio", "trace", *backend_args(mode), "-o", str(log), "-m", "thp-regs"]
    untraced = f"{shlex.quote(str(exe))} thp {shlex.quote(f'{mnt}/plain-regs')} >{shlex.quote(str(plain))}"
    script = (
        f"mount -t tmpfs -o huge=always none {shlex.quote(str(mnt))} && {untraced}"
        f' && rm {shlex.quote(f"{mnt}/plain-regs")} && exec "$@"'
    )
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            script,
            "sh",
            *kmmio,
            "--",
            str(exe),
            "thp",
            f"{mnt}/thp-regs",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert log.exists(), proc.stderr  # else the mount or the untraced run failed
    run = Run(proc.returncode, proc.stdout, proc.stderr, list(read_records(log.read_text().splitlines())), "")
    first, *rest = run.stdout.splitlines(keepends=True)
    assert first.split()[0] == "thp" and int(first.split()[1]) >= 2048, "the tmpfs gave no huge page"
    plain_first, *plain_rest = plain.read_text().splitlines(keepends=True)
    assert int(plain_first.split()[1]) >= 2048, "the tmpfs gave the untraced run no huge page"
    # The first line says how many huge pages the tmpfs gave, which is the machine's doing.
    _check(Run(run.status, "".join(rest), run.stderr, run.records, ""), "".join(plain_rest), 2 * HUGE)
