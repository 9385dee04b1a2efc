"""The log reader on 100,000 mutated logs: it parses them or refuses them with a line number."""

from __future__ import annotations

import random

from kmmio.errors import TraceFormatError
from kmmio.trace import read_records

VALID = [
    "VERSION 20070824",
    "PCIDEV 0010 80865a84 86 91000004 0 8000000c 0 f001 0 c0002 1000000 0 10000000 0 40 0 20000 i915",
    "MAP 1037.681661 1 0x90000000 0xffffb7b187000000 0x1000000 0x0 0",
    "R 4 1037.681772 1 0x90000300 0x37002 0x0 0",
    "W 1 0.000001 12 0x0 0x80 0x55d0c0de 4242",
    "UNMAP 12.000100 -1 0x0 0",
    "UNKNOWN 3.000000 1 0x400 c4,e2,69 0x401000 7",
    "MARK 0.000000 Lost 3 events.",
    "# tracer: mmiotrace",
]


def _mutate(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[rng.randrange(len(data))]
        elif op == 1:
            data.insert(at, rng.randrange(256))
        elif op == 2 and data:
            data[rng.randrange(len(data))] = rng.choice(b" \t\n\r0x-.,#9fFgz\x00\xff")
        elif op == 3:
            data[at:at] = rng.choice([b" ", b"0x", b"-1", b"99999999999999999999", b"\n", b"."])
        else:
            cut = rng.randrange(len(data) + 1)
            data = data[:cut]
    return bytes(data)


def test_reader_survives_100000_fuzzed_inputs() -> None:
    rng = random.Random(20261126)
    parsed = refused = 0
    for _ in range(100_000):
        lines = rng.sample(VALID, rng.randint(1, 3))
        blob = _mutate(rng, "\n".join(lines).encode())
        try:
            list(read_records(blob.splitlines()))
            parsed += 1
        except TraceFormatError as exc:
            assert exc.line_no >= 1
            refused += 1
    assert parsed > 1000 and refused > 1000  # both outcomes are exercised
