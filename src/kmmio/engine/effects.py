"""What the engine asks its driver to do, and what it decided about a fault.

The engine never touches a process: it returns these values and the driver carries them
out (for a process tracer, an ``mprotect`` injected into the tracee).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kmmio.engine.probe import Probe


@dataclass(frozen=True, slots=True)
class Protect:
    """Set the protection of the pages ``[start, start + length)`` to ``prot``.

    Arming is ``Protect(page, size, PROT_NONE)``; disarming restores the saved protection
    (``arm_kmmio_fault_page`` / ``disarm_kmmio_fault_page``).
    """

    start: int
    length: int
    prot: int

    @property
    def end(self) -> int:
        return self.start + self.length


class FaultAction(enum.Enum):
    """The engine's verdict on a fault (``kmmio_handler``'s return value and more)."""

    #: Not a kmmio page: the fault belongs to the program (the kernel's "not handled").
    NOT_MINE = "not-mine"
    #: A kmmio page, but the fault is genuine (secondary hit): deliver it to the program.
    GENUINE = "genuine"
    #: Raised while a since-released page was armed: run the instruction again.
    RESTART = "restart"
    #: A traced access: a fault context is active; open the pages and step (or emulate).
    TRACE = "trace"
    #: The active context's instruction touched another armed page: open it too, step again.
    RECURSIVE = "recursive"


@dataclass(frozen=True, slots=True)
class FaultDecision:
    action: FaultAction
    effects: tuple[Protect, ...] = ()
    probe: Probe | None = None


class StepCondition(enum.Enum):
    """How a fault context ended; passed to ``post_handler`` as kmmio passes DR6."""

    #: The instruction ran with its pages open (the kmmio way).
    STEPPED = "stepped"
    #: The tracer performed the access itself; the pages never opened.
    EMULATED = "emulated"
    #: The instruction did not complete: a genuine fault or the thread went away.
    ABORTED = "aborted"
    #: The thread went away in the middle: whether the access happened is not known.
    LOST = "lost"
