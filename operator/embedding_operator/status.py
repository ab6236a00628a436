"""Pure status logic: a RayJob's status → the EmbeddingJob's phase, conditions and events."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from embedding_job.api import (
    GROUP,
    KIND,
    PHASE_EVENTS,
    TERMINAL_PHASES,
    Condition,
    ConditionStatus,
    ConditionType,
    EmbeddingJobStatus,
    EventReason,
    Phase,
)

SUBMITTED, RUNNING, SUSPENDED = Phase.SUBMITTED, Phase.RUNNING, Phase.SUSPENDED
SUCCEEDED, FAILED = Phase.SUCCEEDED, Phase.FAILED


@dataclass(frozen=True)
class Observation:
    """What the RayJob says: phase plus the CamelCase reason and a message for humans."""

    phase: Phase
    reason: str
    message: str
    #: Whether the job has a RayJob (False: refused or waiting before one was created).
    submitted: bool = True
    #: The Event for entering this phase, when not the phase's usual one; also posted when
    #: the reason changes within the phase.
    event: EventReason | None = None
    #: Whether that Event is a Warning (a failure always is).
    warning: bool = False


class Ownership(StrEnum):
    """Who an object of the job's (its RayJob, ServiceAccount, Role) belongs to."""

    OURS = "ours"
    #: An earlier EmbeddingJob of the same name: garbage that the collector is removing.
    PREVIOUS = "previous"
    #: Nothing of ours: a name taken by something else.
    FOREIGN = "foreign"


