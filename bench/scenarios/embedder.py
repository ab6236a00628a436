"""``embedder``: ``Embedder.embed_bytes`` in-process, called per Daft-sized batch (the rows the
pipeline gives each call of its UDF: ``pipeline.udf_batch_size``, or ``--call-batch-size``);
``embedder_stream``: the same on the whole set in one call (decode overlaps the model)."""

from __future__ import annotations

from typing import Any

from bench.in_process import InProcessScenario, Worker, batches, timed
from embedding_job.imaging.datapath import available_cpus


def _measure(worker: Worker, stream: bool) -> dict[str, Any]:
    from embedding_job.api import Device, DType
    from embedding_job.model.embedder import Embedder, EmbedderSettings

    spec, datas = worker.spec, worker.datas
    embedder = Embedder(
        EmbedderSettings(
            model_dir=spec.model_dir,
            dtype=DType(spec.dtype),
            batch_size=spec.batch_size,
            device=Device(spec.device),
            jpeg_draft_factor=spec.draft_factor,
        )
    )
    step = len(datas) if stream else spec.call_batch_size

    def run_pass() -> int:
        for batch in batches(datas, step):
            embedder.embed_bytes(batch)
        return len(datas)

    figures: dict[str, Any] = timed(
        run_pass, lambda: embedder.embed_bytes(datas[: spec.batch_size]), spec.min_seconds
    )
    figures["threads"] = max(available_cpus(), embedder.datapath.threads)
    embedder.close()
    return figures


def measure_per_call(worker: Worker) -> dict[str, Any]:
    """One ``embed_bytes`` call per Daft-sized batch."""
    return _measure(worker, stream=False)


def measure_stream(worker: Worker) -> dict[str, Any]:
    """One ``embed_bytes`` call on every image."""
    return _measure(worker, stream=True)


PER_CALL = InProcessScenario("embedder", measure_per_call)
STREAM = InProcessScenario("embedder_stream", measure_stream)
