"""Daft IOConfig for inputs: timeouts and retries from the spec, credentials from the env.

Credentials are only read from explicit variables here: asking the cloud SDK to discover them
would probe instance metadata endpoints even for jobs that never touch object storage.
"""

from __future__ import annotations

import os
from typing import Any

from daft.io import GCSConfig, HTTPConfig, IOConfig, S3Config

from embedding_job.api import DownloadSpec

#: Set to send ``Authorization: Bearer <token>`` with every http(s) request of the job.
HTTP_BEARER_TOKEN_ENV = "EMBEDDING_JOB_HTTP_BEARER_TOKEN"


def io_config(download: DownloadSpec, env: dict[str, str] | None = None) -> IOConfig:
    """IOConfig for http(s), s3 and gcs reads under the given download policy."""
    env = dict(os.environ) if env is None else env
    timeout_ms = int(download.timeout_seconds * 1000)
    tries = download.retries + 1
    common: dict[str, Any] = {
        "connect_timeout_ms": timeout_ms,
        "read_timeout_ms": timeout_ms,
        "num_tries": tries,
        "retry_initial_backoff_ms": 200,
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    s3 = S3Config(
        key_id=env.get("AWS_ACCESS_KEY_ID"),
        access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        endpoint_url=endpoint,
        # An http:// endpoint (MinIO, moto, a cluster-local gateway) is plain HTTP for every
        # reader and writer; Lance's object store refuses it unless told so.
        use_ssl=not (endpoint or "").startswith("http://"),
        max_connections=download.max_connections,
        **common,
    )
    gcs = GCSConfig(
        project_id=env.get("GOOGLE_CLOUD_PROJECT"),
        max_connections=download.max_connections,
        **common,
    )
    http = HTTPConfig(bearer_token=env.get(HTTP_BEARER_TOKEN_ENV), **common)
    return IOConfig(s3=s3, gcs=gcs, http=http)
