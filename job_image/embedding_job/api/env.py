"""Environment variables that cross from the operator to the job's pods."""

from __future__ import annotations

#: Set on every process we start (job pods, CLI, benchmarks, tests): no usage reporting.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "DAFT_ANALYTICS_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

#: The EmbeddingJob a job reports to, and its uid (which stamps the output it owns).
JOB_NAME_ENV = "EMBEDDING_JOB_NAME"
JOB_NAMESPACE_ENV = "EMBEDDING_JOB_NAMESPACE"
JOB_UID_ENV = "EMBEDDING_JOB_UID"
