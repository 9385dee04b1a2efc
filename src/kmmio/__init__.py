"""kmmio: trace every access a Linux process makes to memory-mapped regions.

The kernel's kmmio/mmiotrace, for processes, through ptrace.  The public API:

* :func:`trace_program` spawns a program and logs (or calls back for) every access to the
  mappings whose path contains a pattern;
* :class:`Tracer` does the same with more control: ``probes_for`` registers your own
  :class:`Probe` objects with ``pre_handler``/``post_handler``, the kmmio way;
* :class:`Kmmio` is the pure engine, usable without any process;
* :mod:`kmmio.trace` reads and writes the mmiotrace log format.
"""

from kmmio.engine import Kmmio, Probe, StepCondition
from kmmio.errors import KmmioError, ProbeError, TraceeError, TraceFormatError, UsageError
from kmmio.mmiotrace import Mapping, TracedAccess
from kmmio.ptrace.tracer import Mode, Tracer, trace_program
from kmmio.trace import Kind, TraceWriter, read_records
from kmmio.x86 import Registers

__version__ = "0.1.0"

__all__ = [
    "Kind",
    "Kmmio",
    "KmmioError",
    "Mapping",
    "Mode",
    "Probe",
    "ProbeError",
    "Registers",
    "StepCondition",
    "TraceFormatError",
    "TraceWriter",
    "TracedAccess",
    "TraceeError",
    "Tracer",
    "UsageError",
    "__version__",
    "read_records",
    "trace_program",
]
