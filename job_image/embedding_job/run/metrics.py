"""The job's Prometheus metrics, through Ray's metrics API.

Each embedding worker records its calls with ``ray.util.metrics``; the metrics agent of its Ray
node exports them on the node's metrics export port (KubeRay sets 8080 and names the container
port ``metrics``), where KubeRay's Prometheus setup scrapes every Ray pod. Ray adds the ``ray_``
prefix (``ray_embedding_job_rows_total``...). On Daft's native runner there is no Ray and nothing
is exported: a local run's figures are in its log, its manifest and, when run for an
EmbeddingJob, that job's ``status.progress``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embedding_job.api import JOB_NAME_ENV

#: Metric names as the job declares them (Prometheus sees them with Ray's ``ray_`` prefix).
#: Images per second is ``rate()`` of the rows counter: Prometheus computes rates from
#: counters (and Ray 2.59 exports no ``ray.util.metrics.Gauge`` set in a worker).
ROWS = "embedding_job_rows"
BATCH_SECONDS = "embedding_job_batch_seconds"
STAGE_SECONDS = "embedding_job_stage_seconds"
#: Labels of every job metric: the EmbeddingJob (empty for a local run; its namespace is the
#: pod's, which Prometheus adds) and the model: the job's models, joined with ", " as the
#: manifest's ``model`` (a row is counted once, however many models embed it), except on the
#: model stage's seconds, which are each model's own.
LABELS = ("embedding_job", "model")
BATCH_BUCKETS = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]


@dataclass(frozen=True)
class JobLabels:
    """Who a run's metrics are about: its EmbeddingJob and its models, in the job's order."""

    job: str
    models: tuple[str, ...]

    def common(self) -> dict[str, str]:
        """The labels every series of the run has by default."""
        return {"embedding_job": self.job, "model": ", ".join(self.models)}


def job_labels(models: Sequence[str], env: Mapping[str, str] = os.environ) -> JobLabels:
    """The labels of this run's metrics (the operator names the EmbeddingJob in the env)."""
    return JobLabels(env.get(JOB_NAME_ENV, ""), tuple(models))


@dataclass(frozen=True)
class Call:
    """What one call of an embedding worker did."""

    rows: int
    failed: int
    seconds: float
    #: Of ``seconds``, each model's time in its forward passes, in the job's model order; the
    #: rest is reading, decoding and resizing that the models did not hide, and bookkeeping.
    model_seconds: tuple[float, ...]

    @property
    def decode_seconds(self) -> float:
        return max(0.0, self.seconds - sum(self.model_seconds))


class WorkerMetrics:
    """One embedding worker's Ray metrics (made inside the worker: they do not pickle)."""

    def __init__(self, labels: JobLabels):
        from ray.util.metrics import Counter, Histogram

        self.models = labels.models
        keys = (*LABELS, "outcome")
        self.rows = Counter(ROWS, "Input rows done, by outcome (embedded, failed).", keys)
        self.batch = Histogram(
            BATCH_SECONDS, "Seconds one call of an embedding worker took.", BATCH_BUCKETS, LABELS
        )
        self.stages = Counter(
            STAGE_SECONDS,
            "Seconds of worker time by stage: model (each model's forward passes, labelled "
            "with that model) and decode (reading, decoding and resizing images while the "
            "models waited).",
            (*LABELS, "stage"),
        )
        for metric in (self.rows, self.batch, self.stages):
            metric.set_default_tags(labels.common())

    def record(self, call: Call) -> None:
        """Add one call."""
        if call.rows > call.failed:
            self.rows.inc(call.rows - call.failed, {"outcome": "embedded"})
        if call.failed:
            self.rows.inc(call.failed, {"outcome": "failed"})
        self.batch.observe(call.seconds)
        for model, seconds in zip(self.models, call.model_seconds, strict=True):
            if seconds > 0:
                self.stages.inc(seconds, {"stage": "model", "model": model})
        if call.decode_seconds > 0:
            self.stages.inc(call.decode_seconds, {"stage": "decode"})


def worker_metrics(labels: JobLabels | None) -> Any:
    """The worker's metrics inside a Ray worker; None elsewhere (native runner, no labels)."""
    if labels is None:
        return None
    try:
        import ray

        if not ray.is_initialized():
            return None
        return WorkerMetrics(labels)
    except Exception:  # noqa: BLE001 - metrics are optional; the job runs without them
        return None
