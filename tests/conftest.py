"""The test suite's root: offline defaults, the shared fixtures (tests/support/fixtures.py) and
the tier markers, applied by directory: ``pytest -m unit`` (or chart, images, integration,
e2e)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedding_job.api import TELEMETRY_OFF
from tests.support.summary import SECTIONS

os.environ.update({key: os.environ.get(key, value) for key, value in TELEMETRY_OFF.items()})
os.environ.setdefault("DAFT_PROGRESS_BAR", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = [
    # hub_models first: fixtures imports it, and a plugin must be registered before import.
    "tests.support.hub_models",
    "tests.support.fixtures",
    "tests.support.s3_server",
    "tests.support.slow_hosts",
]

TIERS = ("unit", "chart", "images", "integration", "e2e")
HERE = Path(__file__).parent


def tier_of(path: Path) -> str | None:
    """The tier a test file belongs to: the directory under tests/ it lives in."""
    parts = path.resolve().relative_to(HERE).parts
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item.path)
        if tier is not None:
            item.add_marker(tier)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the tests measured or saw, passed or not (tests/support/summary.py)."""
    for section, lines in SECTIONS.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)
