"""Emulation against the CPU: the same program untraced, stepped and emulated.

Every form of ``forms.c`` and every operation/width/edge value of ``alu.c`` must leave the
same results, flags and memory when the tracer performs the access as when the CPU does;
and the logs of step and emulate modes must be the same records apart from timestamps
(address-space randomisation is turned off so that PCs and addresses agree).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import trace

import kmmio
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
    assert f"0 instructions emulated, {sum(STEPPED_FAULTS.values())} stepped;" in runs["step"].stderr
    assert f"{EMULATED} instructions emulated, {STEPPED} stepped;" in runs["emulate"].stderr


#: How each form of ``forms.c`` runs when emulation is allowed: the faults it takes, each
#: emulated (E) or single-stepped (S).  A string instruction emulated does all its elements
#: in one fault; ``repe scasb`` is stepped, one fault an element (5).
FORMS = {
    **dict.fromkeys(["store-reg-1", "store-reg-2", "store-reg-4", "store-reg-8"], "E"),
    **dict.fromkeys(["store-imm-1", "store-imm-2", "store-imm-4", "store-imm-8"], "E"),
    **dict.fromkeys(["load-1", "load-2", "load-4", "load-8", "c-store"], "E"),
    **dict.fromkeys(["movzx", "movsx-byte", "movsx-word", "movsxd"], "E"),
    **dict.fromkeys(["movdqu-store", "movdqu-load", "vmovdqu-store", "vmovdqu-load"], "E"),
    **dict.fromkeys(["or", "add", "and", "inc", "not", "test", "cmp"], "E"),
    **dict.fromkeys(["xchg", "lock-xadd", "lock-cmpxchg-equal", "lock-cmpxchg-differ", "bts"], "S"),
    "push": "E",
    "pop": "E",
    **dict.fromkeys(["movsb", "rep-movsl", "stosq", "rep-stosb", "lodsw", "std-rep-movsl"], "E"),
    "cmpsb": "S",
    "repe-scasb": "SSSSS",
    "straddle-load": "E",
    "straddle-store": "E",
    "gather": "S",  # UNKNOWN: stepped
}
EMULATED = sum(ways.count("E") for ways in FORMS.values())  # 38
STEPPED = sum(ways.count("S") for ways in FORMS.values())  # 12
#: In step mode every fault is stepped, and a ``rep`` string instruction faults once an
#: element (the single step runs one iteration).
STEPPED_FAULTS = {name: len(ways) for name, ways in FORMS.items()} | {
    "rep-movsl": 3,
    "rep-stosb": 4,
    "std-rep-movsl": 2,
}


def _forms_of_account(stdout: str) -> list[str]:
    """For each account line of ``forms.c`` (R, W or U), the form that printed it."""
    names: list[str] = []
    current = ""
    for line in stdout.splitlines():
        if line.startswith("form "):
            current = line.split()[1]
        elif line[:2] in ("R ", "W ", "U "):
            names.append(current)
    return names


@pytest.mark.parametrize("mode", ["step", "auto"])  # the ptrace tracer's own counts (the API)
def test_each_form_is_emulated_or_stepped_as_expected(
    build, tmp_path: Path, mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Per form of ``forms.c``, which way each of its faults went: no form may fall back to
    the single step unnoticed (or be emulated when it must be stepped).

    The tracer counts a fault as emulated or stepped before it emits the fault's records, so
    the counts seen as each record is emitted tell which way its fault went; the records
    are in the order of the program's account lines, which say which form made them."""
    exe = build("forms")
    seen: list[tuple[Record, int, int]] = []

    def emit(record: Record) -> None:
        seen.append((record, tracer.stats.emulated, tracer.stats.stepped))

    tracer = kmmio.Tracer(["forms-regs.bin"], emit, mode=kmmio.Mode(mode))
    tracer.spawn([str(exe), str(tmp_path / "forms-regs.bin")])
    assert tracer.run() == 0
    names = _forms_of_account(capfd.readouterr().out)  # the program writes to our stdout
    traced = [(r, e, s) for r, e, s in seen if isinstance(r, Access | Unknown)]
    assert len(traced) == len(names)  # one record per account line, in order
    ways: dict[str, str] = {}
    fault_form: dict[tuple[int, int], str] = {}
    before = (0, 0)
    for (_, emulated, stepped), name in zip(traced, names, strict=True):
        if (emulated, stepped) != before:  # the first record of a new fault
            assert (emulated + stepped) - sum(before) == 1, "a fault that logged nothing"
            ways[name] = ways.get(name, "") + ("E" if emulated > before[0] else "S")
            before = (emulated, stepped)
        assert fault_form.setdefault(before, name) == name  # a fault's records are one form's
    if mode == "step":
        assert ways == {name: "S" * n for name, n in STEPPED_FAULTS.items()}
        assert (tracer.stats.emulated, tracer.stats.stepped) == (0, sum(STEPPED_FAULTS.values()))
    else:
        assert ways == FORMS
        assert (tracer.stats.emulated, tracer.stats.stepped) == (EMULATED, STEPPED) == (38, 12)
