"""The e2e suite's cluster: EMBOP_E2E_PROVIDER=local (default, CI) or kind (make e2e-kind)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedding_job.demo import make_random_model
from tests.e2e.checks import E2E_LOG
from tests.e2e.steps import MODEL
from tests.support.kube import Cluster
from tests.support.providers import Provider, make_provider


@pytest.fixture(scope="package")
def provider() -> Iterator[Provider]:
    chosen = make_provider(os.environ.get("EMBOP_E2E_PROVIDER", "local"))
    try:
        chosen.up()
        yield chosen
    finally:
        chosen.down()


@pytest.fixture(scope="package")
def models(provider: Provider) -> Path:
    """A tiny random-init ViT under its original name, in the directory the job sees."""
    root = provider.workdir / "models"
    make_random_model(root / MODEL, "vit", seed=1)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return root


@pytest.fixture(scope="package")
def cluster(provider: Provider) -> Cluster:
    """The provider's cluster (tests/support/fixtures.py's namespace fixture uses it)."""
    return provider.cluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the cluster did (bindings, GPU requests, KubeRay's transitions, outcomes)."""
    if E2E_LOG:
        terminalreporter.section("e2e: what the cluster did")
        for line in E2E_LOG:
            terminalreporter.write_line(f"[e2e] {line}")
