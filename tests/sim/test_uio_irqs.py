"""kmmio.sim.uio's interrupt bookkeeping without a process: the count, enable and disable
(UIO's irqcontrol), interrupts raised while disabled kept for the enable."""

from __future__ import annotations

from kmmio.demo.crc.model import CrcEngine
from kmmio.sim.device import SimDevice
from kmmio.sim.uio import UioIrqs


class Control(CrcEngine):
    def __init__(self) -> None:
        super().__init__()
        self.told: list[int] = []

    def irq_control(self, value: int) -> None:
        self.told.append(value)


def test_count_enable_disable_and_latched_interrupts() -> None:
    model = Control()
    dev = SimDevice("/dev/uio0", model, "Control")
    irqs = UioIrqs([dev])
    irqs.irq(dev)
    irqs.irq(dev)
    assert dev.irq_count == 2
    irqs.control(dev, 0)
    irqs.irq(dev)
    irqs.irq(dev)
    assert dev.irq_count == 2  # disabled: kept
    irqs.control(dev, 1)
    assert dev.irq_count == 4  # given at the enable
    irqs.control(dev, 1)
    assert dev.irq_count == 4
    assert model.told == [0, 1, 1]
