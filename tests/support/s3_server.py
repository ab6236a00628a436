"""An S3-compatible server on loopback (moto's server mode) and a fresh bucket per test; the
bench's object-store input uses the same server."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

_buckets = itertools.count()


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running moto server; ``env`` is what a job needs to reach it (the job's documented
    AWS_* variables, nothing else)."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def io_config(self) -> Any:
        """Daft IOConfig for reading back what a job wrote."""
        from daft.io import IOConfig, S3Config

        return IOConfig(
            s3=S3Config(
                endpoint_url=self.endpoint,
                key_id="testing",
                access_key="testing",
                region_name="us-east-1",
                use_ssl=False,
            )
        )


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One bucket on the test server: ``uri`` is ``s3://<name>``."""

    server: S3Server
    name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.name}"

    def put(self, key: str, data: bytes) -> str:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)
        return f"{self.uri}/{key}"

    def get(self, key: str) -> bytes:
        body: bytes = self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in pages.paginate(Bucket=self.name, Prefix=prefix)
            for item in page.get("Contents", [])
        )


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """moto's S3 on 127.0.0.1 and a free port until the block ends (the tests' fixture and
    the bench's object-store input)."""
    import logging

    from moto.server import ThreadedMotoServer

    # One access-log line per request would bury a failing test's own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint=f"http://{host}:{port}")
    finally:
        server.stop()


def new_bucket(server: S3Server, prefix: str = "test-bucket") -> Bucket:
    """A new, empty bucket on ``server``."""
    name = f"{prefix}-{next(_buckets)}"
    server.client().create_bucket(Bucket=name)
    return Bucket(server, name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on 127.0.0.1 and a free port, for the whole session."""
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Bucket:
    """A new, empty bucket on the loopback S3 server."""
    return new_bucket(s3_server)
