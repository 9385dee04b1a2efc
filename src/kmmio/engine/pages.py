"""Fault pages: the pages a probe covers, reference-counted and armed.

``struct kmmio_fault_page`` and ``kmmio_page_table`` of kmmio.c.  Arming a page here means
"make every access to it fault" (the kernel clears the present bit; a process tracer sets
``PROT_NONE``).  Disarming restores exactly the protection saved when the page was armed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

#: ``PROT_NONE``: the protection of an armed page.
PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4


@dataclass
class FaultPage:
    """One page of the probed address space (``struct kmmio_fault_page``).

    ``count`` is how many probes cover the page; ``armed`` whether it currently faults;
    ``saved_prot`` the protection it had before arming, which disarming restores;
    ``users`` the threads whose fault context has the page open right now.
    """

    page: int
    saved_prot: int
    count: int = 0
    armed: bool = False
    scheduled_for_release: bool = False
    users: set[int] = field(default_factory=set)
    #: Bytes: the base page size, or a huge page's (kmmio.c's ``PG_LEVEL_2M`` pages).
    size: int = 4096

    @property
    def end(self) -> int:
        return self.page + self.size


@dataclass(frozen=True, slots=True)
class ReleaseBatch:
    """Pages waiting for a grace period (``struct kmmio_delayed_release``).

    ``waiting`` holds the threads not yet seen stopped since the pages were released; a
    fault from one of them on these pages may have been raised while they were armed.
    """

    pages: tuple[int, ...]
    waiting: set[int]


class PageTable:
    """``kmmio_page_table``: page address to :class:`FaultPage`.

    Pages are of the base size unless registered larger: a huge page is one fault page,
    as kmmio.c arms a 2 MiB mapping at its PMD (``lookup_address`` gives the level).
    """

    def __init__(self, page_size: int = 4096) -> None:
        _check_size(page_size)
        self.page_size = page_size
        self._pages: dict[int, FaultPage] = {}
        #: The page sizes in use, smallest first (the base size always).
        self._sizes = [page_size]

    def page_of(self, addr: int, size: int = 0) -> int:
        return addr & ~((size or self.page_size) - 1)

    def pages_spanning(self, addr: int, length: int, size: int = 0) -> range:
        """Every page of ``size`` (default: the base size) holding a byte of ``[addr, addr + length)``."""
        size = size or self.page_size
        first = self.page_of(addr, size)
        last = self.page_of(addr + max(length, 1) - 1, size)
        return range(first, last + size, size)

    def get(self, addr: int) -> FaultPage | None:
        """``get_kmmio_fault_page``: the record of the page holding ``addr``, of any size."""
        if len(self._sizes) == 1:
            return self._pages.get(addr & -self.page_size)
        for size in self._sizes:
            page = self._pages.get(addr & ~(size - 1))
            if page is not None and page.size == size:
                return page
        return None

    def add(self, page: FaultPage) -> None:
        _check_size(page.size)
        if page.size not in self._sizes:
            self._sizes = sorted({*self._sizes, page.size})
        self._pages[page.page] = page

    def remove(self, page: int) -> None:
        del self._pages[page]

    def __iter__(self) -> Iterator[FaultPage]:
        return iter(sorted(self._pages.values(), key=lambda p: p.page))

    def __len__(self) -> int:
        return len(self._pages)


def _check_size(size: int) -> None:
    if size <= 0 or size & (size - 1):
        raise ValueError(f"page size {size} is not a power of two")
