"""The job's models before any data moves: each found on disk, its family read, its pooling
resolved and its width known; then what each embedding worker and the manifest get."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedding_job.api import EmbeddingJobConfig, ModelSpec, Pooling
from embedding_job.model.embedder import EmbedderSettings
from embedding_job.model.families import read_checkpoint
from embedding_job.model.files import locate_model


@dataclass(frozen=True)
class PlannedModel:
    """One model of the job, checked: where it is, what it is, how it pools, its width."""

    spec: ModelSpec
    column: str
    directory: Path
    family: str
    pooling: Pooling
    dim: int

    def describe(self, with_alias: bool, device: str | None, dtype: str | None) -> dict[str, Any]:
        """This model's entry in the manifest's ``embeddings``; ``device`` and ``dtype`` are
        what the workers computed it with (row_counts.precision_used), None if it never ran."""
        entry: dict[str, Any] = {"column": self.column, "model": self.spec.name}
        if with_alias:
            entry["alias"] = self.spec.resolved_alias
        entry.update(
            {
                "family": self.family,
                "embeddingDim": self.dim,
                "device": device,
                "dtype": dtype,
                "pooling": self.pooling.value,
                "normalize": self.spec.normalize,
            }
        )
        return entry


def plan_models(cfg: EmbeddingJobConfig) -> list[PlannedModel]:
    """Every model of ``cfg``, in order: a missing model, or a pooling it does not have, fails
    here (ModelNotFoundError, ModelNotUsableError)."""
    planned = []
    for spec, column in cfg.embedding_columns():
        directory = locate_model(spec)
        checkpoint = read_checkpoint(directory)
        pooling = checkpoint.resolve_pooling(spec.pooling)
        planned.append(
            PlannedModel(
                spec=spec,
                column=column,
                directory=directory,
                family=checkpoint.family,
                pooling=pooling,
                dim=checkpoint.dim(pooling),
            )
        )
    return planned


def embedder_settings(
    cfg: EmbeddingJobConfig, models: list[PlannedModel], cpu_threads: int | None
) -> list[EmbedderSettings]:
    """One EmbedderSettings per model: its own precision, pooling and batch size, the rest
    (device, reading, decoding, preprocessing) shared."""
    inference = cfg.inference
    shared = EmbedderSettings(
        model_dir="",
        batch_size=inference.batch_size,
        device=inference.device,
        rank=inference.rank,
        decode_threads=inference.decode_threads,
        jpeg_draft_factor=inference.jpeg_draft_factor,
        compile=inference.compile,
        gpu_decode=inference.gpu_decode,
        cpu_threads=cpu_threads,
        preprocessing=cfg.preprocessing,
        read_threads=cfg.input.download.max_connections,
        decode_megapixels=inference.decode_megapixels,
    )
    return [
        dataclasses.replace(
            shared,
            model_dir=str(model.directory),
            dtype=model.spec.dtype,
            pooling=model.pooling,
            normalize=model.spec.normalize,
            batch_size=model.spec.batch_size or inference.batch_size,
        )
        for model in models
    ]
