"""A Ray head started with `ray start --head`, as on a KubeRay head pod: a cluster that
outlives each driver, with token auth and its node's metrics export port on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.components import Components
from tests.support.tools import free_port, port_open


@dataclass(frozen=True)
class RayHead:
    """How a driver reaches the head (``env``) and where Prometheus would scrape it."""

    env: dict[str, str]
    metrics_url: str


@contextlib.contextmanager
def ray_head(directory: Path, cpus: int = 2, timeout: float = 180.0) -> Iterator[RayHead]:
    """Start a head (its own ports, temp dir and auth token, so that it meets no other Ray on
    this machine), yield it, and stop its whole process family."""
    components = Components(directory)
    # Ray's socket paths must stay short: a temp dir under /tmp, not pytest's tmp_path.
    temp = tempfile.mkdtemp(prefix="embop-ray-", dir="/tmp")
    gcs, metrics = free_port(), free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(32).hex()}
    # Workers flush their metrics to the node's exporter every second (10 s by default), so a
    # short test job's are there before its workers end.
    flush = {"RAY_metrics_report_interval_ms": "1000"}
    ports = ("dashboard-agent-listen", "ray-client-server", "runtime-env-agent")
    components.start("ray", [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
        "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        f"--temp-dir={temp}", "--include-dashboard=false", f"--metrics-export-port={metrics}",
        *(f"--{name}-port={free_port()}" for name in ports),
        f"--num-cpus={cpus}", "--num-gpus=0", f"--object-store-memory={512 * 1024**2}",
    ], {**os.environ, **auth, **flush})  # fmt: skip
    try:
        components.ready(
            "ray", f"Ray metrics on 127.0.0.1:{metrics}", lambda: port_open(metrics), timeout
        )
        env = {**auth, "RAY_ADDRESS": f"127.0.0.1:{gcs}"}
        yield RayHead(env, f"http://127.0.0.1:{metrics}/metrics")
    finally:
        components.stop_all()
        shutil.rmtree(temp, ignore_errors=True)
