"""Shared fixtures: tiny random-init models saved locally, sample images, a loopback web server."""

from __future__ import annotations

import functools
import http.server
import itertools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DAFT_ANALYTICS_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DAFT_PROGRESS_BAR", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embedding_job.demo import make_random_model
from tests.hub_models import hub_preprocessor, original_models  # noqa: F401
from tests.integration.kube import Cluster, Operator, start_cluster, stop_cluster
from tests.s3_server import s3_bucket, s3_server  # noqa: F401 - fixtures
from tests.slow_hosts import hanging_host, resetting_host  # noqa: F401 - fixtures

VIT = "google/vit-base-patch16-224-in21k"
DINOV2 = "facebook/dinov2-base"


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding tiny random-init models under two of the original model names,
    each with the real checkpoint's preprocessor_config.json."""
    root = tmp_path_factory.mktemp("models")
    make_random_model(root / VIT, "vit", seed=1, preprocessor_config=hub_preprocessor(VIT))
    make_random_model(root / DINOV2, "dinov2", seed=2, preprocessor_config=hub_preprocessor(DINOV2))
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class _Server(http.server.ThreadingHTTPServer):
    # http.server's default backlog of 5 drops connections under Daft's parallel downloads.
    request_queue_size = 256
    daemon_threads = True


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(directory, base URL) of a threaded HTTP server on 127.0.0.1 serving that directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---- a real control plane (etcd + kube-apiserver + kube-controller-manager from hack/) ----

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
