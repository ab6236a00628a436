"""The operator's Prometheus metrics, served on ``EMBEDDING_OPERATOR_METRICS_PORT``.

Handlers only report what happened (a pass took this long, a job entered this phase); what is
counted, and under which labels, is decided here. Label values come from closed sets (phases,
CamelCase reasons, HTTP statuses, handler names), never from job names, so the number of
series stays bounded however many jobs run.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import kopf
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from embedding_job.api import Phase, parse_time

PORT_ENV = "EMBEDDING_OPERATOR_METRICS_PORT"
#: The ``phase`` label of a job the operator has not handled yet (as its Events say).
NEW = "New"

RECONCILE_SECONDS = Histogram(
    "embedding_operator_reconcile_seconds",
    "Time one pass of a handler took, by handler.",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter(
    "embedding_operator_reconcile_errors",
    "Handler passes that raised, by handler and reason: TemporaryError (kopf retries), "
    "PermanentError (given up), or the exception's class.",
    ["handler", "reason"],
)
API_RETRIES = Counter(
    "embedding_operator_api_retries",
    "Kubernetes API calls that failed in a way worth retrying, by HTTP status (0: no answer).",
    ["status"],
)
TRANSITIONS = Counter(
    "embedding_operator_job_transitions",
    "EmbeddingJobs entering a phase, by phase and CamelCase reason (e.g. Failed/ModelNotFound).",
    ["phase", "reason"],
)
QUEUE_SECONDS = Histogram(
    "embedding_operator_queue_seconds",
    "Time from an EmbeddingJob's creation until it started running (cluster up, job submitted).",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)


class PhaseBook(Collector):
    """The phase of every EmbeddingJob the operator watches, counted when Prometheus scrapes.

    Fed by every watch event (so a job deleted or changed by anyone is counted right), and
    collected as the ``embedding_operator_jobs`` gauge with every phase present, zeros included.
    """

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()

    def seen(self, uid: str, phase: str | None) -> None:
        """The job ``uid`` is in ``phase`` (None: not handled yet)."""
        with self._lock:
            self._phases[uid] = phase or NEW

    def gone(self, uid: str) -> None:
        """The job ``uid`` was deleted."""
        with self._lock:
            self._phases.pop(uid, None)

    def counts(self) -> dict[str, int]:
        """Jobs per phase, every phase included."""
        with self._lock:
            tally = Tally(self._phases.values())
        return {phase: tally.get(phase, 0) for phase in [NEW, *Phase]} | dict(tally)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "embedding_operator_jobs",
            f"EmbeddingJobs the operator watches, by phase ({NEW}: not handled yet).",
            labels=["phase"],
        )
        for phase, count in self.counts().items():
            gauge.add_metric([phase], count)
        yield gauge


JOBS = PhaseBook()
REGISTRY.register(JOBS)


def error_reason(exc: BaseException) -> str:
    """The ``reason`` label of a handler's exception."""
    if isinstance(exc, kopf.TemporaryError):
        return "TemporaryError"
    if isinstance(exc, kopf.PermanentError):
        return "PermanentError"
    return type(exc).__name__


_P = ParamSpec("_P")
_R = TypeVar("_R")


def timed(handler: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Time every pass of a handler and count the ones that raise (kopf keeps its id: it
    follows ``__wrapped__``)."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                RECONCILE_ERRORS.labels(handler, error_reason(exc)).inc()
                raise
            finally:
                RECONCILE_SECONDS.labels(handler).observe(time.perf_counter() - started)

        return run

    return wrap


def api_retry(status: int | None) -> None:
    """An API call failed and will be retried."""
    API_RETRIES.labels(str(status or 0)).inc()


def queue_seconds(created: str | None, now: datetime) -> float | None:
    """Seconds from ``metadata.creationTimestamp`` (RFC 3339) to ``now``; None when unknown."""
    if not created:
        return None
    try:
        start = parse_time(created)
    except ValueError:
        return None
    return max(0.0, (now - start).total_seconds())


def entered(phase: Phase, reason: str, created: str | None) -> None:
    """A job entered ``phase``; entering Running ends its time in the queue."""
    TRANSITIONS.labels(phase.value, reason).inc()
    if phase is Phase.RUNNING:
        waited = queue_seconds(created, datetime.now(UTC))
        if waited is not None:
            QUEUE_SECONDS.observe(waited)


def serve(env: Mapping[str, str] = os.environ) -> int | None:
    """Serve ``/metrics`` on the port the environment names (the chart's ``metrics.port``);
    returns it, or None when no port is set (metrics are then only counted)."""
    port = int(env.get(PORT_ENV) or 0)
    if port:
        start_http_server(port)
        return port
    return None
