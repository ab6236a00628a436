"""The EmbeddingJob's status: phases, conditions, event reasons and the status fields.

Written by the operator (phase, conditions, RayJob details) and by the job itself (progress,
output, jobError). Both build it from these models, and the CRD's status schema is generated
from them, so a status key has exactly one spelling.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict


class Phase(StrEnum):
    """Where a job is; Succeeded and Failed are final."""

    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})


class ConditionType(StrEnum):
    """One condition per phase, True while the job is in it (Submitted: once a RayJob exists)."""

    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class EventReason(StrEnum):
    """The closed set of reasons of the Events posted on an EmbeddingJob."""

    INVALID_SPEC = "InvalidSpec"
    POLICY_DENIED = "PolicyDenied"
    RAYJOB_SUBMITTED = "RayJobSubmitted"
    JOB_RUNNING = "JobRunning"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    JOB_SUSPENDED = "JobSuspended"
    WAITING_FOR_PREVIOUS_JOB = "WaitingForPreviousJob"
    #: The job's Ray pods cannot start yet: an image that cannot be pulled, no node for them.
    PODS_NOT_STARTING = "PodsNotStarting"


#: The Event posted when a job enters a phase.
PHASE_EVENTS = {
    Phase.SUBMITTED: EventReason.RAYJOB_SUBMITTED,
    Phase.RUNNING: EventReason.JOB_RUNNING,
    Phase.SUCCEEDED: EventReason.JOB_SUCCEEDED,
    Phase.FAILED: EventReason.JOB_FAILED,
    Phase.SUSPENDED: EventReason.JOB_SUSPENDED,
}

_TIME: JsonDict = {"format": "date-time"}


def timestamp() -> str:
    """Now, as every time field of the status spells it (RFC 3339, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as the API writes it (``Z`` or an offset); ValueError if not one."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class StatusPart(BaseModel):
    """Base of the status models: camelCase on the wire; unknown keys ignored when read (a
    status written by another version stays readable)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="ignore",
    )

    def to_patch(self) -> dict[str, Any]:
        """The fields that were set, as a JSON merge patch (a field set to None deletes it)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Condition(StatusPart):
    """A condition, per Kubernetes API conventions."""

    type: ConditionType = Field(
        ..., description="Submitted, Running, Succeeded, Failed, Suspended."
    )
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str | None = Field(None, description="CamelCase reason for the status.")
    message: str | None = Field(None, description="Human-readable details.")
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was set for."
    )
    last_transition_time: str | None = Field(
        None, description="When the status last changed.", json_schema_extra=_TIME
    )


class Progress(StatusPart):
    """Reported by the running job every few seconds (best effort)."""

    rows_total: int | None = Field(None, description="Input rows, when known.")
    rows_done: int | None = Field(
        None, description="Rows processed (embedded or failed) by this run."
    )
    rows_failed: int | None = Field(None, description="Rows that failed so far.")
    rows_skipped: int | None = Field(
        None, description="Rows skipped because an earlier run did them."
    )
    images_per_second: float | None = Field(
        None, description="Rows per second over the last minute (0 while the model loads)."
    )
    remaining_seconds: int | None = Field(
        None,
        description="Estimated seconds until every row is done, at imagesPerSecond, as of "
        "updatedAt; absent until there is a rate.",
    )
    updated_at: str | None = Field(
        None, description="When the job last reported.", json_schema_extra=_TIME
    )


class JobErrorReport(StatusPart):
    """Why the job itself failed, reported by the job as it exits (its last attempt); becomes
    reason and message when the phase is Failed."""

    reason: str | None = Field(
        None, description="CamelCase error kind, e.g. ModelNotFound, TooManyFailures."
    )
    message: str | None = Field(None, description="What went wrong and how to fix it.")
    time: str | None = Field(None, description="When the job reported it.", json_schema_extra=_TIME)


#: A model's device and dtype as the workers used them (the request is in the config).
_DEVICE = "Where the model ran: cuda or cpu."
_DTYPE = "Precision the model computed in (float32 on a CPU, whatever was asked)."


class EmbeddingOutput(StatusPart):
    """One model's vectors in the output."""

    column: str | None = Field(None, description="The output column holding them.")
    model: str | None = Field(None, description="The model that produced them.")
    embedding_dim: int | None = Field(None, description="Length of each vector.")
    device: str | None = Field(None, description=_DEVICE)
    dtype: str | None = Field(None, description=_DTYPE)
    pooling: str | None = Field(
        None, description="How the model's output became a vector: cls, mean, pooler, projected."
    )


class OutputStatus(StatusPart):
    """Where the embeddings are, and what was written."""

    uri: str | None = Field(None, description="Output location (output.uri of the spec).")
    format: str | None = Field(None, description="parquet or lance.")
    files: list[str] | None = Field(None, description="Data files written, relative to uri.")
    rows: int | None = Field(None, description="Rows in the output (one per input row).")
    rows_failed: int | None = Field(None, description="Rows whose image could not be embedded.")
    rows_skipped: int | None = Field(None, description="Rows kept from an earlier run (resume).")
    embedding_dim: int | None = Field(None, description="Length of each embedding.")
    model: str | None = Field(None, description="Model that produced the embeddings.")
    device: str | None = Field(None, description=_DEVICE)
    dtype: str | None = Field(None, description=_DTYPE)
    pooling: str | None = Field(None, description="cls, mean, pooler or projected.")
    embeddings: list[EmbeddingOutput] | None = Field(
        None, description="Each model's column, width, device, precision and pooling."
    )


class EmbeddingJobStatus(StatusPart):
    """Observed state, written by the operator (and the job's progress and output)."""

    phase: Phase | None = Field(
        None, description="Submitted, Running, Succeeded, Failed or Suspended."
    )
    reason: str | None = Field(None, description="CamelCase reason of the current phase.")
    message: str | None = Field(None, description="Human-readable details of the current phase.")
    observed_generation: int | None = Field(
        None, description="metadata.generation the status describes."
    )
    conditions: list[Condition] | None = Field(
        None,
        description="Submitted, Running, Succeeded, Failed and Suspended conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    model: str | None = Field(
        None,
        description="The model, or the models in their order, the job embeds with (the spec's "
        "model or models; kubectl get ej's MODEL column).",
    )
    ray_job_name: str | None = Field(None, description="The RayJob that runs this job.")
    ray_cluster_name: str | None = Field(
        None, description="The RayCluster KubeRay created for the RayJob."
    )
    job_id: str | None = Field(None, description="Ray job submission id.")
    dashboard_url: str | None = Field(
        None, alias="dashboardURL", description="Ray dashboard address of the cluster."
    )
    start_time: str | None = Field(
        None, description="When the job started running.", json_schema_extra=_TIME
    )
    completion_time: str | None = Field(
        None, description="When the job finished (succeeded or failed).", json_schema_extra=_TIME
    )
    progress: Progress | None = Field(None, description=Progress.__doc__)
    job_error: JobErrorReport | None = Field(None, description=JobErrorReport.__doc__)
    output: OutputStatus | None = Field(None, description=OutputStatus.__doc__)
    kopf: dict[str, Any] | None = Field(
        None,
        description="The operator's own record (kopf's): what it last handled, and its "
        "handlers' progress. Kept in the status so that one write carries it with the status.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
