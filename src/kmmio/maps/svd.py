"""CMSIS-SVD (``cmsis-svd``) to a :class:`~kmmio.maps.model.RegisterMap`.

``cmsis-svd`` (the CMSIS-SVD project's own parser) resolves ``derivedFrom`` (peripherals,
clusters, registers, fields, enumerated values), propagates the register properties
(size, access) from device to peripheral to register to field, and expands ``dim``
arrays of peripherals, clusters, registers and fields.  Registers get absolute addresses
(the peripheral's ``baseAddress`` plus the offsets), so a ``/dev/mem`` log meets them as
they are; paths are ``PERIPHERAL[.CLUSTER...].REGISTER`` (the device's name left out,
as debuggers print them).  Enumerated values of every ``usage`` are merged into one
table per field (the first name for a value wins); a ``<isDefault>`` entry names no
value and is left out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kmmio.maps.errors import MapError, MissingExtraError
from kmmio.maps.model import EnumValue, Field, Register, RegisterMap, combine_access

if TYPE_CHECKING:
    from cmsis_svd.model import SVDField, SVDRegister, SVDRegisterCluster

#: SVD's ``access`` values in SystemRDL's words (see ``ACCESS_TYPES``).
_ACCESS = {
    "read-only": "r",
    "write-only": "w",
    "read-write": "rw",
    "writeOnce": "w1",
    "read-writeOnce": "rw1",
}

#: An SVD register without a ``size`` anywhere up its tree (the SVD default).
_DEFAULT_SIZE_BITS = 32


def load_svd(path: str) -> RegisterMap:
    """The registers of every peripheral of an SVD device, at absolute addresses."""
    try:
        from cmsis_svd.parser import SVDParser
        from lxml.etree import XMLSyntaxError
    except ImportError as exc:
        raise MissingExtraError(path, exc.name or "cmsis_svd") from None
    try:
        device = SVDParser.for_xml_file(path).get_device()
    except XMLSyntaxError as exc:
        text = re.sub(r", line \d+, column \d+$", "", str(exc.msg))
        raise MapError(path, f"not well-formed XML: {text}", exc.lineno) from None
    except Exception as exc:  # the parser's own failure on a file it could not take
        raise MapError(path, f"not a CMSIS-SVD device: {type(exc).__name__}: {exc}") from None
    if device.name is None and not device.peripherals:
        raise MapError(path, "not a CMSIS-SVD device (no <device> with <peripherals>)")
    regs: list[Register] = []
    for p in device.get_peripherals():
        if p.base_address is None:
            raise MapError(path, f"peripheral {p.name!r} has no <baseAddress>")
        for item in p.registers or ():
            _walk(path, item, p.base_address, str(p.name), regs)
    return RegisterMap(tuple(regs))


def _walk(path: str, item: object, base: int, prefix: str, out: list[Register]) -> None:
    """Registers of ``item`` (register, register array, cluster, cluster array) whose
    offsets count from ``base``.

    ``cmsis-svd`` already added a cluster's own offset to its direct registers and
    prefixed their names with ``CLUSTER_``; here sub-clusters get their parents' offsets
    (which it leaves out) and the names their dotted form.
    """
    from cmsis_svd.model import SVDRegister, SVDRegisterArray, SVDRegisterCluster, SVDRegisterClusterArray

    if isinstance(item, SVDRegister):
        out.append(_register(path, item, base, prefix, None))
    elif isinstance(item, SVDRegisterArray):
        for r in item.registers:
            out.append(_register(path, r, base, prefix, None))
    elif isinstance(item, SVDRegisterCluster):
        here = f"{prefix}.{item.name}"
        for reg in item.registers:
            for r in reg.registers if isinstance(reg, SVDRegisterArray) else [reg]:
                out.append(_register(path, r, base, here, str(item.name)))
        for sub in item.clusters:
            _walk(path, sub, base + _offset(path, item), here, out)
    elif isinstance(item, SVDRegisterClusterArray):
        for c in item.clusters:
            _walk(path, c, base, prefix, out)


def _offset(path: str, item: SVDRegister | SVDRegisterCluster) -> int:
    if item.address_offset is None:
        raise MapError(path, f"{item.name!r} has no <addressOffset>")
    return int(item.address_offset)


def _register(path: str, reg: SVDRegister, base: int, prefix: str, cluster: str | None) -> Register:
    name = str(reg.name)
    if cluster is not None and name.startswith(cluster + "_"):
        name = name[len(cluster) + 1 :]
    size_bits = reg.size if reg.size is not None else _DEFAULT_SIZE_BITS
    if size_bits <= 0 or size_bits % 8:
        raise MapError(path, f"register {prefix}.{name} has a size of {size_bits} bits (not whole bytes)")
    reg_access = _ACCESS.get(reg.access.value, "rw") if reg.access is not None else None
    fields: list[Field] = []
    for f in reg.get_fields():
        if f.bit_offset is None or f.bit_width is None:
            raise MapError(path, f"field {prefix}.{name}.{f.name} has no bit position")
        access = _ACCESS.get(f.access.value, "rw") if f.access is not None else (reg_access or "rw")
        fields.append(Field(str(f.name), int(f.bit_offset), int(f.bit_width), access, _enums(f)))
    access = reg_access or (combine_access(f.access for f in fields) if fields else "rw")
    return Register(f"{prefix}.{name}", base + _offset(path, reg), size_bits // 8, tuple(fields), access)


def _enums(f: SVDField) -> tuple[EnumValue, ...]:
    seen: dict[int, str] = {}
    for container in f.enumerated_values or ():
        for ev in container.enumerated_values:
            if ev.value is not None and ev.name is not None and ev.value not in seen:
                seen[int(ev.value)] = str(ev.name)
    return tuple(EnumValue(n, v) for v, n in seen.items())
