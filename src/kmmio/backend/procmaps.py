"""``/proc/PID/maps`` lines to values (pure), and a reader for one process."""

from __future__ import annotations

from dataclasses import dataclass

from kmmio.engine.pages import PROT_EXEC, PROT_READ, PROT_WRITE


@dataclass(frozen=True, slots=True)
class MapEntry:
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def prot(self) -> int:
        return (
            (PROT_READ if self.perms[0] == "r" else 0)
            | (PROT_WRITE if self.perms[1] == "w" else 0)
            | (PROT_EXEC if self.perms[2] == "x" else 0)
        )

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def anonymous(self) -> bool:
        """No file behind it: offsets mean nothing, the log uses virtual addresses."""
        return self.inode == 0

    @property
    def length(self) -> int:
        return self.end - self.start


def parse_maps_line(line: str) -> MapEntry:
    parts = line.rstrip("\n").split(None, 5)
    lo, _, hi = parts[0].partition("-")
    path = parts[5] if len(parts) > 5 else ""
    return MapEntry(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[3], int(parts[4]), path)


def parse_maps(text: str) -> list[MapEntry]:
    return [parse_maps_line(line) for line in text.splitlines() if line.strip()]


def read_maps(pid: int) -> list[MapEntry]:
    with open(f"/proc/{pid}/maps") as f:
        return parse_maps(f.read())


def kernel_page_size(pid: int, start: int) -> int:
    """The size of the pages behind the mapping at ``start`` (``KernelPageSize`` in smaps):
    2 MiB or 1 GiB for hugetlbfs, the base page size otherwise."""
    head = f"{start:x}-"
    with open(f"/proc/{pid}/smaps") as f:
        found = False
        for line in f:
            if line.startswith(head):
                found = True
            elif found and line.startswith("KernelPageSize:"):
                return int(line.split()[1]) * 1024
    raise FileNotFoundError(f"no mapping at {start:#x} in /proc/{pid}/smaps")
