"""ProbeRegistry: O(log n) lookup, overlap refusal (kmmio only checks the start)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmmio.engine import Probe, ProbeRegistry
from kmmio.errors import ProbeError


def test_lookup_finds_the_covering_probe() -> None:
    reg = ProbeRegistry()
    a, b = Probe(0x1000, 0x10), Probe(0x2004, 4)
    reg.add(b)
    reg.add(a)
    assert reg.get_probe(0x1000) is a
    assert reg.get_probe(0x100F) is a
    assert reg.get_probe(0x1010) is None
    assert reg.get_probe(0x2003) is None
    assert reg.get_probe(0x2007) is b
    assert reg.get_probe(0) is None


@pytest.mark.parametrize(
    ("addr", "length"),
    [(0x1000, 1), (0xFFF, 2), (0x100F, 0x100), (0x800, 0x1000), (0x1004, 4)],
)
def test_overlap_anywhere_is_refused(addr: int, length: int) -> None:
    reg = ProbeRegistry()
    reg.add(Probe(0x1000, 0x10))
    with pytest.raises(ProbeError, match="overlaps"):
        reg.add(Probe(addr, length))


def test_adjacent_probes_are_fine_and_empty_ones_are_not() -> None:
    reg = ProbeRegistry()
    reg.add(Probe(0x1000, 0x10))
    reg.add(Probe(0x1010, 0x10))
    reg.add(Probe(0xFF0, 0x10))
    assert len(reg) == 3
    with pytest.raises(ProbeError):
        reg.add(Probe(0x5000, 0))


def test_remove_unknown_probe() -> None:
    reg = ProbeRegistry()
    reg.add(Probe(0x1000, 0x10))
    with pytest.raises(ProbeError, match="not registered"):
        reg.remove(Probe(0x1000, 0x10))


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=30), st.integers(0, 250))
def test_lookup_agrees_with_a_linear_walk(spans: list[tuple[int, int]], addr: int) -> None:
    reg = ProbeRegistry()
    added = []
    for start, length in spans:
        p = Probe(start, length)
        try:
            reg.add(p)
        except ProbeError:
            assert any(q.addr < p.end and q.end > p.addr for q in added)
            continue
        added.append(p)
    linear = next((p for p in added if p.addr <= addr < p.end), None)
    assert reg.get_probe(addr) is linear
