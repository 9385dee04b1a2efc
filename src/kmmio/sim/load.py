"""``--device PATH=MODEL``: a device path and the model that answers it, loaded.

MODEL is ``FILE.py:NAME`` (a Python file, imported under a name of its own) or
``module:NAME`` (an importable module); NAME is a class, made with no arguments, or a
function returning the model.  What is wrong is one line (a
:class:`~kmmio.errors.UsageError`): a missing file, an import that fails (with the
exception's own line), no NAME there, a model without ``size``/``read``/``write``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from kmmio.errors import UsageError
from kmmio.sim.device import SimDevice


def parse_device(text: str) -> tuple[str, str]:
    """``PATH=MODEL`` → (absolute, normalised PATH, MODEL)."""
    path, eq, model = text.partition("=")
    if not eq or not path or not model:
        raise UsageError(f"--device {text!r}: expected PATH=MODEL (e.g. /dev/uio0=mydev.py:Device)")
    if not path.startswith("/"):
        raise UsageError(f"--device {text!r}: PATH must be absolute (the path the program opens)")
    return os.path.normpath(path), model


def load_model(spec: str) -> Any:
    """The model ``spec`` names (see the module docstring), checked."""
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name:
        raise UsageError(f"model {spec!r}: expected FILE.py:NAME or module:NAME")
    module = _import(spec, where)
    try:
        factory = getattr(module, name)
    except AttributeError:
        raise UsageError(f"model {spec!r}: {where} has no {name!r}") from None
    if not callable(factory):
        raise UsageError(f"model {spec!r}: {name} is neither a class nor a function")
    try:
        model = factory()
    except Exception as exc:
        raise UsageError(f"model {spec!r}: {name}() failed: {type(exc).__name__}: {exc}") from None
    check_model(model, spec)
    return model


def check_model(model: Any, spec: str) -> None:
    """A model has a positive int ``size`` and callable ``read`` and ``write``."""
    size = getattr(model, "size", None)
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise UsageError(f"model {spec!r}: needs 'size', a positive number of bytes (got {size!r})")
    for method in ("read", "write"):
        if not callable(getattr(model, method, None)):
            raise UsageError(f"model {spec!r}: needs a {method}() method")
    tick = getattr(model, "tick", None)
    if tick is not None and not callable(tick):
        raise UsageError(f"model {spec!r}: 'tick' must be a method")


def _import(spec: str, where: str) -> Any:
    if where.endswith(".py"):
        return import_file(where, f"model {spec!r}")
    try:
        return importlib.import_module(where)
    except Exception as exc:
        raise UsageError(f"model {spec!r}: cannot import {where}: {type(exc).__name__}: {exc}") from None


def import_file(where: str, what: str) -> Any:
    """The Python file ``where``, imported under a name of its own (once); ``what`` starts
    the one line of a failure."""
    if not os.path.isfile(where):
        raise UsageError(f"{what}: no file {where}")
    name = "kmmio_user_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(where))
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    found = importlib.util.spec_from_file_location(name, where)
    if found is None or found.loader is None:
        raise UsageError(f"{what}: cannot import {where}")
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module
    try:
        found.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"{what}: importing {where} failed: {type(exc).__name__}: {exc}") from None
    return module


def devices(specs: list[tuple[str, Any]]) -> list[SimDevice]:
    """Devices from (PATH, model or MODEL spec) pairs; a path given twice is refused."""
    out: list[SimDevice] = []
    seen: set[str] = set()
    for path, model in specs:
        if path in seen:
            raise UsageError(f"--device {path}: given twice")
        seen.add(path)
        if isinstance(model, str):
            out.append(SimDevice(path, load_model(model), model))
        else:
            check_model(model, type(model).__name__)
            out.append(SimDevice(path, model, type(model).__name__))
    return out
