"""Run a program against device models: the Python API and what ``kmmio sim`` and
``kmmio replay`` share.

``run(argv, devices={"/dev/uio0": model})`` starts the program with each path standing for
its device (:mod:`kmmio.sim.placement`), traces it with the models answering every access
(:class:`~kmmio.sim.serving.SimServing`), and returns a :class:`Result`: the program's exit
status, every access as the models saw it, and the log.  A model that raises, or an access
no model can answer, ends the run: the program is killed and the error is raised
(:class:`~kmmio.sim.device.ModelFailure` with the model's exception as its cause, or
:class:`~kmmio.sim.device.NotServable`), with what was traced so far in the log.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from kmmio.mmiotrace import TracedAccess
from kmmio.ptrace.faults import Mode
from kmmio.ptrace.tracer import Tracer
from kmmio.sim import placement
from kmmio.sim.device import SimDevice
from kmmio.sim.load import devices as load_devices
from kmmio.sim.serving import SimServing
from kmmio.trace.records import PciDev, Record, Version
from kmmio.trace.writer import TraceWriter

_BDF = re.compile(
    r".*/[0-9a-f]{4}:(?P<bus>[0-9a-f]{2}):(?P<dev>[0-9a-f]{2})\.(?P<fn>[0-7])/resource(?P<bar>[0-5])(_wc)?"
)


@dataclass
class Result:
    """What a simulated run gave: the program's exit ``status`` (128 + N if signal N killed
    it), every access the models answered, in order, and the ``log`` text (empty when
    it went to a file)."""

    status: int
    accesses: list[TracedAccess] = field(default_factory=list)
    log: str = ""

    def reads(self, path: str | None = None) -> list[TracedAccess]:
        return [a for a in self.accesses if a.kind.value == "R" and (path is None or a.path == path)]

    def writes(self, path: str | None = None) -> list[TracedAccess]:
        return [a for a in self.accesses if a.kind.value == "W" and (path is None or a.path == path)]


def pci_lines(devices: Sequence[SimDevice]) -> list[PciDev]:
    """A ``PCIDEV`` line per simulated PCI device (``.../BDF/resourceN``): its BAR N at the
    model's ``phys`` with the model's size; ``vendor_device`` (e.g. ``0x8086100e``) and
    ``irq`` from the model when it has them."""
    found: dict[int, tuple[list[int], list[int], Any]] = {}
    for d in devices:
        m = _BDF.fullmatch(d.path)
        if m is None:
            continue
        devfn = int(m["bus"], 16) << 8 | int(m["dev"], 16) << 3 | int(m["fn"])
        starts, sizes, _ = found.setdefault(devfn, ([0] * 7, [0] * 7, d.model))
        bar = int(m["bar"])
        starts[bar], sizes[bar] = d.phys, d.size
    return [
        PciDev(
            devfn,
            int(getattr(model, "vendor_device", 0)),
            int(getattr(model, "irq_line", 0)),
            tuple(s),
            tuple(z),
        )
        for devfn, (s, z, model) in sorted(found.items())
    ]


class Simulation:
    """One run's devices, their files and the tracer (see :func:`run`)."""

    def __init__(
        self,
        devices: Sequence[SimDevice],
        emit: Callable[[Record], None],
        on_access: Callable[[TracedAccess], None] | None = None,
    ) -> None:
        self.devices = list(devices)
        self._tmp = tempfile.TemporaryDirectory(prefix="kmmio-sim-")
        for i, d in enumerate(self.devices):
            d.make_backing(self._tmp.name, i)
        places = [placement.DevicePlacement(d.path, d.backing) for d in self.devices]
        for d, p in zip(self.devices, places, strict=True):
            d.seen = placement.seen_path(p)
        scratch = os.path.join(self._tmp.name, "scratch")
        os.mkdir(scratch)
        steps = placement.plan(places, scratch)
        self.serving = SimServing(self.devices, lambda: placement.apply(steps))
        self.tracer = Tracer(
            [d.seen for d in self.devices], emit, on_access, mode=Mode.EMULATE, serving=self.serving
        )

    def close(self) -> None:
        self._tmp.cleanup()


def run(
    argv: Sequence[str],
    devices: Mapping[str, Any],
    *,
    log: str | TextIO | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Result:
    """Run ``argv`` with ``devices`` (path → model object, or a ``FILE.py:NAME`` spec) and
    return its :class:`Result`; ``log``: a path or stream for the log (kept in
    ``Result.log`` when ``None``); ``timeout``: seconds before the program gets SIGTERM."""
    devs = load_devices([(os.path.normpath(p), m) for p, m in devices.items()])
    with contextlib.ExitStack() as stack:
        if log is None:
            stream: TextIO = io.StringIO()
        elif isinstance(log, str):
            stream = stack.enter_context(open(log, "w", encoding="ascii"))
        else:
            stream = log
        writer = TraceWriter(stream, header=[Version(), *pci_lines(devs)])
        result = Result(0)
        sim = Simulation(devs, writer.write, result.accesses.append)
        stack.callback(sim.close)
        try:
            sim.tracer.spawn(list(argv), dict(env) if env is not None else None)
            writer.write_header()
            result.status = sim.tracer.run(timeout)
        finally:
            writer.flush()
        if isinstance(stream, io.StringIO):
            result.log = stream.getvalue()
    return result
