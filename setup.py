"""The compiled part of the backend (``kmmio.backend._sys``); everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["src/kmmio/backend/_sys_build.py:ffi"])
