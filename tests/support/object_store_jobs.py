"""Running the job against the loopback S3 server and reading back what it wrote there."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.jobs import read_output, run_cli, write_config
from tests.support.s3_server import Bucket


def run(
    tmp_path: Path,
    bucket: Bucket,
    config: dict[str, Any],
    *args: str,
    env: dict[str, str] | None = None,
) -> Any:
    """``embedding-job run`` of ``config`` pointed at ``bucket``'s server (and ``env``)."""
    path = write_config(tmp_path / "job.yaml", config)
    return run_cli("run", "--config", str(path), *args, env={**bucket.server.env, **(env or {})})


def manifest(bucket: Bucket, prefix: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(bucket.get(f"{prefix}/_manifest.json"))
    return data


def read_parquet_output(bucket: Bucket, prefix: str) -> dict[str, list[Any]]:
    """The Parquet a job wrote under ``prefix`` of ``bucket``."""
    return read_output(f"{bucket.uri}/{prefix}", io_config=bucket.server.io_config())


def parquet_table(rows: dict[str, list[Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(rows), sink)
    return sink.getvalue()
