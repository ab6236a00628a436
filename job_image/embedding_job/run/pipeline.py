"""The embedding job as a Daft plan: read → resolve bytes → embed → write, plus its manifest."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import daft
from daft import DataType, col
from daft.functions import when

from embedding_job.api import EmbeddingJobConfig, InferenceSpec, InputFormat, SrcType
from embedding_job.errors import InputNotFoundError, JobError, TooManyFailuresError
from embedding_job.imaging.datapath import available_cpus
from embedding_job.io import output, storage
from embedding_job.io.fetch import FetchSettings
from embedding_job.io.input_table import LISTING_ERROR, RAW_PATH, read_input
from embedding_job.io.io_config import io_config
from embedding_job.model.embedder import EmbedderSettings
from embedding_job.run import status_report as report
from embedding_job.run.metrics import job_labels
from embedding_job.run.model_plan import PlannedModel, embedder_settings, plan_models
from embedding_job.run.row_counts import NativeTracker, RayTracker, precision_used
from embedding_job.run.shared_worker import release
from embedding_job.run.udf import EmbedImages, result_dtype, result_field

log = logging.getLogger(__name__)

_RESULT = "__embedding_result"
#: Model batches per call of a GPU worker's embedding UDF unless inference.callBatchSize says
#: otherwise. Within a call the data path decodes the next batches while the model runs the
#: current one; with one model batch per call the device idles at the start of every call while
#: the first batch decodes (on a GPU that batch decodes slower than the model runs it).
MODEL_BATCHES_PER_CALL = 8
#: ... but no more rows per call than this by default (a call holds its rows' bytes).
MAX_ROWS_PER_CALL = 1024


def udf_batch_size(
    inference: InferenceSpec, model_batch: int | None = None, on_gpu: bool = True
) -> int:
    """Rows per call of the embedding UDF; ``model_batch``: the largest batch of the job's
    models (default inference.batchSize). A CPU worker decodes inline, between its model
    batches, so larger calls gain it nothing: by default it gets one model batch per call, and
    its first rows come out after one batch rather than eight (the demo's first rows: 8 images,
    not 24)."""
    model_batch = model_batch or inference.batch_size
    if inference.call_batch_size is not None:
        return max(model_batch, inference.call_batch_size)
    if not on_gpu:
        return model_batch
    return max(model_batch, min(model_batch * MODEL_BATCHES_PER_CALL, MAX_ROWS_PER_CALL))


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to execute: Daft's native runner in-process, or a Ray cluster."""

    runner: str = "native"  # native | ray
    ray_address: str | None = None


def configure_runner(options: RunOptions) -> None:
    """Select Daft's runner once per process."""
    if options.runner == "ray":
        daft.set_runner_ray(address=options.ray_address, noop_if_initialized=True)
    elif options.runner == "native":
        # As many threads as the job counts CPUs (in_process_cpus relies on it); Daft's own
        # count is the same unless the cgroup's limit is not the process's own.
        daft.set_runner_native(num_threads=available_cpus())
    else:
        raise JobError(f"unknown runner {options.runner!r}: use native or ray")


def output_columns(cfg: EmbeddingJobConfig) -> list[str]:
    """Input columns copied to the output, in order: id, pass-through, then the image URL."""
    spec = cfg.input
    if spec.resolved_format is InputFormat.IMAGES_GLOB:
        return ["path"]
    keep: list[str] = []
    for name in [spec.id_column, *spec.columns]:
        if name and name not in keep:
            keep.append(name)
    # A URL identifies the image; base64 or raw bytes would only bloat the output.
    if spec.src_type is SrcType.IMAGE_URL and spec.image_column not in keep:
        keep.append(spec.image_column)
    return keep


def in_process_cpus() -> float:
    """The CPUs the in-process UDF asks Daft for: Daft runs as many calls at once as its
    threads (one per CPU, ``configure_runner``) hold that many times. Two: one call runs the
    models while the next has its rows and its first images started (shared_worker); more
    would each hold a batch and a Daft thread while they wait. ``cpusPerWorker`` does not
    change it: it sets the model's torch threads (cpu_threads)."""
    return max(1.0, available_cpus() / 2)


