"""Job configs and inputs for the real `embedding-job` CLI, running it, reading what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.support import tools
from tests.support.images import good_images
from tests.support.models import DINOV2

CLI_TIMEOUT = float(os.environ.get("EMBEDDING_TEST_CLI_TIMEOUT", "600"))


def examples() -> list[Path]:
    """Every file in examples/: each is applied by a test."""
    return sorted((tools.ROOT / "examples").glob("*.yaml"))


def job(models_root: Path, input_uri: Path | str, out_uri: Path, **extra: Any) -> dict[str, Any]:
    """A job config over input_uri (ids in "id", no download retries, tiny DINOv2, batches of
    4, any failure fraction); each keyword updates that section."""
    config: dict[str, Any] = {
        "input": {
            "uri": str(input_uri),
            "idColumn": "id",
            "download": {"retries": 0, "timeoutSeconds": 5},
        },
        "model": {"name": DINOV2, "path": str(models_root), "dtype": "float32"},
        "inference": {"batchSize": 4},
        "output": {"uri": str(out_uri)},
        "errors": {"maxFailedFraction": 1.0},
    }
    for section, values in extra.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def table(path: Path, ids: list[str]) -> Path:
    """A Parquet table of (id, image bytes): good images, junk for ids starting with "bad"."""
    images = list(good_images().values())
    cells = [
        images[i % len(images)] if not row.startswith("bad") else b"junk"
        for i, row in enumerate(ids)
    ]
    pq.write_table(pa.table({"id": ids, "image": pa.array(cells, pa.binary())}), path)
    return path


def _cli(args: tuple[str, ...], env: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    full_env = {**os.environ, "DAFT_PROGRESS_BAR": "0", **(env or {})}
    return [sys.executable, "-m", "embedding_job.cli", "--log-format", "json", *args], full_env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``embedding-job`` in a fresh process (each Daft runner is chosen once per process)."""
    argv, full_env = _cli(args, env)
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def start_cli(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``embedding-job`` in the background, its output in ``log``, for a test that
    watches it run; the caller waits for it (``wait(CLI_TIMEOUT)``)."""
    argv, full_env = _cli(args, env)
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def read_output(uri: Path | str, io_config: Any = None) -> dict[str, list[Any]]:
    """The output Parquet read back with Daft (an object store's with its ``io_config``)."""
    import daft

    files = str(uri).rstrip("/") + "/*.parquet"
    return daft.read_parquet(files, io_config=io_config).to_pydict()


def read_manifest(uri: Path) -> dict[str, Any]:
    return json.loads((uri / "_manifest.json").read_text())


def assert_exactly_bad_rows_null(
    out: dict[str, list[Any]], ids: list[str], bad: set[str], dim: int
) -> None:
    """One output row per input id; exactly the ``bad`` ones null with an error, the rest
    L2-normalised vectors of ``dim``."""
    assert sorted(out["id"]) == sorted(ids), "rows out must equal rows in"
    for row_id, vector, error in zip(
        out["id"], out["embedding"], out["embedding_error"], strict=True
    ):
        if row_id in bad:
            assert vector is None and error, f"{row_id} should have failed"
        else:
            assert error is None, f"{row_id} failed: {error}"
            assert len(vector) == dim
            assert abs(np.linalg.norm(vector) - 1) < 1e-4
