"""Helpers to run the real `embedding-job` CLI and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

CLI_TIMEOUT = float(os.environ.get("EMBEDDING_TEST_CLI_TIMEOUT", "600"))


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``embedding-job`` in a fresh process (each Daft runner is chosen once per process)."""
    full_env = {**os.environ, "DAFT_PROGRESS_BAR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "embedding_job.cli", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def read_output(uri: Path) -> dict[str, list[Any]]:
    """The output Parquet read back with Daft (pyarrow 25 cannot read null fixed-size lists)."""
    import daft

    return daft.read_parquet(str(uri / "*.parquet")).to_pydict()


def read_manifest(uri: Path) -> dict[str, Any]:
    return json.loads((uri / "_manifest.json").read_text())
