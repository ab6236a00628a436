"""Helpers shared by the integration tests (the cluster fixtures live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path


def examples() -> list[Path]:
    """Every file in examples/: each is applied by a test."""
    return sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
