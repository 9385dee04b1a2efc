"""SystemRDL (``systemrdl-compiler``) and IP-XACT (``peakrdl-ipxact``, into the same
SystemRDL model) to a :class:`~kmmio.maps.model.RegisterMap`.

The libraries are imported here, inside the loaders, so that ``import kmmio`` never
needs them; a missing one is a :class:`~kmmio.maps.errors.MissingExtraError`.  The
compiler's messages are collected, not printed: a malformed file is one
:class:`~kmmio.maps.errors.MapError` naming the file and line of its first error.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import ParseError

from kmmio.maps.errors import MapError, MissingExtraError
from kmmio.maps.model import EnumValue, Field, Register, RegisterMap

if TYPE_CHECKING:
    from systemrdl.node import AddrmapNode, RegNode


def load_rdl(path: str) -> RegisterMap:
    """The registers of a SystemRDL file's top address map (the last one it defines),
    with their absolute addresses; paths start with the top map's name (``tdev.CTRL``)."""
    return _load(path, ipxact=False)


def load_ipxact(path: str) -> RegisterMap:
    """The registers of an IP-XACT (1685-2009/2014, or SPIRIT) component's memory map,
    read by ``peakrdl-ipxact`` into SystemRDL; paths start with the address block's name
    (``tdev.CTRL``): the component and memory map levels are left out.  A component with
    several memory maps gives its last one (the one SystemRDL elaborates by default)."""
    return _load(path, ipxact=True)


def _load(path: str, ipxact: bool) -> RegisterMap:
    try:
        from systemrdl.compiler import RDLCompiler
        from systemrdl.messages import MessagePrinter, RDLCompileError, Severity
        from systemrdl.source_ref import SourceRefBase
    except ImportError as exc:
        raise MissingExtraError(path, exc.name or "systemrdl") from None
    importer: Any = None
    if ipxact:
        try:
            from peakrdl_ipxact import IPXACTImporter
        except ImportError as exc:
            raise MissingExtraError(path, exc.name or "peakrdl_ipxact") from None
        importer = IPXACTImporter

    class _Collect(MessagePrinter):
        """Keeps the compiler's errors (file, line, text) instead of printing them."""

        def __init__(self) -> None:
            self.errors: list[tuple[str | None, int | None, str]] = []

        def print_message(self, severity: Severity, text: str, src_ref: SourceRefBase | None) -> None:
            if severity >= Severity.ERROR:
                where: str | None = getattr(src_ref, "path", None)
                line: int | None = None
                try:
                    line = getattr(src_ref, "line", None)
                except Exception:  # a source reference that cannot place itself
                    line = None
                self.errors.append((where, line, text))

    printer = _Collect()
    rdlc = RDLCompiler(message_printer=printer)
    try:
        if importer is not None:
            importer(rdlc).import_file(path)
        else:
            rdlc.compile_file(path)
        top = rdlc.elaborate().top
    except RDLCompileError as exc:
        if printer.errors:
            where, line, text = printer.errors[0]
            more = len(printer.errors) - 1
            text = text.splitlines()[0] if text else "error"
            if more:
                text += f" (and {more} more error{'s' if more > 1 else ''})"
            raise MapError(where or path, text, line) from None
        raise MapError(path, str(exc) or "not a valid register map") from None
    except ParseError as exc:
        text = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise MapError(path, f"not well-formed XML: {text}", exc.position[0]) from None
    except Exception as exc:  # the library's own failure on a file it could not take
        raise MapError(path, f"cannot be read: {type(exc).__name__}: {exc}") from None
    return _from_top(top, strip_top=ipxact)


def _access(node: Any) -> str:
    """A field's ``sw`` property as one of :data:`~kmmio.maps.model.ACCESS_TYPES`."""
    sw = node.get_property("sw")
    return str(getattr(sw, "name", sw))


def _register(reg: RegNode, path: str) -> Register:
    fields: list[Field] = []
    for f in reg.fields():
        encode = f.get_property("encode")
        enums = tuple(EnumValue(m.name, int(m.value)) for m in encode) if encode is not None else ()
        fields.append(Field(f.inst_name, f.lsb, f.width, _access(f), enums))
    r, w = reg.has_sw_readable, reg.has_sw_writable
    access = "rw" if r and w else "r" if r else "w" if w else "na"
    return Register(path, reg.absolute_address, reg.size, tuple(fields), access)


def _from_top(top: AddrmapNode, strip_top: bool) -> RegisterMap:
    from systemrdl.node import RegNode

    prefix = top.get_path() + "." if strip_top else ""
    regs: list[Register] = []
    for node in top.descendants(unroll=True):
        if isinstance(node, RegNode) and not node.is_virtual:
            path = node.get_path()
            regs.append(_register(node, path[len(prefix) :] if path.startswith(prefix) else path))
    return RegisterMap(tuple(regs))
