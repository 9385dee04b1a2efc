"""The pure parts import nothing that reaches the operating system (h11's rule)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "kmmio"
PURE = ["engine", "x86", "trace", "syscalls"]
FORBIDDEN = {
    "ctypes",
    "cffi",
    "os",
    "signal",
    "subprocess",
    "socket",
    "mmap",
    "fcntl",
    "resource",
    "kmmio.backend",
    "kmmio.ptrace",
    "kmmio.agent",
    "kmmio.launch",
    "kmmio.robust",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_os_code(package: str) -> None:
    files = sorted((SRC / package).glob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            root = name.split(".")[0]
            assert root not in FORBIDDEN and not any(
                name == f or name.startswith(f + ".") for f in FORBIDDEN
            ), f"{path.name} imports {name}"


def test_only_the_backend_uses_ctypes_or_cffi() -> None:
    """The backend is the one door to the OS.  Besides it, only the tools' build script
    names cffi (their compiled part parses and counts bytes: it calls no OS function), and
    the demo's drivers use ctypes as the drivers they stand for do."""
    for path in SRC.rglob("*.py"):
        if "backend" in path.parts:
            continue
        roots = {n.split(".")[0] for n in _imports(path)}
        assert "cffi" not in roots or path.relative_to(SRC).as_posix() == "tools/_tools_build.py", path
        assert "ctypes" not in roots or "demo" in path.relative_to(SRC).parts, path
