"""The output location: who owns it, what is already done, writing, counting, the manifest.

Retries never duplicate rows: a job run by the operator carries its EmbeddingJob's uid
(``EMBEDDING_JOB_UID``) and stamps it into ``_job.json``; a later attempt of the same job
replaces everything the earlier one wrote (Daft's overwrite removes every file it did not write).
With ``output.resume`` a run keeps the complete data files already there, skips their ids and
appends the rest; torn files left by a crash are removed first.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import datetime
from typing import Any, Literal

import daft
from daft import DataType, col
from daft.io import IOConfig

from embedding_job.api import (
    JOB_UID_ENV,
    EmbeddingJobConfig,
    InputFormat,
    OutputFormat,
    WriteMode,
)
from embedding_job.errors import JobError, OutputExistsError
from embedding_job.io import storage

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
SUCCESS_NAME = "_SUCCESS"
JOB_MARKER = "_job.json"
_CONTROL_FILES = (MANIFEST_NAME, SUCCESS_NAME, JOB_MARKER)


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """How this run writes: replace everything, or append after the rows already done."""

    write_mode: Literal["overwrite", "append"]
    kept_files: list[str]
    done_ids: daft.DataFrame | None = None


def id_column(cfg: EmbeddingJobConfig) -> str | None:
    """The column that identifies an input row in the output."""
    if cfg.input.resolved_format is InputFormat.IMAGES_GLOB:
        return cfg.input.id_column or "path"
    return cfg.input.id_column


def data_files(uri: str) -> list[str]:
    """Data files in the output (control files excluded)."""
    return [f for f in storage.list_files(uri) if not f.endswith(_CONTROL_FILES)]


def _owner(uri: str) -> str | None:
    marker = storage.read_json(uri, JOB_MARKER)
    return None if marker is None else marker.get("jobUid")


def _complete(path: str) -> bool:
    """A Parquet file is complete when its footer reads; a crash mid-write leaves none."""
    import pyarrow.parquet as pq

    fs, local = storage.filesystem(path)
    try:
        with fs.open_input_file(local) as handle:
            pq.read_metadata(handle)
    except Exception:  # noqa: BLE001 - any unreadable file is a torn one
        return False
    return True


def prepare(
    cfg: EmbeddingJobConfig, job_uid: str | None = None, io: IOConfig | None = None
) -> OutputPlan:
    """Decide how to write, refusing foreign output unless asked; never duplicates rows."""
    uri = cfg.output.uri
    job_uid = job_uid if job_uid is not None else os.environ.get(JOB_UID_ENV) or None
    existing = data_files(uri)
    owner = _owner(uri)
    key = id_column(cfg)
    if cfg.output.resume and key is not None:
        # The contract guarantees an id and Parquet output for resume.
        kept = [f for f in existing if _complete(f)]
        for torn in sorted(set(existing) - set(kept)):
            log.warning("removing incomplete file %s left by an earlier attempt", torn)
            storage.delete_path(torn)
        done = daft.read_parquet(kept, io_config=io).select(col(key)) if kept else None
        return _claim(uri, job_uid, OutputPlan("append", kept, done))
    if existing and cfg.output.mode is WriteMode.ERROR and not (job_uid and owner == job_uid):
        raise OutputExistsError(
            f"output {uri!r} already holds {len(existing)} file(s); choose another "
            "output.uri, set output.mode=overwrite, or output.resume=true to continue it"
        )
    if existing and job_uid and owner == job_uid:
        log.warning("output %s is from an earlier attempt of this job: replacing it", uri)
    return _claim(uri, job_uid, OutputPlan("overwrite", []))


def _claim(uri: str, job_uid: str | None, plan: OutputPlan) -> OutputPlan:
    # Only once this run may write: a refused run leaves the output exactly as it was.
    storage.delete_file(uri, SUCCESS_NAME)
    storage.delete_file(uri, MANIFEST_NAME)
    storage.write_json(uri, JOB_MARKER, {"jobUid": job_uid})
    return plan


def skip_done(
    df: daft.DataFrame, cfg: EmbeddingJobConfig, plan: OutputPlan
) -> tuple[daft.DataFrame, int, int]:
    """Drop input rows whose id is already in the kept output (resume).

    Returns (remaining input, input rows skipped, rows in the kept files).
    """
    key = id_column(cfg)
    if plan.done_ids is None or key is None:
        return df, 0, 0
    done = plan.done_ids.distinct()
    skipped = df.join(done, on=key, how="semi").count_rows()
    kept_rows = plan.done_ids.count_rows()
    log.info("resuming: %d input rows already embedded, skipping them", skipped)
    return df.join(done, on=key, how="anti"), skipped, kept_rows


def write(
    df: daft.DataFrame, cfg: EmbeddingJobConfig, plan: OutputPlan, io: IOConfig | None = None
) -> list[str]:
    """Write with Daft's writers; returns the data files this run wrote, as URIs."""
    out = cfg.output
    if out.format is OutputFormat.PARQUET:
        # A variable-length list on disk: every Parquet reader opens it, null rows included
        # (pyarrow < 26, which daft pins, cannot read a null entry of a fixed-size list).
        # Lance keeps the fixed-size vector its indexes want.
        as_list = DataType.list(DataType.float32())
        df = df.with_columns({c: col(c).cast(as_list) for _, c in cfg.embedding_columns()})
        written = df.write_parquet(out.uri, write_mode=plan.write_mode, io_config=io)
        # Daft reports object-store paths without their scheme (bucket/key).
        files = [storage.as_uri(out.uri, str(p)) for p in written.to_pydict()["path"]]
    else:
        try:
            df.write_lance(out.uri, mode="overwrite", io_config=io)
        except ImportError:
            raise JobError(
                "output.format lance needs the lance extra: pip install 'embedding-job[lance]'"
            ) from None
        files = data_files(out.uri)
    # Daft's overwrite removed every file it did not write, our marker included.
    job_uid = os.environ.get(JOB_UID_ENV) or None
    storage.write_json(out.uri, JOB_MARKER, {"jobUid": job_uid})
    return files


