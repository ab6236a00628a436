"""A host that does not answer costs a worker one timeout, not one per row."""

from __future__ import annotations

from embedding_job.api import DownloadSpec
from embedding_job.image_vit_embedding import _fetch
from embedding_job.io.cells import DeadHosts, fetch_error
from embedding_job.io.io_config import io_config
from tests.support.slow_hosts import BadHost

ONE_SECOND = io_config(DownloadSpec(timeout_seconds=1, retries=0))


def test_a_hanging_host_is_asked_once_per_worker(hanging_host: BadHost) -> None:
    dead = DeadHosts()
    first = fetch_error(f"{hanging_host.base}/a.jpg", ONE_SECOND, dead)
    assert first.startswith("download failed:") and "timed out" in first
    asked = hanging_host.connections
    assert asked >= 1
    later = [fetch_error(f"{hanging_host.base}/{n}.jpg", ONE_SECOND, dead) for n in "bcd"]
    assert all("failed earlier" in e and "timed out" in e for e in later), later
    assert hanging_host.connections == asked


def test_image_vit_embedding_fetches_under_the_same_rule(
    hanging_host: BadHost, resetting_host: BadHost
) -> None:
    dead = DeadHosts()
    data, error = _fetch(f"{resetting_host.base}/x.jpg", ONE_SECOND, dead)
    assert data is None and error is not None and error.startswith("download failed:")
    again = _fetch(f"{resetting_host.base}/y.jpg", ONE_SECOND, dead)[1]
    assert again is not None and "failed earlier" in again
    data, error = _fetch(f"{hanging_host.base}/x.jpg", ONE_SECOND, dead)
    assert data is None and error is not None and "timed out" in error


def test_not_found_is_a_row_error_not_a_dead_host() -> None:
    dead = DeadHosts()
    dead.record("http://127.0.0.1:9/a.jpg", "HTTP 404: /a.jpg does not exist")
    assert dead.reason("http://127.0.0.1:9/b.jpg") is None
    dead.record("http://127.0.0.2:81/a.jpg", "MiscTransient (operation timed out)")
    assert dead.reason("http://127.0.0.2:81/b.jpg") == "MiscTransient (operation timed out)"
    assert dead.reason("http://127.0.0.2:82/b.jpg") is None
