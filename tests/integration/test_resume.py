"""Retries never duplicate rows; resume embeds only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.jobs import job, read_manifest, read_output, run_cli, table, write_config
from tests.support.waiting import wait_for


def config(models_root: Path, source: Path, out: Path, **output: Any) -> dict[str, Any]:
    return job(models_root, source, out, input={"srcType": "image_binary"}, output=output)


def torn_file(out: Path) -> Path:
    """What a crash mid-write leaves: a Parquet file without its footer."""
    path = out / "torn-by-a-crash-0.parquet"
    path.write_bytes(b"PAR1" + os.urandom(256))
    return path


def kill_once_embedding(path: Path, log: Path, env: dict[str, str]) -> None:
    """Run the job in its own process group and SIGKILL it once it has started embedding."""
    with log.open("w") as handle:
        job_process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "embedding_job.cli",
                "--log-format",
                "json",
                "run",
                "--config",
                str(path),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DAFT_PROGRESS_BAR": "0", **env},
            start_new_session=True,
        )
    wait_for(
        lambda: "embedding " in log.read_text() or job_process.poll() is not None,
        timeout=120,
        message="the job to start embedding",
    )
    os.killpg(job_process.pid, signal.SIGKILL)
    job_process.wait(timeout=30)


def ids_in(out: Path) -> Counter[str]:
    return Counter(read_output(out)["id"])


def test_a_retry_of_the_same_job_replaces_its_own_output(tmp_path: Path, models_root: Path) -> None:
    ids = [f"img-{i:02d}" for i in range(12)]
    source = table(tmp_path / "in.parquet", ids)
    out = tmp_path / "out"
    path = write_config(tmp_path / "job.yaml", config(models_root, source, out))
    first = run_cli("run", "--config", str(path), env={"EMBEDDING_JOB_UID": "uid-1"})
    assert first.returncode == 0, first.stderr[-2000:]
    torn = torn_file(out)
    # KubeRay retries the same RayJob (same EmbeddingJob uid): mode error must not block it.
    retry = run_cli("run", "--config", str(path), env={"EMBEDDING_JOB_UID": "uid-1"})
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert ids_in(out) == Counter(ids)
    assert not torn.exists()
    other = run_cli("run", "--config", str(path), env={"EMBEDDING_JOB_UID": "uid-2"})
    assert other.returncode == 3 and "already holds" in other.stderr


def test_an_attempt_killed_mid_run_then_retried_leaves_each_id_once(
    tmp_path: Path, models_root: Path
) -> None:
    ids = [f"img-{i:03d}" for i in range(60)]
    source = table(tmp_path / "in.parquet", ids)
    out = tmp_path / "out"
    path = write_config(tmp_path / "job.yaml", config(models_root, source, out))
    kill_once_embedding(path, tmp_path / "attempt-1.log", {"EMBEDDING_JOB_UID": "uid-k"})
    torn_file(out)
    retry = run_cli("run", "--config", str(path), env={"EMBEDDING_JOB_UID": "uid-k"})
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert ids_in(out) == Counter(ids)


def test_resume_embeds_only_the_missing_rows_and_counts_add_up(
    tmp_path: Path, models_root: Path
) -> None:
    ids = [f"img-{i:02d}" for i in range(20)] + ["bad-1", "bad-2"]
    out = tmp_path / "out"
    # The first run got through half of the input before it died...
    half = table(tmp_path / "half.parquet", ids[:10])
    first = run_cli(
        "run", "--config", str(write_config(tmp_path / "half.yaml", config(models_root, half, out)))
    )
    assert first.returncode == 0, first.stderr[-2000:]
    torn = torn_file(out)
    # ...and is re-applied on the whole input with resume.
    full = table(tmp_path / "full.parquet", ids)
    resumed = run_cli(
        "run",
        "--config",
        str(write_config(tmp_path / "full.yaml", config(models_root, full, out, resume=True))),
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ids_in(out) == Counter(ids), "every input id exactly once"
    assert not torn.exists()
    manifest = read_manifest(out)
    assert manifest["rowsSkipped"] == 10
    assert (manifest["rowsEmbedded"], manifest["rowsFailed"]) == (10, 2)
    assert (
        manifest["rowsEmbedded"] + manifest["rowsFailed"] + manifest["rowsSkipped"]
        == manifest["rowsIn"]
        == 22
    )
    assert manifest["rowsOut"] == 22 and len(manifest["files"]) == 2

    # Resuming the complete output again embeds nothing and adds no (empty) data file.
    again = run_cli("run", "--config", str(tmp_path / "full.yaml"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(manifest["files"])
    complete = read_manifest(out)
    assert (complete["rowsIn"], complete["rowsSkipped"], complete["rowsEmbedded"]) == (22, 22, 0)
    assert complete["rowsOut"] == 22 and complete["files"] == manifest["files"]
    assert (out / "_SUCCESS").is_file()


def test_resume_after_a_real_kill_completes_every_id_once(
    tmp_path: Path, models_root: Path
) -> None:
    ids = [f"img-{i:03d}" for i in range(60)]
    source = table(tmp_path / "in.parquet", ids)
    out = tmp_path / "out"
    path = write_config(tmp_path / "job.yaml", config(models_root, source, out, resume=True))
    kill_once_embedding(path, tmp_path / "first.log", {})
    resumed = run_cli("run", "--config", str(path))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ids_in(out) == Counter(ids)
    manifest = read_manifest(out)
    assert (
        manifest["rowsEmbedded"] + manifest["rowsFailed"] + manifest["rowsSkipped"]
        == manifest["rowsIn"]
        == 60
    )


def test_resume_needs_an_id(tmp_path: Path, models_root: Path) -> None:
    source = table(tmp_path / "in.parquet", ["a"])
    cfg = config(models_root, source, tmp_path / "out", resume=True)
    cfg["input"].pop("idColumn")
    result = run_cli("run", "--config", str(write_config(tmp_path / "job.yaml", cfg)))
    assert result.returncode == 2
    assert "output.resume needs input.idColumn" in result.stderr