def embed(
    df: daft.DataFrame,
    cfg: EmbeddingJobConfig,
    settings: list[EmbedderSettings],
    models: list[PlannedModel],
    workers: Workers,
    progress_actor: str | None = None,
    run: str = "",
) -> daft.DataFrame:
    """Add one embedding column per model and the error column; one output row per input
    row. One UDF call embeds each row with every model, from one read and one decode. ``run``
    names the query (its in-process worker is released by that name, shared_worker)."""
    spec = cfg.input
    source = (
        col("path") if spec.resolved_format is InputFormat.IMAGES_GLOB else col(spec.image_column)
    )
    # The workers read every image themselves, with the credentials this process has.
    reads = FetchSettings.from_env(spec.download)
    labels = job_labels([model.spec.name for model in models])
    udf: Any = EmbedImages(run, settings, spec.src_type, reads, progress_actor, labels)
    inference = cfg.inference
    cpus = in_process_cpus() if workers.in_process else inference.cpus_per_worker
    # Resources are decided per run (GPUs present, concurrency, batch size), not at import time.
    call = dataclasses.replace(
        udf.embed,
        gpus=workers.gpus,
        cpus=cpus,
        # In this process: Daft runs the UDF in its own threads (no actor pool, whose size
        # max_concurrency sets; one Embedder for them all, shared_worker).
        use_process=False if workers.in_process else None,
        max_concurrency=None if workers.in_process else workers.concurrency,
        batch_size=udf_batch_size(
            cfg.inference, max(s.batch_size for s in settings), on_gpu=workers.gpus > 0
        ),
        return_dtype=result_dtype(len(models)),
    )
    listed = RAW_PATH in df.column_names
    result = call(source, col(RAW_PATH)) if listed else call(source)
    embeddings = {}
    for number, model in enumerate(models):
        vector_type = DataType.fixed_size_list(DataType.float32(), model.dim)
        embedding = col(_RESULT)[result_field(number)].cast(vector_type)
        if listed:
            # What the listing already knew wins over the read's "Is a directory".
            embedding = when(col(LISTING_ERROR).is_null(), embedding)
        embeddings[model.column] = embedding
    error = col(_RESULT)["error"]
    if listed:
        error = col(LISTING_ERROR).fill_null(error)
    out = cfg.output
    return (
        df.with_column(_RESULT, result)
        .with_columns({**embeddings, out.error_column: error})
        .select(*output_columns(cfg), *embeddings, out.error_column)
    )


@dataclasses.dataclass(frozen=True)
class Workers:
    """How many embedding workers run, the GPUs each one holds, and whether the one worker is
    this process itself."""

    gpus: float
    concurrency: int
    #: The native runner's one worker runs in the job's own process, in Daft's threads: no
    #: worker process to start (a second import of torch and transformers), and no copy of each
    #: batch's bytes into one (the model waited for it: the ceiling's binary and base64 modes).
    in_process: bool = False


