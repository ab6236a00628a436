"""What a slow, hanging, resetting or refusing host may cost (io.fetch): real endpoints on
loopback, the job's own client. Bounds are derived from the settings, generous enough for a
loaded machine and far below what an unbounded stall would take."""

from __future__ import annotations

import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from embedding_job.api import RETRY_PAUSE_SECONDS, DownloadSpec
from embedding_job.errors import RowError
from embedding_job.imaging.datapath import DataPath
from embedding_job.imaging.transform import ImageTransform
from embedding_job.io.fetch import MAX_COOLDOWN, Fetcher, FetchSettings, HostBreaker, RemoteImage
from tests.support.images import good_images
from tests.support.slow_hosts import BadHost, bad_host

#: One second per try, three tries (retries 2).
SPEC = DownloadSpec(timeout_seconds=1, retries=2)
TRIES = SPEC.retries + 1


def failure(fetcher: Fetcher, url: str) -> tuple[str, float]:
    """The RowError's message for ``url``, and how long it took."""
    start = time.monotonic()
    with pytest.raises(RowError) as caught:
        fetcher.fetch(url)
    return str(caught.value), time.monotonic() - start


def test_a_hanging_host_costs_its_tries_once_then_is_skipped(hanging_host: BadHost) -> None:
    fetcher = Fetcher(FetchSettings(SPEC))
    first, took = failure(fetcher, f"{hanging_host.base}/a.jpg")
    assert first == (
        f"download failed: no answer within 1 s (host {hanging_host.base}, {TRIES} tries)"
    )
    # Three tries of a second and the pauses between them: about 3.6 s, far below a stall.
    assert took < SPEC.deadline_seconds + 1.5, took
    assert hanging_host.connections == TRIES
    for name in "bcd":
        later, took = failure(fetcher, f"{hanging_host.base}/{name}.jpg")
        assert later == (
            f"download failed: host {hanging_host.base} skipped: it failed {TRIES} times in "
            "a row (last: no answer within 1 s)"
        )
        assert took < SPEC.timeout_seconds
    assert hanging_host.connections == TRIES


@pytest.mark.parametrize("mode", ["reset", "refuse"])
def test_a_host_that_refuses_or_resets_is_asked_a_bounded_number_of_times(mode: str) -> None:
    fetcher = Fetcher(FetchSettings(SPEC))
    with bad_host(mode) as host:
        first, took = failure(fetcher, f"{host.base}/a.jpg")
        # A reset before the request went out or after: "cannot connect" or "connection lost".
        word = "reset" if mode == "reset" else "refused"
        assert first.startswith("download failed: ") and word in first, first
        assert f"host {host.base}, {TRIES} tries" in first
        assert took < SPEC.deadline_seconds
        later = [failure(fetcher, f"{host.base}/{n}.jpg")[0] for n in range(10)]
        assert all(f"host {host.base} skipped" in e for e in later), later
        assert host.connections == (TRIES if mode == "reset" else 0)


def test_many_rows_of_a_hanging_host_at_once_cost_about_one_timeout(
    hanging_host: BadHost,
) -> None:
    # A data path reading 40 of the host's images on 8 threads: the tries in flight all time
    # out together, the host is skipped, the rest fail at once. Unbounded, that would be
    # 5 rounds of 8 x 3 tries x 1 s (15 s).
    threads = 8
    fetcher = Fetcher(FetchSettings(SPEC))
    datapath = DataPath(ImageTransform(resize_to=(32, 32)), io_threads=threads)
    urls = [RemoteImage(f"{hanging_host.base}/{n}.jpg", fetcher) for n in range(40)]
    start = time.monotonic()
    try:
        results = list(datapath.load(urls, window=len(urls)))
    finally:
        datapath.close()
    took = time.monotonic() - start
    assert all(isinstance(r, RowError) and hanging_host.base in str(r) for r in results)
    assert took < 3 * SPEC.timeout_seconds, took
    # At most the tries in flight when the breaker opened, and the ones that opened it.
    assert hanging_host.connections <= threads + TRIES - 1, hanging_host.connections


def test_a_slow_host_within_the_timeout_is_waited_for() -> None:
    with bad_host("slow", delay=0.5) as host:
        assert Fetcher(FetchSettings(SPEC)).fetch(f"{host.base}/a.jpg") == host.body
        assert host.requests == 1


def test_a_host_that_trickles_is_stopped_at_the_row_deadline() -> None:
    # Each byte within the timeout, but the image never within the deadline.
    spec = SPEC.model_copy(update={"row_deadline_seconds": 1.5})
    with bad_host("drip", delay=0.2, body=b"x" * 1000) as host:
        message, took = failure(Fetcher(FetchSettings(spec)), f"{host.base}/a.jpg")
        assert message == (
            f"download failed: too slow: not sent within 1.5 s (host {host.base}, 1 try)"
        )
        assert spec.deadline_seconds <= took < spec.deadline_seconds + spec.timeout_seconds
        assert host.requests == 1


