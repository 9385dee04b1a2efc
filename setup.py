"""The compiled parts: the cffi modules (``kmmio.backend._sys``, ``kmmio.tools._tools``,
``kmmio.backend._ring``) and the in-process agent, a plain shared library the traced program
loads (``LD_PRELOAD``), built as an extension so that ``pip install`` compiles it too.
Everything else is in pyproject.toml."""

from setuptools import Extension, setup

agent = Extension(
    "kmmio.agent.libkmmio_agent",
    sources=["src/kmmio/agent/_agent.c"],
    # one translation unit: _agent.c includes its other parts
    depends=[
        *(f"src/kmmio/agent/_agent_{part}.c" for part in ("ranges", "syscalls", "access", "calls", "start")),
        "src/kmmio/agent/_resume.h",
        "src/kmmio/backend/ring_layout.h",
    ],
    include_dirs=["src/kmmio/backend"],  # ring_layout.h, shared with the tracer's end
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-fno-strict-aliasing"],
    extra_link_args=["-ldl", "-lpthread"],
    py_limited_api=False,
)

setup(
    cffi_modules=[
        "src/kmmio/backend/_sys_build.py:ffi",
        "src/kmmio/tools/_tools_build.py:ffi",
        "src/kmmio/backend/_ring_build.py:ffi",
    ],
    ext_modules=[agent],
)
