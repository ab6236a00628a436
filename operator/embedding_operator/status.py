"""Pure status logic: a RayJob's status → the EmbeddingJob's phase, conditions and events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PENDING, SUBMITTED, RUNNING = "Pending", "Submitted", "Running"
SUCCEEDED, FAILED, SUSPENDED = "Succeeded", "Failed", "Suspended"
TERMINAL = {SUCCEEDED, FAILED}
CONDITION_TYPES = ["Submitted", "Running", "Succeeded", "Failed", "Suspended"]

# Event reasons: a closed, CamelCase set (as KubeRay does).
EVENT_REASONS = {
    SUBMITTED: "RayJobSubmitted",
    RUNNING: "JobRunning",
    SUCCEEDED: "JobSucceeded",
    FAILED: "JobFailed",
    SUSPENDED: "JobSuspended",
}


@dataclass(frozen=True)
class Observation:
    """What the RayJob says: phase plus the CamelCase reason and a message for humans."""

    phase: str
    reason: str
    message: str


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
    phase: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
    previous: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Conditions for a phase; lastTransitionTime only moves when a condition's status flips."""
    truth = {
        "Submitted": phase != PENDING,
        "Running": phase == RUNNING,
        "Succeeded": phase == SUCCEEDED,
        "Failed": phase == FAILED,
        "Suspended": phase == SUSPENDED,
    }
    before = {c["type"]: c for c in previous or []}
    result = []
    for kind in CONDITION_TYPES:
        status = "True" if truth[kind] else "False"
        old = before.get(kind) or {}
        changed = old.get("status") != status
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": reason if truth[kind] else f"Not{kind}",
                "message": message if truth[kind] else "",
                "observedGeneration": generation,
                "lastTransitionTime": now if changed else old.get("lastTransitionTime") or now,
            }
        )
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
    patch: dict[str, Any] = {
        "phase": observation.phase,
        "reason": observation.reason,
        "message": observation.message,
        "observedGeneration": generation,
        "conditions": conditions(
            observation.phase,
            observation.reason,
            observation.message,
            generation,
            now,
            current.get("conditions"),
        ),
    }
    for ours, theirs in (
        ("rayClusterName", "rayClusterName"),
        ("jobId", "jobId"),
        ("dashboardURL", "dashboardURL"),
    ):
        if status.get(theirs):
            patch[ours] = status[theirs]
    start = status.get("startTime") or current.get("startTime")
    if observation.phase in (RUNNING, *TERMINAL) and not start:
        start = now
    if start:
        patch["startTime"] = start
    if observation.phase in TERMINAL:
        patch["completionTime"] = current.get("completionTime") or status.get("endTime") or now
    return patch


def transition_event(old_phase: str | None, new: Observation) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event for a phase change, or None when nothing changed."""
    if old_phase == new.phase:
        return None
    kind = "Warning" if new.phase == FAILED else "Normal"
    reason = EVENT_REASONS.get(new.phase, "PhaseChanged")
    detail = f"{new.reason}: {new.message}" if new.message else new.reason
    return kind, reason, f"{old_phase or 'New'} → {new.phase} ({detail})"
