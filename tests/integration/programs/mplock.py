"""mplock.py: 2 processes x 2 threads add to a shared counter under one multiprocessing.Lock.

Now and then a thread sleeps holding the lock, so that the others wait for it in the
kernel (futex).  The lock is a POSIX semaphore in /dev/shm (glibc's sem_open), the counter a RawValue in
multiprocessing's shared heap (also a file in /dev/shm): trace them with -m /dev/shm/.
Usage: mplock.py ROUNDS [wait].  With "wait" it prints "ready PID" and waits for a line on
standard input first (for a tracer to attach).  Prints "counter N", then "ok" or "BAD".
"""

import multiprocessing as mp
import sys
import threading
import time


def work(lock, counter, rounds: int) -> None:  # type: ignore[no-untyped-def]
    def body() -> None:
        for i in range(rounds):
            with lock:
                counter.value += 1
                if i % 50 == 0:
                    time.sleep(0.002)  # the others block on the lock: futex waits

    threads = [threading.Thread(target=body) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> int:
    rounds = int(sys.argv[1])
    ctx = mp.get_context("fork")
    lock = ctx.Lock()
    counter = ctx.RawValue("q", 0)
    if sys.argv[2:] == ["wait"]:
        print("ready", mp.current_process().pid, flush=True)
        sys.stdin.readline()
    child = ctx.Process(target=work, args=(lock, counter, rounds))
    child.start()
    work(lock, counter, rounds)
    child.join()
    print("counter", counter.value)
    ok = counter.value == 4 * rounds and child.exitcode == 0
    print("ok" if ok else "BAD", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