def embeddingjob_owners(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The EmbeddingJobs among an object's owners (their owner references)."""
    return [
        dict(ref)
        for ref in metadata.get("ownerReferences") or []
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
    ]


def owner_uids(metadata: dict[str, Any]) -> list[str]:
    """The uids of the EmbeddingJobs among an object's owners."""
    return [str(ref.get("uid")) for ref in embeddingjob_owners(metadata)]


def ownership(metadata: dict[str, Any], uid: str, name: str | None = None) -> Ownership:
    """Whether an object belongs to the EmbeddingJob ``uid``, to an earlier EmbeddingJob of
    the same ``name`` (being collected), or to neither."""
    owners = embeddingjob_owners(metadata)
    if any(str(ref.get("uid")) == uid for ref in owners):
        return Ownership.OURS
    if name is not None and any(ref.get("name") == name for ref in owners):
        return Ownership.PREVIOUS
    return Ownership.FOREIGN


def in_flight(status: dict[str, Any] | None) -> bool:
    """A job that has a RayJob and is not finished: its status follows that RayJob."""
    status = status or {}
    return bool(status.get("rayJobName")) and status.get("phase") not in TERMINAL_PHASES


def rayjob_missing(name: str) -> Observation:
    """A job whose RayJob is gone (deleted by hand): it fails rather than re-running."""
    return Observation(
        FAILED,
        "RayJobMissing",
        f"RayJob {name} was deleted before the job finished; its Ray cluster and any run in "
        "it are gone. Delete and re-create the EmbeddingJob to run it again.",
    )


def name_taken(kind: str, name: str) -> Observation:
    """The job's RayJob (or identity object) name is used by something it does not own."""
    return Observation(
        FAILED,
        "NameTaken",
        f"a {kind} named {name} exists in the namespace and is not this EmbeddingJob's: "
        "delete it, or give the EmbeddingJob another name",
        submitted=False,
    )


def waiting_for_previous(kind: str, name: str) -> Observation:
    """An earlier EmbeddingJob's object of the same name is still being garbage collected."""
    return Observation(
        SUBMITTED,
        EventReason.WAITING_FOR_PREVIOUS_JOB.value,
        f"{kind} {name} of an earlier EmbeddingJob of this name is being deleted; "
        "waiting for it to go",
        submitted=False,
        event=EventReason.WAITING_FOR_PREVIOUS_JOB,
    )


def observe(rayjob_status: dict[str, Any] | None) -> Observation:
    """Map KubeRay's jobDeploymentStatus / jobStatus / reason / message to our phase."""
    status = rayjob_status or {}
    deployment = status.get("jobDeploymentStatus") or "New"
    job = status.get("jobStatus") or ""
    kuberay_reason = status.get("reason") or ""
    message = status.get("message") or ""
    if deployment in ("New", ""):
        return Observation(SUBMITTED, "RayJobCreated", "waiting for KubeRay to start the cluster")
    if deployment == "Initializing":
        return Observation(SUBMITTED, "ClusterInitializing", message or "Ray cluster is starting")
    if deployment == "Waiting":
        return Observation(SUBMITTED, "WaitingForCluster", message or "waiting for the Ray head")
    if deployment == "Retrying":
        failed = status.get("failed") or 0
        return Observation(
            SUBMITTED, "Retrying", message or f"attempt failed ({failed} so far); retrying"
        )
    if deployment == "Running":
        if job == "PENDING" or not job:
            return Observation(SUBMITTED, "JobPending", message or "job submitted to Ray")
        return Observation(RUNNING, "Running", message or "embedding")
    if deployment in ("Suspending", "Suspended"):
        return Observation(SUSPENDED, deployment, message or "job is suspended")
    if deployment == "Complete":
        if job == "SUCCEEDED":
            return Observation(SUCCEEDED, "Succeeded", message or "job succeeded")
        return Observation(
            FAILED, kuberay_reason or f"Job{job.title() or 'Failed'}", message or f"job {job}"
        )
    if deployment == "Failed":
        return Observation(FAILED, kuberay_reason or "RayJobFailed", message or "RayJob failed")
    if deployment == "ValidationFailed":
        return Observation(FAILED, "ValidationFailed", message or "KubeRay rejected the RayJob")
    return Observation(SUBMITTED, "Unknown", f"unknown RayJob state {deployment!r}")


def with_job_error(observation: Observation, current: dict[str, Any]) -> Observation:
    """A failed job's own account (``status.jobError``, reported as it exits) replaces
    KubeRay's generic "entrypoint failed with exit code N, last logs: ..." message."""
    error = current.get("jobError") or {}
    # Only when the entrypoint itself failed: a deadline, a failed submission or a lost
    # cluster is KubeRay's to tell, and an earlier attempt's report must not mask it.
    job_failed = observation.reason in ("AppFailed", "JobFailed")
    if observation.phase != FAILED or not job_failed or not error.get("message"):
        return observation
    return Observation(FAILED, error.get("reason") or observation.reason, error["message"])


def conditions(
    phase: Phase,
    reason: str,
    message: str,
    generation: int,
    now: str,
    previous: list[dict[str, Any]] | None = None,
    *,
    submitted: bool = True,
) -> list[dict[str, Any]]:
    """Conditions for a phase; lastTransitionTime only moves when a condition's status flips.

    ``submitted`` is False for a job that never got a RayJob (an invalid spec).
    """
    truth = {
        ConditionType.SUBMITTED: submitted,
        ConditionType.RUNNING: phase is RUNNING,
        ConditionType.SUCCEEDED: phase is SUCCEEDED,
        ConditionType.FAILED: phase is FAILED,
        ConditionType.SUSPENDED: phase is SUSPENDED,
    }
    # Read as written, whatever version wrote it: only the type, status and time matter here.
    before = {c.get("type"): c for c in previous or []}
    result = []
    for kind, true in truth.items():
        status = ConditionStatus.TRUE if true else ConditionStatus.FALSE
        old = before.get(kind.value) or {}
        changed = old.get("status") != status.value
        since = now if changed else old.get("lastTransitionTime") or now
        condition = Condition(
            type=kind,
            status=status,
            reason=reason if true else f"Not{kind.value}",
            message=message if true else "",
            observed_generation=generation,
            last_transition_time=since,
        )
        result.append(condition.to_patch())
    return result


def status_patch(
    observation: Observation,
    rayjob_status: dict[str, Any] | None,
    current: dict[str, Any],
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The status to write for an observation, carrying over KubeRay's details."""
    status = rayjob_status or {}
    start = status.get("startTime") or current.get("startTime")
    if observation.phase in (RUNNING, *TERMINAL_PHASES) and not start and observation.submitted:
        start = now  # a job refused before it had a RayJob never started
    end = None
    if observation.phase in TERMINAL_PHASES:
        end = current.get("completionTime") or status.get("endTime") or now
    # Only what is known: a field set here, even to None, would be written (and None deletes).
    known = {
        "ray_cluster_name": status.get("rayClusterName"),
        "job_id": status.get("jobId"),
        "dashboard_url": status.get("dashboardURL"),
        "start_time": start,
        "completion_time": end,
    }
    patch = EmbeddingJobStatus(
        phase=observation.phase,
        reason=observation.reason,
        message=observation.message,
        observed_generation=generation,
        conditions=conditions(
            observation.phase,
            observation.reason,
            observation.message,
            generation,
            now,
            current.get("conditions"),
            submitted=observation.submitted,
        ),
        **{field: value for field, value in known.items() if value},
    )
    return patch.to_patch()


def transition_event(
    old_phase: str | None, new: Observation, old_reason: str | None = None
) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event for a phase change, or for a new reason within a
    phase when the observation names its own Event; None when nothing changed."""
    kind = "Warning" if new.phase is FAILED or new.warning else "Normal"
    if old_phase == new.phase:
        if new.event is None or new.reason == old_reason:
            return None
        return kind, new.event.value, f"{new.reason}: {new.message}"
    reason = (new.event or PHASE_EVENTS[new.phase]).value
    detail = f"{new.reason}: {new.message}" if new.message else new.reason
    return kind, reason, f"{old_phase or 'New'} → {new.phase} ({detail})"
