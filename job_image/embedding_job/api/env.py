"""What crosses from the operator to the job's pods: environment variables and the driver's flag."""

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

#: ``embedding-job run`` flag: read the config from the EmbeddingJob the variables above name.
#: The operator's driver command passes this instead of the config, which no command line can
#: be trusted to hold (Linux refuses one argument over 128 KiB).
FROM_EMBEDDINGJOB_FLAG = "--from-embeddingjob"
