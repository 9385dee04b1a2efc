"""Remake tdev.xml (IP-XACT, exported from tdev.rdl by peakrdl-ipxact) and tdev.log
(written by kmmio's TraceWriter).  Run from anywhere: ``python tests/maps/data/regen.py``.
tdev.svd is written by hand and tdev.rdl is the source; neither is touched."""

from __future__ import annotations

from pathlib import Path

from kmmio.trace import Access, Kind, Map, Mark, TraceWriter, Unmap

HERE = Path(__file__).parent
BASE = 0xF7C00000  # where the device sits in the log (tdev.svd's baseAddress)
PC = 0x4011A0


def export_ipxact() -> None:
    from peakrdl_ipxact import IPXACTExporter
    from systemrdl.compiler import RDLCompiler

    rdlc = RDLCompiler()
    rdlc.compile_file(str(HERE / "tdev.rdl"))
    top = rdlc.elaborate().top
    IPXACTExporter(vendor="kmmio.example", library="tests").export(top, str(HERE / "tdev.xml"))


#: (kind, width, offset from BASE, value, tid)
ACCESSES = [
    (Kind.WRITE, 4, 0x0, 0x10000009, 4242),  # CTRL whole: EN=1 MODE=FAST DIV=0x1000
    (Kind.READ, 4, 0x4, 0x02000501, 4242),  # STATUS whole
    (Kind.WRITE, 1, 0x1, 0xFF, 4242),  # CTRL[15:8]: IRQ_MASK alone
    (Kind.WRITE, 2, 0x2, 0x0040, 4242),  # CTRL[31:16]: DIV alone
    (Kind.READ, 1, 0x0, 0x0D, 4243),  # CTRL[7:0]: MODE=3, a value the enum does not name
    (Kind.READ, 2, 0x1, 0x40FF, 4243),  # CTRL[23:8]: IRQ_MASK whole, DIV partial
    (Kind.READ, 8, 0x0, 0x0200050100400009, 4242),  # CTRL and STATUS
    (Kind.READ, 4, 0x6, 0x81230200, 4242),  # STATUS[31:16] and LEN16
    (Kind.WRITE, 2, 0x8, 0x8010, 4242),  # LEN16 whole
    (Kind.READ, 4, 0x8, 0x8010, 4242),  # LEN16 and 2 bytes of the gap
    (Kind.WRITE, 4, 0xC, 0x5, 4242),  # the gap alone
    (Kind.WRITE, 4, 0x14, 0x03123456, 4242),  # QUEUE[1]
    (Kind.WRITE, 8, 0x10, 0x0300000102ABCDEF, 4243),  # QUEUE[0] and QUEUE[1]
    (Kind.READ, 4, 0x10, 0x0, 4242),  # QUEUE[0]
]


def write_log() -> None:
    with open(HERE / "tdev.log", "w", encoding="ascii") as f:
        w = TraceWriter(f)
        ts = 12_000_000
        w.write(Map(ts, 1, BASE, 0x7F3A2C000000, 0x1000, PC - 0x40, 4242))
        for i, (kind, width, off, value, tid) in enumerate(ACCESSES):
            ts += 104 if i == 0 else 37
            w.write(Access(kind, width, ts, 1, BASE + off, value, PC + 8 * i, tid))
            if i == 6:
                w.write(Mark(ts + 1, "driver: link up"))
        w.write(Unmap(ts + 50, 1, PC + 0x200, 4242))
        w.flush()


if __name__ == "__main__":
    export_ipxact()
    write_log()
