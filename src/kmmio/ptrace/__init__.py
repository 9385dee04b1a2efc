"""The ptrace backend: the tracer outside the program, which stops its threads at each
fault (or serves plain accesses from a compiled loop), performs or single-steps the access,
and watches its syscalls through a seccomp filter with ``SECCOMP_RET_TRACE``.

``tracer.py`` runs the loop (spawn, attach, signals, deadlines), ``tasks.py`` keeps its
threads and processes (clone, fork, exec, exit, letting go), ``faults.py`` the fault
path, ``process.py`` the threads and what is injected into them, ``regions.py`` which
mappings are traced, ``syscall_path.py`` syscalls on traced memory, ``fastloop.py`` the
compiled loop's Python side, ``bus.py`` the tracer's view of traced pages, ``sigsegv.py``
the program's own SIGSEGV action.  The agent backend (:mod:`kmmio.agent`) is the other door
onto the same engine, log and instruction semantics.
"""
