"""A small example device for ``kmmio sim`` and ``kmmio replay``: a CRC-32 engine.

Registers (32-bit, at the offsets below; ``crc.rdl`` is the same map in SystemRDL):

* ``ID`` (0x00, read-only): 0x43524331 ("CRC1").
* ``CTRL`` (0x04): ``START`` (bit 0, write 1: compute over the words written since the
  last reset), ``RESET`` (bit 1, write 1: forget the words), ``IRQ_EN`` (bit 2).
* ``STATUS`` (0x08, read-only): ``BUSY`` (bit 0) while computing, ``DONE`` (bit 1) after.
* ``DATA`` (0x0C, write-only): the next 32-bit word, little-endian.
* ``RESULT`` (0x10, read-only): the CRC-32 (zlib's) of the words' bytes.
* ``IRQ_STATUS`` (0x14, read, clear-on-read): ``DONE`` (bit 0) when a computation ended
  with ``IRQ_EN`` set.

The model (:mod:`kmmio.demo.crc.model`) is busy for a fixed number of ``STATUS`` reads, so
runs are repeatable; the drivers (``driver.py``, ``driver.c``) map the device by the path
they are given, as a UIO driver maps ``/dev/uio0``.
"""

ID = 0x00
CTRL = 0x04
STATUS = 0x08
DATA = 0x0C
RESULT = 0x10
IRQ_STATUS = 0x14

ID_VALUE = 0x43524331
CTRL_START = 1 << 0
CTRL_RESET = 1 << 1
CTRL_IRQ_EN = 1 << 2
STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
IRQ_DONE = 1 << 0
SIZE = 0x1000
