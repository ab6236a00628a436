"""The output location's ownership rules: nothing is touched before a run may write."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding_job.api import EmbeddingJobConfig
from embedding_job.errors import OutputExistsError
from embedding_job.io import output


def finished_output(out: Path) -> dict[str, bytes]:
    out.mkdir()
    files = {
        "part-0.parquet": b"PAR1 data of an earlier run",
        "_SUCCESS": b'{"rows": 3}\n',
        "_manifest.json": b'{"status": "succeeded"}\n',
        "_job.json": b'{"jobUid": "earlier-job"}\n',
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def config(out: Path, **output_spec: object) -> EmbeddingJobConfig:
    return EmbeddingJobConfig.model_validate(
        {"input": {"uri": "/in/images"}, "output": {"uri": str(out), **output_spec}}
    )


@pytest.mark.parametrize("job_uid", [None, "another-job"])
def test_a_refused_run_leaves_the_output_exactly_as_it_was(
    tmp_path: Path, job_uid: str | None
) -> None:
    before = finished_output(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="already holds 1 file"):
        output.prepare(config(tmp_path / "out"), job_uid=job_uid)
    assert snapshot(tmp_path / "out") == before


def test_a_run_that_may_write_withdraws_the_old_markers(tmp_path: Path) -> None:
    finished_output(tmp_path / "out")
    plan = output.prepare(config(tmp_path / "out", mode="overwrite"), job_uid="this-job")
    assert plan.write_mode == "overwrite"
    left = snapshot(tmp_path / "out")
    assert "_SUCCESS" not in left and "_manifest.json" not in left
    assert left["_job.json"].startswith(b'{\n  "jobUid": "this-job"')
