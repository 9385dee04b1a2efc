"""The optional libraries the tools use, and the one line that names a missing one."""

from __future__ import annotations

import importlib
from types import ModuleType

from kmmio.errors import UsageError

#: module → (PyPI package, kmmio extra that installs it; numpy: both do, ``plot`` for plot).
PACKAGES = {
    "pyarrow": ("pyarrow", "export"),
    "perfetto": ("perfetto", "export"),
    "numpy": ("numpy", "export"),
    "matplotlib": ("matplotlib", "plot"),
}


class MissingExtraError(UsageError):
    """A tool needs a library that is not installed; ``str()`` is one line naming the
    package and the extra that brings it."""

    def __init__(self, what: str, module: str) -> None:
        top = module.split(".")[0]
        package, extra = PACKAGES.get(top, (top, "export"))
        if what.split()[0] == "plot":  # numpy comes with either extra: name the tool's own
            extra = "plot"
        super().__init__(f"{what} needs {package}, which is not installed: pip install 'kmmio[{extra}]'")
        self.module = top
        self.extra = extra


def need(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (e.g. ``"export --format parquet"``), or raise
    :class:`MissingExtraError`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(what, module) from None
