"""A sampler: something looked at every so often in a thread while a block runs (a process
tree's memory, an output directory, the GPU's utilisation)."""

from __future__ import annotations

import threading
from typing import Self


class Sampler:
    """Calls ``sample`` every ``interval`` seconds from the block's start until its end or
    until ``sample`` returns False; ``enabled`` False samples nothing."""

    def __init__(self, interval: float, enabled: bool = True):
        self.interval = interval
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> bool:
        """Take one sample; False: no more."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set() and self.sample():
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
