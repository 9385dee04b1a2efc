"""The Linux x86-64 backend: the only code that talks to the kernel (ptrace, /proc, seccomp)."""