def plan_workers(cfg: EmbeddingJobConfig, options: RunOptions) -> Workers:
    """Workers the cluster can actually provide: GPUs only where there are GPUs, and by
    default one worker per ``gpusPerWorker`` GPUs so that no GPU of the cluster idles."""
    requested = cfg.inference.gpus_per_worker
    explicit = cfg.inference.concurrency
    available = 0.0
    if requested > 0 and cfg.inference.device.value != "cpu":
        if options.runner == "ray":
            import ray

            available = float(ray.cluster_resources().get("GPU", 0))
        else:
            import torch

            available = float(torch.cuda.device_count())
        if available == 0:
            log.warning("no GPU in the cluster: embedding workers run on CPU")
    gpus = requested if available > 0 else 0.0
    if explicit is not None:
        concurrency = explicit
    elif gpus > 0 and options.runner == "ray":
        concurrency = max(1, int(available // gpus))
    else:
        concurrency = 1
    in_process = options.runner == "native" and concurrency == 1
    where = " (in this process)" if in_process else ""
    log.info("embedding workers: %d, %s GPU each%s", concurrency, gpus, where)
    return Workers(gpus=gpus, concurrency=concurrency, in_process=in_process)


def cpu_threads(inference: InferenceSpec, workers: Workers, runner: str) -> int | None:
    """torch threads of a worker without a GPU (EmbedderSettings.cpu_threads).

    Its reserved CPUs when set. Otherwise, on Ray, 0: every CPU of the worker's own node (Ray
    starts a worker that reserves no CPUs with OMP_NUM_THREADS=1, half the speed of two cores);
    natively, torch's default, or this machine's share when several workers run.
    """
    if workers.gpus > 0:
        return None
    if inference.cpus_per_worker is not None:
        return max(1, math.floor(inference.cpus_per_worker))
    if runner == "ray":
        return 0
    if workers.concurrency > 1:
        return max(1, available_cpus() // workers.concurrency)
    return None


def run_job(cfg: EmbeddingJobConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """Run the whole job; returns the manifest. Raises JobError subclasses on failure."""
    options = options or RunOptions()
    started = datetime.now(UTC)
    clock = time.monotonic()
    # Cheap checks first: a missing model (or a pooling it lacks) or an occupied output must
    # fail before any data moves.
    models = plan_models(cfg)
    configure_runner(options)
    io = io_config(cfg.input.download)
    df = read_input(cfg, io)
    # Counted from the input, not the output, so that a row lost on the way shows.
    rows_in = df.count_rows()
    if rows_in == 0:
        raise InputNotFoundError(f"input {cfg.input.uri!r} has no rows")
    plan = output.prepare(cfg, io=io)
    df, skipped, kept_rows = output.skip_done(df, cfg, plan)
    workers = plan_workers(cfg, options)
    threads = cpu_threads(cfg.inference, workers, options.runner)
    settings = embedder_settings(cfg, models, threads)
    log.info(
        "embedding %s (%s) with %s → %s",
        cfg.input.uri,
        cfg.input.resolved_format.value,
        ", ".join(f"{m.spec.name} ({m.family}, {m.pooling.value})" for m in models),
        cfg.output.uri,
    )
    tracker: NativeTracker | RayTracker = (
        RayTracker() if options.runner == "ray" else NativeTracker()
    )
    reporter = report.from_env()
    reporting = (
        report.ProgressLoop(
            reporter,
            tracker.snapshot,
            skipped=skipped,
            total=rows_in,
            interval=float(os.environ.get("EMBEDDING_JOB_PROGRESS_SECONDS", "5")),
        )
        if reporter is not None
        else contextlib.nullcontext()
    )
    try:
        with reporting:
            if skipped < rows_in:
                run = uuid.uuid4().hex
                plan_df = embed(df, cfg, settings, models, workers, tracker.actor_name, run)
                try:
                    written = output.write(plan_df, cfg, plan, io)
                finally:
                    release(run)
            else:
                # Resuming a complete output: no model to load, and no empty data file to add.
                log.info("resuming: every input row is already in the output")
                written = []
        used = precision_used(tracker.rows_by_precision(), len(models))
    finally:
        tracker.close()
    counts = output.count_results(cfg, written, io)
    failed_fraction = counts["failed"] / counts["rows"] if counts["rows"] else 0.0
    too_many = failed_fraction > cfg.errors.max_failed_fraction
    lost = rows_in - skipped - counts["rows"]
    message = None
    if lost:
        message = f"{lost} of {rows_in} input rows have no output row"
    elif too_many:
        message = (
            f"{counts['failed']} of {counts['rows']} rows failed ({failed_fraction:.1%} > "
            f"errors.maxFailedFraction {cfg.errors.max_failed_fraction:.1%}); first errors: "
            + "; ".join(counts["errors"])
        )
    manifest = output.build_manifest(
        cfg,
        status="failed" if too_many or lost else "succeeded",
        rows_in=rows_in,
        models=[
            model.describe(with_alias=bool(cfg.models), device=device, dtype=dtype)
            for model, (device, dtype) in zip(models, used, strict=True)
        ],
        files=plan.kept_files + written,
        counts=counts,
        skipped=skipped,
        kept_rows=kept_rows,
        started=started,
        finished=datetime.now(UTC),
        message=message,
    )
    storage.write_json(cfg.output.uri, output.MANIFEST_NAME, manifest)
    if reporter is not None:
        reporter.result(manifest)
    if lost:
        raise JobError(f"{message} — output at {cfg.output.uri} is incomplete")
    if too_many:
        raise TooManyFailuresError(f"{message} — output at {cfg.output.uri} is incomplete")
    storage.write_json(cfg.output.uri, output.SUCCESS_NAME, {"rows": manifest["rowsOut"]})
    log.info(
        "wrote %d rows (%d failed, %d skipped) to %s in %.1fs",
        counts["rows"],
        counts["failed"],
        skipped,
        cfg.output.uri,
        time.monotonic() - clock,
    )
    return manifest
