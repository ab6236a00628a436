"""Peak memory of a process tree, sampled from /proc while it runs."""

from __future__ import annotations

import os
import sys

from bench.sampling import Sampler


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


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
    """Peak summed RSS and PSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(interval, enabled=sys.platform.startswith("linux"))
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0

    def sample(self) -> bool:
        tree = _children()
        todo, total_rss, total_pss = [self.pid], 0, 0
        while todo:
            pid = todo.pop()
            rss, pss = _memory_kb(pid)
            total_rss += rss
            total_pss += pss
            todo.extend(tree.get(pid, []))
        self.peak_rss_kb = max(self.peak_rss_kb, total_rss)
        self.peak_pss_kb = max(self.peak_pss_kb, total_pss)
        return True
