"""A bound on the pixels a worker holds decoded at once, across all its decode threads.

Without it a worker's decoding memory grows with threads x the largest image (eight 24 Mpx
PNGs on eight threads: gigabytes). With it, a thread waits before decoding until the pixels
already being decoded leave room for its image, whose size the header gave; and
:func:`return_freed_memory` makes the memory of a decoded image go back to the system when it
is freed, so that the bound holds for the process's memory, not only for what it uses.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PixelBudget:
    """At most ``capacity`` pixels held at once; ``None`` means no bound.

    An image larger than the whole budget is let through alone (once nothing else is held),
    so that no image waits forever.
    """

    def __init__(self, capacity: int | None):
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be >= 1 pixel")
        self.capacity = capacity
        self.in_use = 0
        #: The most pixels held at once so far (what the bound is checked by).
        self.peak = 0
        #: How many holders had to wait for room.
        self.waits = 0
        self._room = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the duration of the block."""
        if self.capacity is None:
            yield
            return
        capacity: int = self.capacity
        weight = max(0, min(pixels, capacity))
        with self._room:
            if self.in_use and self.in_use + weight > capacity:
                self.waits += 1
                self._room.wait_for(lambda: not self.in_use or self.in_use + weight <= capacity)
            self.in_use += weight
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._room:
                self.in_use -= weight
                self._room.notify_all()


def megapixels(value: float | None) -> int | None:
    """A budget in megapixels (the config's unit) as pixels."""
    return None if value is None else max(1, round(value * 1_000_000))


#: glibc's mallopt parameter and the size from which buffers get their own mapping.
_M_MMAP_THRESHOLD = -3
_OWN_MAPPING_BYTES = 4 << 20


def return_freed_memory() -> bool:
    """Have glibc give buffers of 4 MiB and more their own memory mapping, returned to the
    system when freed. Returns whether it could (glibc only).

    By default glibc raises that threshold after the first large free (up to 32 MiB), and each
    thread's allocation arena then keeps the memory of the largest images it decoded: measured
    here, eight threads decoding eight 12 Mpx PNGs one at a time still grew the process by
    eight images. Smaller buffers (most decoded photos, reduced in size) stay in the arenas.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # a libc without mallopt (musl)
    return bool(mallopt(_M_MMAP_THRESHOLD, _OWN_MAPPING_BYTES))
