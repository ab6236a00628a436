"""Fixtures that need a real Kubernetes control plane (built from Go modules by hack/)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kube import Cluster, Operator, start_cluster, stop_cluster

_counter = itertools.count()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    try:
        yield start_cluster(workdir)
    finally:
        stop_cluster(workdir)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test; on failure the cluster's state is printed."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
    name = f"t{next(_counter)}-{slug}".rstrip("-")
    cluster.kubectl("create", "namespace", name)
    yield name
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.dump())


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(op.output()[-5000:])


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def examples() -> list[Path]:
    return sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
