"""Peak memory of a process tree, and the CPU time each of its processes has used, sampled
from /proc while it runs."""

from __future__ import annotations

import bisect
import math
import os
import sys
import time

from bench.sampling import Sampler

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _processes() -> tuple[dict[int, list[int]], dict[int, float]]:
    """Every process's children, and its CPU seconds (user and system) so far."""
    tree: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    return tree, cpu


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeMemory(Sampler):
    """Peak summed RSS and PSS of a process and its descendants, and the CPU time each of them
    had used by each sample (unix time), sampled in a thread; and the CPU time of the observing
    process (``observer``: the bench's, whose threads serve the remote input modes)."""

    def __init__(self, pid: int, interval: float = 0.25, observer: int | None = None):
        super().__init__(interval, enabled=sys.platform.startswith("linux"))
        self.pid = pid
        self.observer = observer
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.cpu: dict[int, list[tuple[float, float]]] = {}
        self.observer_cpu: list[tuple[float, float]] = []

    def sample(self) -> bool:
        now = time.time()
        tree, cpu = _processes()
        todo, total_rss, total_pss = [self.pid], 0, 0
        while todo:
            pid = todo.pop()
            rss, pss = _memory_kb(pid)
            total_rss += rss
            total_pss += pss
            if pid in cpu:
                self.cpu.setdefault(pid, []).append((now, cpu[pid]))
            todo.extend(tree.get(pid, []))
        if self.observer in cpu:
            self.observer_cpu.append((now, cpu[self.observer]))
        self.peak_rss_kb = max(self.peak_rss_kb, total_rss)
        self.peak_pss_kb = max(self.peak_pss_kb, total_pss)
        return True


def cpu_by(samples: list[tuple[float, float]], when: float) -> float:
    """CPU seconds a process had used by ``when`` (its last sample at or before it; 0 before
    its first; NaN without samples), from ``TreeMemory.cpu``'s samples of that process."""
    if not samples:
        return math.nan
    index = bisect.bisect_right([t for t, _ in samples], when)
    return samples[index - 1][1] if index else 0.0


def cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """CPU seconds a process had used by ``when``, interpolated between the samples around it
    (a window of a few seconds is only a dozen samples long); 0 before its first sample, its
    last after its last; NaN without samples."""
    if not samples:
        return math.nan
    times = [t for t, _ in samples]
    index = bisect.bisect_right(times, when)
    if index == 0:
        return 0.0
    if index == len(samples):
        return samples[-1][1]
    (t0, c0), (t1, c1) = samples[index - 1], samples[index]
    return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1
