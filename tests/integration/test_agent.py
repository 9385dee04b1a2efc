"""The in-process agent backend (``--backend agent``, and ``auto``'s choice): the same records
as the ptrace backend, real code nobody here wrote, and what the agent does differently.

Records are compared without their timestamps and thread ids (numbered in order), and
without what depends on where the agent library sits in memory: a ``MAP``'s virtual
start and the PC of ``MAP``/``UNMAP`` (the agent gives the program's call site of
``mmap``, ptrace the ``syscall`` instruction in libc) and, for code in libraries, the PC.
Address-space randomisation is off (``setarch -R``) so that the program's own PCs agree.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import NOBODY, Run, kmmio, kmmio_async, trace, wait_for_lines

from kmmio.trace import Access, KernelAccess, Map, Mark, Record, Unknown, Unmap

PROGRAMS = Path(__file__).parent / "programs"


def _norm(records: list[Record], pcs: bool = True) -> list[tuple[object, ...]]:
    tids: dict[int, int] = {}
    out: list[tuple[object, ...]] = []
    for r in records:
        if isinstance(r, Access):
            tid = tids.setdefault(r.pid, len(tids))
            out.append(("A", tid, r.kind, r.width, r.map_id, r.phys, r.value, r.pc if pcs else 0))
        elif isinstance(r, Unknown):
            out.append(("U", tids.setdefault(r.pid, len(tids)), r.map_id, r.phys, r.code, r.pc))
        elif isinstance(r, Map):
            out.append(("MAP", r.map_id, r.phys, r.length))
        elif isinstance(r, Unmap):
            out.append(("UNMAP", r.map_id))
    return out


def _both(program: list[str], pattern: str, tmp: Path) -> dict[str, Run]:
    runs = {}
    for mode in ("auto", "agent"):
        where = tmp / mode
        where.mkdir()
        runs[mode] = trace(["setarch", "-R", *program], pattern, where, mode)
        assert runs[mode].status == 0, runs[mode].stderr
    return runs


def test_every_form_gives_the_same_records_on_both_backends(build, tmp_path: Path) -> None:
    """forms.c: every instruction form (plain, vector, ALU, atomics, bit tests, string,
    push/pop, straddling, a gather): the same results and the same records."""
    exe = build("forms")
    runs = _both([str(exe), str(tmp_path / "forms-regs.bin")], "forms-regs.bin", tmp_path)
    assert runs["agent"].stdout == runs["auto"].stdout
    assert _norm(runs["agent"].records) == _norm(runs["auto"].records)
    # 19 plain loads and stores performed by the agent itself, 31 instructions relocated
    # (each once: forms.c runs every form once), a gather logged UNKNOWN as on ptrace.
    assert "72 accesses traced (38 reads, 34 writes), 0 lost, 1 unknown" in runs["agent"].stderr
    assert (
        "19 accesses performed in the program, 31 instructions relocated; backend agent"
        in runs["agent"].stderr
    )


@pytest.mark.parametrize("name", ["alu", "vectors"])
def test_alu_and_vector_results_match_the_cpu_on_the_agent(build, tmp_path: Path, name: str) -> None:
    """The differential programs (test_differential.py) on the agent: every operation,
    width and edge value of alu.c, every xmm/ymm move of vectors.c, the results, flags and
    memory the CPU leaves untraced; and the same records as the ptrace backend."""
    exe = build(name)
    plain = subprocess.run(
        [str(exe), str(tmp_path / "plain.bin")], capture_output=True, text=True, check=True
    )
    runs = _both([str(exe), str(tmp_path / f"{name}-regs.bin")], f"{name}-regs.bin", tmp_path)
    assert runs["agent"].stdout == plain.stdout == runs["auto"].stdout
    assert _norm(runs["agent"].records) == _norm(runs["auto"].records)
    assert " 0 lost, 0 unknown" in runs["agent"].stderr


def test_kept_relocations_give_the_same_records(build, tmp_path: Path) -> None:
    """kept.c: relocated instructions met again run from the agent's kept copy, masked
    AVX-512 moves (glibc's memset/memcpy tails) included."""
    exe = build("kept")
    runs = _both([str(exe), str(tmp_path / "kept-regs.bin")], "kept-regs.bin", tmp_path)
    assert runs["agent"].stdout == runs["auto"].stdout
    assert _norm(runs["agent"].records, pcs=False) == _norm(runs["auto"].records, pcs=False)
    own = [r for r in runs["auto"].records if isinstance(r, Access) and r.pc < 0x7F0000000000]
    agent_own = [r for r in runs["agent"].records if isinstance(r, Access) and r.pc < 0x7F0000000000]
    assert [r.pc for r in own] == [r.pc for r in agent_own]  # the program's own PCs agree
    assert "0 lost, 0 unknown" in runs["agent"].stderr


def test_numpy_memmap_output_and_records(tmp_path: Path) -> None:
    """numpy on a traced np.memmap: the output of the untraced run, the records of ptrace."""
    np = pytest.importorskip("numpy")
    del np
    script = [sys.executable, str(PROGRAMS / "numpy_memmap.py")]
    plain = subprocess.run([*script, str(tmp_path / "plain.bin"), "4000"], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    runs = {}
    for mode in ("auto", "agent"):
        (tmp_path / mode).mkdir()
        runs[mode] = trace(
            [*script, str(tmp_path / mode / "np.bin"), "4000"], "np.bin", tmp_path / mode, mode
        )
        assert runs[mode].status == 0, runs[mode].stderr
        assert runs[mode].stdout == plain.stdout
        # How libc copies depends on where the program's heap buffers lie, which the agent
        # library's presence moves: the records are compared through what they wrote.
        assert _replayed(runs[mode].records) == _file_bytes(tmp_path / mode / "np.bin", runs[mode].records)
    assert len(_replayed(runs["agent"].records)) == 4000 * 8  # every byte of the array written


def test_lmdb_writemap_output_and_records(tmp_path: Path) -> None:
    """LMDB with writemap=True (its pages written through a shared mapping of data.mdb)."""
    pytest.importorskip("lmdb")
    script = [sys.executable, str(PROGRAMS / "lmdb_writemap.py")]
    (tmp_path / "plain").mkdir()
    plain = subprocess.run([*script, str(tmp_path / "plain"), "300"], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    runs = {}
    for mode in ("auto", "agent"):
        (tmp_path / mode / "db").mkdir(parents=True)
        program = ["setarch", "-R", *script, str(tmp_path / mode / "db"), "300"]
        runs[mode] = trace(program, "data.mdb", tmp_path / mode, mode)
        assert runs[mode].status == 0, runs[mode].stderr
        assert runs[mode].stdout == plain.stdout
        assert _replayed(runs[mode].records) == _file_bytes(
            tmp_path / mode / "db" / "data.mdb", runs[mode].records
        )
    assert len([r for r in runs["agent"].records if isinstance(r, Access)]) > 10_000


def test_a_private_mapping_is_traced_through_a_copy_and_its_syscalls_lent(build, tmp_path: Path) -> None:
    """lendblock.c: a MAP_PRIVATE file mapping (mremap cannot alias it): plain accesses go
    through /proc/self/mem, others through a copy in the thread's scratch area; a read
    syscall into it has its pages lent (the other thread, which completes it, not held)."""
    run = trace([str(build("lendblock")), str(tmp_path / "lb-regs")], "lb-regs", tmp_path, "agent")
    assert run.status == 0 and run.stdout == "read 32 the other thread wrote this line\nok\n", run.stderr
    marks = [(m.syscall, m.direction, m.phys, m.length) for m in run.records if isinstance(m, KernelAccess)]
    assert marks == [("read", "writes", 0x64, 0x20)]
    reads = [r for r in run.records if isinstance(r, Access) and r.kind.value == "R"]
    assert reads and all(
        r.phys == 0x64 and r.value.to_bytes(32, "little").startswith(b"the other") for r in reads[:1]
    )


def test_a_static_program_falls_back_to_ptrace_and_says_so(tmp_path: Path) -> None:
    src = PROGRAMS / "threads.c"
    exe = tmp_path / "threads-static"
    built = subprocess.run(
        ["cc", "-static", "-O1", "-pthread", "-o", str(exe), str(src)], capture_output=True
    )
    if built.returncode != 0:
        pytest.skip("no static C library here")
    log = tmp_path / "s.log"
    run = kmmio(
        ["trace", "-o", str(log), "-m", "st-regs", "--", str(exe), str(tmp_path / "st-regs"), "100", "2"], log
    )
    assert run.status == 0, run.stderr
    assert "backend ptrace (static program)" in run.stderr
    assert "200 accesses traced" in run.stderr
    refused = kmmio(
        [
            "trace",
            "--backend",
            "agent",
            "-o",
            str(log),
            "-m",
            "st-regs",
            "--",
            str(exe),
            str(tmp_path / "r"),
            "1",
            "1",
        ],
        log,
    )
    assert refused.status == 2 and refused.stderr.count("\n") == 1
    assert "static program" in refused.stderr and "Traceback" not in refused.stderr


def test_sigterm_lets_the_program_run_on_with_its_pages_back(build, tmp_path: Path) -> None:
    """On the agent, SIGTERM to kmmio ends the trace and the program runs on untraced:
    its pages get their protection back, the alias goes, and it finishes on its own."""
    exe = build("stoppable")
    stop = tmp_path / "stop"
    log = tmp_path / "t.log"
    err = tmp_path / "kmmio.err"
    with err.open("w") as errors:  # not a pipe: the program, running on, holds it too
        tracer = kmmio_async(
            [
                "trace",
                "-o",
                str(log),
                "-m",
                "stop-regs",
                "--",
                str(exe),
                str(tmp_path / "stop-regs"),
                "die",
                str(stop),
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    wait_for_lines(log, 200)
    pid = next(r.pid for r in _records(log) if isinstance(r, Map))
    before = _maps_of(pid, "stop-regs")
    armed = [addr for addr, perms in before if perms == "---s"]
    assert len(before) == 2 and len(armed) == 1  # armed, and the agent's alias of it
    tracer.send_signal(signal.SIGTERM)
    assert tracer.wait(timeout=60) == 0, err.read_text()
    marks = [r.text for r in _records(log) if isinstance(r, Mark)]
    assert marks[-1] == "detached (SIGTERM): the program runs on untraced"
    assert _maps_of(pid, "stop-regs") == [(armed[0], "rw-s")]
    time.sleep(0.2)
    assert _alive(pid)
    stop.touch()
    assert _wait_exit(pid)


def _replayed(records: list[Record]) -> dict[int, int]:
    """The last byte each ``W`` record of map 1 left at each offset of the file."""
    image: dict[int, int] = {}
    for r in records:
        if isinstance(r, Access) and r.kind.value == "W" and r.map_id == 1:
            for i, b in enumerate(r.value.to_bytes(r.width, "little")):
                image[r.phys + i] = b
    return image


def _file_bytes(path: Path, records: list[Record]) -> dict[int, int]:
    """The file's bytes at the offsets the log says were written."""
    data = path.read_bytes()
    return {at: data[at] for at in _replayed(records)}


def _records(log: Path) -> list[Record]:
    from kmmio.trace.reader import read_records

    return list(read_records(log.read_text().splitlines()))


def _maps_of(pid: int, needle: str) -> list[tuple[str, str]]:
    with open(f"/proc/{pid}/maps") as f:
        return [(ln.split()[0], ln.split()[1]) for ln in f if needle in ln]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def _wait_exit(pid: int, timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("backend", ["agent", "ptrace"])
def test_both_backends_emulate_as_an_unprivileged_user(build, backend: str) -> None:
    """As nobody: the agent's alias is made inside the program, and the ptrace backend,
    which may not open /proc/PID/map_files, uses the same kind of alias (through
    /proc/PID/mem): every access performed, none single-stepped, no privilege."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become nobody")
    where = Path(tempfile.mkdtemp(prefix="kmmio-nobody-"))  # pytest's own is root's alone
    try:
        where.chmod(0o777)
        exe = where / "threads"
        shutil.copy(build("threads"), exe)
        exe.chmod(0o755)
        log = where / "nobody.log"
        run = subprocess.run(
            [*NOBODY, sys.executable, "-m", "kmmio", "trace", "--backend", backend, "-o", str(log),
             "-m", "nb-regs", "--", str(exe), str(where / "nb-regs"), "1000", "2"],
            capture_output=True, text=True, timeout=120, cwd=where,
        )  # fmt: skip
    finally:
        shutil.rmtree(where)
    assert run.returncode == 0, run.stderr
    assert "2000 accesses traced" in run.stderr
    if backend == "agent":
        assert "2000 accesses performed in the program, 0 instructions relocated; backend agent" in run.stderr
    else:
        assert "2000 instructions emulated, 0 stepped; backend ptrace" in run.stderr


def test_a_program_in_its_own_time_namespace_is_stamped_in_kmmios_clock(build, tmp_path: Path) -> None:
    """unshare --time: the program's CLOCK_MONOTONIC runs 100,000 s ahead of kmmio's. Its
    records are stamped in kmmio's clock all the same (next to the MAP line's stamp), and
    none waits for a time that never comes: 100,000 records, more than a lane holds."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a time namespace needs root and unshare")
    program = ["unshare", "--time", "--monotonic", "100000", "--fork", str(build("threads"))]
    args = [*program, str(tmp_path / "tns-regs"), "100000", "1"]
    run = trace(args, "tns-regs", tmp_path, "agent", timeout=120)
    assert run.status == 0, run.stderr
    assert "100000 accesses traced (0 reads, 100000 writes), 0 lost" in run.stderr
    (mapped,) = [r for r in run.records if isinstance(r, Map)]
    stamps = [r.ts for r in run.records if isinstance(r, Access)]
    assert stamps == sorted(stamps)
    assert 0 <= stamps[0] - mapped.ts < 10_000_000  # µs: seconds apart at most, not 100,000 s


@pytest.mark.parametrize("before", [0, 40])
def test_a_signal_handler_leaving_by_siglongjmp_mid_record_stalls_nothing(
    build, tmp_path: Path, before: int
) -> None:
    """timeouts.c: a SIGALRM every 300 µs siglongjmps out of the program's loop, often out
    of the agent's handler in the middle of a record. The record left half made is
    counted lost (as a thread killed mid-access is) and the thread's lane goes on: with
    400,000 writes, over ten lanes' worth, nothing waits for it. With 40 threads come and
    gone before (more than there are lanes), the loop's thread still gets a lane of its
    own (one whose owner is gone), where that holds."""
    n = 400_000
    args = [str(build("timeouts")), str(tmp_path / "to-regs"), str(n), str(before)]
    run = trace(args, "to-regs", tmp_path, "agent", timeout=120)
    assert run.status == 0, run.stderr
    writes, timeouts = (int(w) for w in run.stdout.split()[::2])
    assert writes == n and timeouts > 0
    logged = sum(isinstance(r, Access) and r.phys == 0 for r in run.records)
    assert sum(isinstance(r, Access) and r.phys == 4 for r in run.records) == 100 * before
    lost = int(run.stderr.split(" lost")[0].rsplit(" ", 1)[1])
    # each write performed once, or twice when a timeout came between the store and the
    # count; a record is either logged or lost
    assert n <= logged + lost <= n + timeouts


def test_posix_spawn_and_system_keep_the_agent(build, tmp_path: Path) -> None:
    """spawns.c: posix_spawn and posix_spawnp with envp = { NULL }: the agent's wrappers
    put its entries back, so both children are traced on the agent too; and system(),
    whose posix_spawn blocks every signal around its clone: the agent keeps SIGSYS open
    (its traps would kill a process blocking it), the child traced as well."""
    run = trace([str(build("spawns")), str(tmp_path / "sp-regs")], "sp-regs", tmp_path, "agent")
    assert run.status == 0, run.stderr
    assert run.stdout == "spawned 3\n"
    writes = sorted((a.phys, a.value) for a in run.records if isinstance(a, Access))
    assert writes == [(4, 1), (8, 2), (12, 3)]
