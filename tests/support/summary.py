"""Lines a test wants in every run's output, passed or not: what the e2e cluster did, the
measured distances of the parity checks. pytest captures a passing test's prints; the root
conftest prints these again, by section, in the terminal summary."""

from __future__ import annotations

from collections import defaultdict

SECTIONS: defaultdict[str, list[str]] = defaultdict(list)


def report(section: str, line: str) -> None:
    """Add ``line`` to ``section`` of the terminal summary (and print it, for ``-s`` runs)."""
    SECTIONS[section].append(line)
    print(line)
