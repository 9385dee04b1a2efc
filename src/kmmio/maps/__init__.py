"""Register maps: which register (and which fields) each access of a log touched.

SystemRDL (``systemrdl-compiler``), IP-XACT (``peakrdl-ipxact``) and CMSIS-SVD
(``cmsis-svd``) files are read into one model, :class:`RegisterMap`; decoding works on
that model only.  The libraries are the ``maps`` extra (``pip install 'kmmio[maps]'``)
and are imported only when a map is loaded, so ``import kmmio.maps`` never needs them.
"""

from kmmio.maps.errors import MapError, MissingExtraError
from kmmio.maps.format import Decoder, decode_log, decoded_json, format_decoded
from kmmio.maps.load import load_map, load_maps, map_kind, parse_map_spec
from kmmio.maps.model import (
    ACCESS_TYPES,
    Decoded,
    EnumValue,
    Field,
    FieldValue,
    Hit,
    Register,
    RegisterMap,
    RegisterValue,
    decode_hits,
)
from kmmio.maps.rdl import load_ipxact, load_rdl
from kmmio.maps.svd import load_svd

__all__ = [
    "ACCESS_TYPES",
    "Decoded",
    "Decoder",
    "EnumValue",
    "Field",
    "FieldValue",
    "Hit",
    "MapError",
    "MissingExtraError",
    "Register",
    "RegisterMap",
    "RegisterValue",
    "decode_hits",
    "decode_log",
    "decoded_json",
    "format_decoded",
    "load_ipxact",
    "load_map",
    "load_maps",
    "load_rdl",
    "load_svd",
    "map_kind",
    "parse_map_spec",
]
