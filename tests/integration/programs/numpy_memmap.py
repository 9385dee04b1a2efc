"""numpy_memmap.py: real code nobody here wrote (numpy) working on a traced file mapping.

Usage: numpy_memmap.py FILE N.  np.memmap of FILE (N float64s, created), then numpy's own
loops over it: fill, sum, a strided update, a sort, float32 and uint8 views, a copy out.
Prints one line per step with a result that depends on every byte, so a wrong value
anywhere changes the output.
"""

import hashlib
import sys

import numpy as np

path, n = sys.argv[1], int(sys.argv[2])
a = np.memmap(path, dtype=np.float64, mode="w+", shape=(n,))
a[:] = np.arange(n, dtype=np.float64) * 1.5
print("fill", float(a[-1]))
print("sum", float(a.sum()))
a[::7] += 3.25
print("strided", float(a[::7].sum()))
a[:] = a[::-1].copy()
a.sort()
print("sorted", bool(np.all(a[:-1] <= a[1:])), float(a[n // 2]))
f = a.view(np.float32)
print("float32", float(f[1::2].max()))
b = a.view(np.uint8)
print("bytes", int(b[::13].astype(np.uint64).sum()))
a.flush()
print("digest", hashlib.sha256(np.array(a).tobytes()).hexdigest()[:16])
