"""Which library reads a map file, and ``FILE[@BASE]`` specs.

The kind of map comes from the file name where it says (``.rdl``, ``.svd``), else from
the XML root element (``<device>``: CMSIS-SVD, ``<component>``: IP-XACT): SVD files are
often named ``.xml`` too.  Only the first few KB are looked at, with no XML library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from kmmio.maps.errors import MapError
from kmmio.maps.model import RegisterMap

#: How many bytes of a file are looked at to tell its kind.
_SNIFF_BYTES = 16384

#: The first element of an XML document: not ``<?xml``, ``<!--``, ``<!DOCTYPE``.
_ROOT_TAG = re.compile(rb"<(?![?!])([A-Za-z_][\w:.-]*)")


def map_kind(path: str, head: bytes) -> str:
    """``"rdl"``, ``"ipxact"`` or ``"svd"`` for a file named ``path`` starting with ``head``."""
    lower = path.lower()
    if lower.endswith(".rdl"):
        return "rdl"
    if lower.endswith(".svd"):
        return "svd"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    m = _ROOT_TAG.search(_strip_comments(text)) if text.startswith(b"<") else None
    if m is not None:
        local = m.group(1).split(b":")[-1]
        if local == b"device":
            return "svd"
        if local == b"component":
            return "ipxact"
        raise MapError(
            path,
            f"an XML file whose root is <{m.group(1).decode(errors='replace')}>, "
            "neither an IP-XACT <component> nor a CMSIS-SVD <device>",
        )
    raise MapError(
        path, "not a register map kmmio reads: a SystemRDL (.rdl), IP-XACT (.xml) or CMSIS-SVD (.svd) file"
    )


def _strip_comments(text: bytes) -> bytes:
    return re.sub(rb"<!--.*?-->", b"", text, flags=re.S)


def _loader(kind: str) -> Callable[[str], RegisterMap]:
    if kind == "svd":
        from kmmio.maps.svd import load_svd

        return load_svd
    from kmmio.maps.rdl import load_ipxact, load_rdl

    return load_rdl if kind == "rdl" else load_ipxact


def load_map(path: str, base: int = 0) -> RegisterMap:
    """The registers of a SystemRDL, IP-XACT or CMSIS-SVD file, ``base`` bytes higher
    than the map's own addresses.  Any trouble (no such file, a malformed map, the
    ``maps`` extra not installed) is one :class:`~kmmio.maps.errors.MapError`."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise MapError(path, f"cannot read it: {exc.strerror or exc}") from None
    return _loader(map_kind(path, head))(path).rebased(base)


def parse_map_spec(spec: str) -> tuple[str, int]:
    """``FILE@BASE`` to ``(FILE, BASE)``; BASE is ``0x`` hex, ``0o``/``0b`` or decimal.
    A spec with no ``@``, or whose part after the last ``@`` is no number, is all file."""
    path, at, tail = spec.rpartition("@")
    if at and path:
        try:
            base = int(tail, 0)
        except ValueError:
            return spec, 0
        if base < 0:
            raise MapError(path, f"base {tail} is negative")
        return path, base
    return spec, 0


def load_maps(specs: Iterable[str]) -> RegisterMap:
    """One map from several ``FILE[@BASE]`` specs (``--map`` given more than once)."""
    return RegisterMap.union(load_map(*parse_map_spec(s)) for s in specs)
