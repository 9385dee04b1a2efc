"""The compiled parts (``kmmio.backend._sys``, ``kmmio.tools._tools``); everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["src/kmmio/backend/_sys_build.py:ffi", "src/kmmio/tools/_tools_build.py:ffi"])