def count_results(
    cfg: EmbeddingJobConfig, files: list[str], io: IOConfig | None = None, sample: int = 5
) -> dict[str, Any]:
    """Rows written, rows failed and the first few errors, read back from the output."""
    err = cfg.output.error_column
    if not files:
        return {"rows": 0, "failed": 0, "errors": []}
    if cfg.output.format is OutputFormat.PARQUET:
        df = daft.read_parquet(files, io_config=io).select(col(err))
    else:
        import daft_lance

        df = daft_lance.read_lance(cfg.output.uri, io_config=io).select(col(err))
    totals = df.agg(col(err).count("all").alias("rows"), col(err).count("valid").alias("failed"))
    counts = totals.to_pydict()
    errors = df.where(col(err).not_null()).limit(sample).to_pydict()[err]
    return {"rows": int(counts["rows"][0]), "failed": int(counts["failed"][0]), "errors": errors}


def build_manifest(
    cfg: EmbeddingJobConfig,
    *,
    status: str,
    rows_in: int,
    models: list[dict[str, Any]],
    files: list[str],
    counts: dict[str, Any],
    skipped: int,
    kept_rows: int,
    started: datetime,
    finished: datetime,
    message: str | None = None,
) -> dict[str, Any]:
    """The JSON manifest written next to the data.

    ``rowsEmbedded + rowsFailed + rowsSkipped == rowsIn`` for this run; ``rowsOut`` counts every
    row in the output, those kept from earlier runs included. ``models``: each model's entry
    (column, model, family, embeddingDim, device, dtype, pooling, normalize), kept as
    ``embeddings``; its device and dtype are what the workers computed with (a CPU computes
    float16 requests in float32; the request stays in ``config``), None when no model ran. The
    top-level embeddingDim, embeddingColumn, device, dtype, pooling and normalize are the
    model's when there is one, null with several (``model`` then names them all).
    """
    only = models[0] if len(models) == 1 else {}
    return {
        "status": status,
        "message": message,
        "output": {"uri": cfg.output.uri, "format": cfg.output.format.value},
        "files": sorted(storage.relative(cfg.output.uri, f) for f in files),
        "rowsIn": rows_in,
        "rowsEmbedded": counts["rows"] - counts["failed"],
        "rowsFailed": counts["failed"],
        "rowsSkipped": skipped,
        "rowsOut": counts["rows"] + kept_rows,
        "firstErrors": counts["errors"],
        "embeddingDim": only.get("embeddingDim"),
        "embeddingColumn": only.get("column"),
        "errorColumn": cfg.output.error_column,
        "model": ", ".join(m["model"] for m in models),
        "device": only.get("device"),
        "dtype": only.get("dtype"),
        "pooling": only.get("pooling"),
        "normalize": only.get("normalize"),
        "embeddings": models,
        "startedAt": started.isoformat(timespec="seconds"),
        "finishedAt": finished.isoformat(timespec="seconds"),
        "config": cfg.to_wire(),
    }
