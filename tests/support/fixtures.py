"""The fixtures every tier shares (registered by tests/conftest.py): models, a loopback web
server, the session's control plane, a fresh namespace per test (the cluster's state printed
on failure), the operator."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import Cluster, Operator, start_cluster, stop_cluster
from tests.support.models import make_models
from tests.support.web import serve

_counter = itertools.count()


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding tiny random-init models under two of the original model names."""
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(directory, base URL) of a threaded HTTP server on 127.0.0.1 serving that directory."""
    root = tmp_path / "www"
    root.mkdir()
    with serve(root) as url:
        yield root, url


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real control plane (etcd, kube-apiserver, kube-controller-manager) with our and
    KubeRay's CRDs. The e2e tier overrides it with its provider's cluster."""
    workdir = tmp_path_factory.mktemp("cluster")
    try:
        yield start_cluster(workdir)
    finally:
        stop_cluster(workdir)


def namespace_name(test: str) -> str:
    """A unique, valid namespace name that says which test made it."""
    slug = re.sub(r"[^a-z0-9]+", "-", test.lower())[:40].strip("-")
    return f"t{next(_counter)}-{slug}"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test; on failure the cluster's state and logs are printed."""
    name = namespace_name(request.node.name)
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
