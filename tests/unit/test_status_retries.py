"""The job's API calls wait out a busy apiserver: status patches too, not only reads."""

from __future__ import annotations

from urllib3.util.retry import Retry

from embedding_job.run.status_report import api_retries


def test_a_status_patch_is_retried_on_a_busy_apiserver_like_a_read() -> None:
    retries = api_retries(Retry)
    for method in ("GET", "PATCH"):
        assert retries.is_retry(method, 503) and retries.is_retry(method, 429)
    assert not retries.is_retry("PATCH", 404)
    assert Retry(total=4, status_forcelist=[503]).is_retry("PATCH", 503) is False  # the default