def test_server_errors_are_retried_and_a_missing_image_is_not(
    web_root: tuple[Path, str],
) -> None:
    fetcher = Fetcher(FetchSettings(SPEC))
    with bad_host("status", status=503) as host:
        message, took = failure(fetcher, f"{host.base}/a.jpg")
        assert message == f"download failed: HTTP 503 Busy (host {host.base}, {TRIES} tries)"
        assert host.requests == TRIES
        assert took < RETRY_PAUSE_SECONDS * 3 + 1
        # It answered: not a dead host, the next row is tried again.
        failure(fetcher, f"{host.base}/b.jpg")
        assert host.requests == 2 * TRIES
    www, base = web_root
    (www / "a.jpg").write_bytes(good_images()["jpeg"])
    assert fetcher.fetch(f"{base}/a.jpg") == good_images()["jpeg"]
    assert failure(fetcher, f"{base}/missing.jpg")[0] == "download failed: HTTP 404 File not found"


def test_object_store_reads_are_bounded_the_same_way(hanging_host: BadHost) -> None:
    # An S3 endpoint that accepts and never answers, read through Daft's IO one try at a time.
    env = {
        "AWS_ENDPOINT_URL": hanging_host.base,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    fetcher = Fetcher(FetchSettings.from_env(SPEC, env))
    first, took = failure(fetcher, "s3://bucket/a.jpg")
    assert first.startswith("download failed:") and "(host s3://bucket, 3 tries)" in first, first
    assert took < SPEC.deadline_seconds + 1.5, took
    assert hanging_host.connections <= TRIES
    later, took = failure(fetcher, "s3://bucket/b.jpg")
    assert "host s3://bucket skipped" in later and took < SPEC.timeout_seconds


def test_the_requests_carry_the_bearer_token_of_the_starting_environment() -> None:
    settings = FetchSettings.from_env(SPEC, {"EMBEDDING_JOB_HTTP_BEARER_TOKEN": "s3cr3t"})
    travelled = pickle.loads(pickle.dumps(settings))  # as it reaches the workers
    assert (travelled.download, travelled.bearer_token) == (SPEC, "s3cr3t")
    assert Fetcher(travelled)._direct.headers["Authorization"] == "Bearer s3cr3t"
    assert "Authorization" not in Fetcher(FetchSettings.from_env(SPEC, {}))._direct.headers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_failures_in_a_row_probes_once_and_backs_off() -> None:
    clock = Clock()
    breaker = HostBreaker(threshold=3, cooldown=10, clock=clock)
    host = "http://h:1"
    for _ in range(2):
        assert breaker.admit(host) is None
        breaker.failed(host, "no answer")
    breaker.answered(host)  # an answer in between: the count starts again
    for _ in range(3):
        assert breaker.admit(host) is None
        breaker.failed(host, "no answer")
    assert (
        breaker.admit(host)
        == "host http://h:1 skipped: it failed 3 times in a row (last: no answer)"
    )
    clock.now = 10
    assert breaker.admit(host) is None  # one probe...
    assert breaker.admit(host) is not None  # ...and only one
    breaker.failed(host, "still no answer")
    clock.now = 29
    assert breaker.admit(host) is not None  # skipped twice as long now
    clock.now = 30
    assert breaker.admit(host) is None
    breaker.answered(host)
    assert all(breaker.admit(host) is None for _ in range(5))
    assert breaker.admit("http://other:1") is None


def test_the_cooldown_stops_growing_at_an_hour() -> None:
    clock = Clock()
    breaker = HostBreaker(threshold=1, cooldown=1000, clock=clock)
    breaker.failed("h", "x")
    for _ in range(5):
        clock.now += MAX_COOLDOWN
        assert breaker.admit("h") is None
        breaker.failed("h", "x")
    clock.now += MAX_COOLDOWN - 1
    assert breaker.admit("h") is not None
    clock.now += 1
    assert breaker.admit("h") is None


def test_one_fetcher_serves_many_threads(web_root: tuple[Path, str]) -> None:
    www, base = web_root
    for n in range(20):
        (www / f"{n}.jpg").write_bytes(bytes([n]) * 100)
    fetcher = Fetcher(FetchSettings(SPEC))
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(fetcher.fetch, [f"{base}/{n}.jpg" for n in range(20)]))
    assert got == [bytes([n]) * 100 for n in range(20)]


def test_a_malformed_url_is_its_rows_error_at_once() -> None:
    fetcher = Fetcher(FetchSettings(SPEC))
    for url in ["http://[::1/x.jpg", "http:///x.jpg", "http://a b/x.jpg"]:
        message, took = failure(fetcher, url)
        assert message.startswith("download failed: bad URL: "), message
        assert took < RETRY_PAUSE_SECONDS  # not retried


def test_the_bearer_token_never_shows_in_the_settings_repr() -> None:
    from embedding_job.api import DownloadSpec
    from embedding_job.io.fetch import FetchSettings

    settings = FetchSettings.from_env(
        DownloadSpec(), {"EMBEDDING_JOB_HTTP_BEARER_TOKEN": "SECRET123"}
    )
    assert settings.bearer_token == "SECRET123" and "SECRET123" not in repr(settings)
