"""Test a driver without its hardware: device models and recorded traces answer a traced
program's accesses (``kmmio sim``, ``kmmio replay``).

``kmmio.sim.run(argv, devices={path: model})`` runs a program against models and returns
a :class:`Result` (:mod:`kmmio.sim.runner`); the ``kmmio_sim`` pytest fixture is the same
call.  The models' interface is in :mod:`kmmio.sim.device`, the replay's rules in
:mod:`kmmio.sim.replay`, hooks on real devices in :mod:`kmmio.sim.hooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kmmio.sim.runner import Result

__all__ = ["Result", "run"]


def run(argv: Any, devices: Any, **kwargs: Any) -> Result:
    """:func:`kmmio.sim.runner.run` (imported when first called: ``import kmmio.sim`` stays light)."""
    from kmmio.sim.runner import run as _run

    return _run(argv, devices, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Result":
        from kmmio.sim.runner import Result

        return Result
    raise AttributeError(name)
