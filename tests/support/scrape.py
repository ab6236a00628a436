"""Read a Prometheus endpoint the way Prometheus does: its text exposition, parsed."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

#: (sample name, sorted label pairs) → value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, timeout: float = 5.0) -> tuple[set[str], Samples]:
    """The metric families an endpoint declares and every sample it exposes."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse(response.read().decode())


def parse(text: str) -> tuple[set[str], Samples]:
    """The metric families a text exposition declares and every sample in it."""
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs))
