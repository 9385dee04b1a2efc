# Types of the cffi module built from the C files _tools_build.py names.  The functions
# take cffi pointers (cdata), which have no static type: the module is typed loosely, and
# its callers (scan.py, summary.py) wrap it in typed functions.
from typing import Any

lib: Any
ffi: Any
