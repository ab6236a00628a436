"""What the operator's metrics count (the endpoint itself: tests/integration/test_operator.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import kopf
import pytest
from prometheus_client import REGISTRY

from embedding_job.api import Phase
from embedding_operator import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_phase_book_counts_every_phase_and_forgets_deleted_jobs() -> None:
    book = metrics.PhaseBook()
    book.seen("a", None)
    book.seen("b", "Running")
    book.seen("c", "Running")
    book.seen("a", "Submitted")
    book.gone("c")
    counts = book.counts()
    assert counts == {
        "New": 0,
        "Submitted": 1,
        "Running": 1,
        "Succeeded": 0,
        "Failed": 0,
        "Suspended": 0,
    }
    (family,) = book.collect()
    assert family.name == "embedding_operator_jobs"
    assert {s.labels["phase"]: s.value for s in family.samples} == counts


def test_a_timed_handler_is_observed_and_its_errors_counted_by_reason() -> None:
    @metrics.timed("unit")
    def handler(fail: BaseException | None = None) -> str:
        if fail is not None:
            raise fail
        return "done"

    before = sample("embedding_operator_reconcile_seconds_count", handler="unit")
    assert handler() == "done"
    with pytest.raises(kopf.TemporaryError):
        handler(kopf.TemporaryError("later", delay=1))
    with pytest.raises(KeyError):
        handler(KeyError("x"))
    assert sample("embedding_operator_reconcile_seconds_count", handler="unit") == before + 3
    for reason in ("TemporaryError", "KeyError"):
        errors = sample("embedding_operator_reconcile_errors_total", handler="unit", reason=reason)
        assert errors == 1
    assert handler.__wrapped__.__qualname__.endswith("handler")  # type: ignore[attr-defined]


def test_entering_running_observes_the_time_in_the_queue() -> None:
    before = sample("embedding_operator_queue_seconds_count")
    running = sample("embedding_operator_job_transitions_total", phase="Running", reason="R")
    metrics.entered(Phase.RUNNING, "R", "2020-01-01T00:00:00Z")
    metrics.entered(Phase.FAILED, "ModelNotFound", "2020-01-01T00:00:00Z")
    assert sample("embedding_operator_queue_seconds_count") == before + 1
    assert sample("embedding_operator_job_transitions_total", phase="Running", reason="R") == (
        running + 1
    )
    transitions = "embedding_operator_job_transitions_total"
    assert sample(transitions, phase="Failed", reason="ModelNotFound") >= 1


def test_queue_seconds_reads_kubernetes_timestamps() -> None:
    now = datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    assert metrics.queue_seconds("2026-01-01T00:00:00Z", now) == 120
    assert metrics.queue_seconds(None, now) is None
    assert metrics.queue_seconds("yesterday", now) is None


def test_api_retries_are_counted_by_status() -> None:
    before = sample("embedding_operator_api_retries_total", status="503")
    metrics.api_retry(503)
    metrics.api_retry(None)
    assert sample("embedding_operator_api_retries_total", status="503") == before + 1
    assert sample("embedding_operator_api_retries_total", status="0") >= 1


def test_no_port_serves_nothing() -> None:
    assert metrics.serve({}) is None
