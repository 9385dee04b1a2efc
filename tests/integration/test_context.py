"""A traced access leaves the rest of the program's context as it was, on every backend:
general registers, rflags, MXCSR, the x87 control word and stack, zmm0-31 and k0-k7
(context.c; the agent returns from its handler without rt_sigreturn, restoring all of it
itself)."""

from __future__ import annotations

from pathlib import Path

from conftest import trace


def test_a_traced_access_keeps_every_other_register(build, tmp_path: Path, mode: str) -> None:
    exe = build("context")
    rounds = 3000
    run = trace([str(exe), str(tmp_path / "ctx-regs.bin"), str(rounds)], "ctx-regs.bin", tmp_path, mode)
    assert run.status == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"{rounds} rounds, everything kept")
    # a store and a load per round, and the C check's read of the stored word
    assert f"{3 * rounds} accesses traced ({2 * rounds} reads, {rounds} writes), 0 lost" in run.stderr
