"""lmdb_writemap.py: LMDB (the lmdb package, its C library) with writemap=True: its pages
are a shared mapping of data.mdb that the library writes through directly.

Usage: lmdb_writemap.py DIR N.  Puts N keys in one transaction, overwrites every third,
deletes every fifth, reads them all back in a cursor walk, and prints counts and a digest
of what it read.
"""

import hashlib
import sys

import lmdb

path, n = sys.argv[1], int(sys.argv[2])
env = lmdb.open(path, map_size=64 << 20, writemap=True, metasync=False, sync=False)
with env.begin(write=True) as txn:
    for i in range(n):
        txn.put(b"key%08d" % i, b"value-%d-" % i * 3)
with env.begin(write=True) as txn:
    for i in range(0, n, 3):
        txn.put(b"key%08d" % i, b"new-%d" % (i * 7))
    for i in range(0, n, 5):
        txn.delete(b"key%08d" % i)
digest = hashlib.sha256()
count = 0
with env.begin() as txn:
    for key, value in txn.cursor():
        digest.update(key + b"=" + value)
        count += 1
print("entries", count)
print("stat", env.stat()["entries"])
print("digest", digest.hexdigest()[:16])
env.close()
