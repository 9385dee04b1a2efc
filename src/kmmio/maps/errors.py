"""Why a register map could not be had: one line each, naming the file (and the line)."""

from __future__ import annotations

from kmmio.errors import KmmioError

#: The optional dependencies that read register maps: ``pip install 'kmmio[maps]'``.
EXTRA = "maps"


class MapError(KmmioError):
    """A register map file is missing, unreadable or malformed.

    ``str()`` is one line: ``FILE[:LINE]: what is wrong``, as compilers print it, so a
    command line can show it as is.
    """

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.message = message


#: The packages (PyPI names) of the modules the loaders import.
PACKAGES = {
    "systemrdl": "systemrdl-compiler",
    "peakrdl_ipxact": "peakrdl-ipxact",
    "cmsis_svd": "cmsis-svd",
    "lxml": "lxml",
}


class MissingExtraError(MapError):
    """The library that reads this kind of map is not installed (the ``maps`` extra);
    ``module`` is the top-level module that could not be imported."""

    def __init__(self, path: str, module: str) -> None:
        top = module.split(".")[0]
        package = PACKAGES.get(top, top)
        super().__init__(
            path,
            f"reading it needs {package}, which is not installed: pip install 'kmmio[{EXTRA}]'",
        )
        self.module = top
