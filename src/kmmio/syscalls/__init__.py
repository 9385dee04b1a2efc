"""Syscalls that reach traced memory (pure): which arguments are pointers, the seccomp
filters that stop such syscalls, and the plan that lets each work as it would untraced."""
