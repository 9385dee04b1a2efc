"""A simulation's side of the trace: the models serve their devices' mappings.

:class:`SimServing` is the :class:`~kmmio.serve.Serving` of ``kmmio sim`` (and of
``kmmio replay``, whose "model" is the recording): the devices' mappings are performed
through :class:`~kmmio.sim.device.ModelView`, placed in the log where the models say, the
program's own path to each device set up before it starts (:mod:`kmmio.sim.placement`),
UIO devices' interrupts answered (:mod:`kmmio.sim.uio`), and anything that would reach a
device without its model (a single-stepped instruction, a syscall handed its memory) refused
in one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kmmio.mmiotrace import now_us
from kmmio.serve import Serving
from kmmio.sim import uio
from kmmio.sim.device import ModelFailure, ModelView, NotServable, SimDevice, said

if TYPE_CHECKING:
    from kmmio.devices.model import Place
    from kmmio.mmiotrace import Mapping
    from kmmio.ptrace.process import Thread

#: How often models with ``tick`` are called while the program makes no access.
TICK = 0.001


class SimServing(Serving):
    """See the module docstring; ``prepare`` runs in the program's process before exec."""

    def __init__(self, devices: list[SimDevice], prepare: Callable[[], None] | None = None) -> None:
        self.devices = devices
        self.by_path = {d.seen or d.path: d for d in devices}
        self._prepare = prepare
        self.irqs = uio.UioIrqs(devices)
        if any(d.path.startswith("/dev/uio") for d in devices):
            self.syscalls = uio.SYSCALLS
        for d in devices:
            d.model.irq = functools.partial(self.irqs.irq, d)
        self._ticking = [d for d in devices if callable(getattr(d.model, "tick", None))]
        if self._ticking:
            self.tick_interval = TICK

    def prepare_child(self) -> None:
        if self._prepare is not None:
            self._prepare()

    def place(self, path: str, offset: int) -> Place | None:
        device = self.by_path.get(path)
        return device.place(offset) if device is not None else None

    def view(self, mapping: Mapping, make: Callable[[Mapping], Any]) -> Any:
        device = self.by_path.get(mapping.path)
        if device is None:
            return make(mapping)
        bus = mapping.proc.bus
        return ModelView(
            device,
            mapping.virt,
            mapping.end,
            mapping.offset - device.base,
            self._ticks(device),
            lambda: bus.current,
        )

    def _ticks(self, device: SimDevice) -> Callable[[], None] | None:
        tick = getattr(device.model, "tick", None)
        return (lambda: tick(now_us())) if callable(tick) else None

    def kernel_reach(self, syscall: str, mappings: list[Mapping]) -> None:
        for m in mappings:
            if m.path in self.by_path:
                raise NotServable(
                    f"syscall {syscall} hands memory of the simulated {m.path} to the kernel, which "
                    "would see the file standing for the device, not its model"
                )

    def syscall_entry(self, thread: Thread, number: int, args: tuple[int, ...]) -> bool:
        return self.irqs.entry(thread, number, args)

    def syscall_exit(self, thread: Thread) -> bool:
        return self.irqs.exit(thread)

    def forget(self, pid: int) -> None:
        self.irqs.forget(pid)

    def tick(self) -> None:
        now = now_us()
        for d in self._ticking:
            try:
                d.model.tick(now)
            except Exception as exc:
                raise ModelFailure(d.path, "tick", 0, 0, said(exc), exc) from exc
