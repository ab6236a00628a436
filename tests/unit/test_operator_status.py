"""Status mapping for every KubeRay state."""

from __future__ import annotations

import pytest

from embedding_operator.status import (
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    SUSPENDED,
    conditions,
    observe,
    status_patch,
    transition_event,
    with_job_error,
)

NOW = "2026-11-28T10:00:00Z"


@pytest.mark.parametrize(
    ("rayjob", "phase", "reason"),
    [
        (None, SUBMITTED, "RayJobCreated"),
        ({"jobDeploymentStatus": "New"}, SUBMITTED, "RayJobCreated"),
        ({"jobDeploymentStatus": "Initializing"}, SUBMITTED, "ClusterInitializing"),
        ({"jobDeploymentStatus": "Waiting"}, SUBMITTED, "WaitingForCluster"),
        ({"jobDeploymentStatus": "Retrying", "failed": 1}, SUBMITTED, "Retrying"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}, SUBMITTED, "JobPending"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, RUNNING, "Running"),
        ({"jobDeploymentStatus": "Suspending"}, SUSPENDED, "Suspending"),
        ({"jobDeploymentStatus": "Suspended"}, SUSPENDED, "Suspended"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, SUCCEEDED, "Succeeded"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, FAILED, "JobStopped"),
        (
            {
                "jobDeploymentStatus": "Failed",
                "jobStatus": "FAILED",
                "reason": "AppFailed",
                "message": "exit 4",
            },
            FAILED,
            "AppFailed",
        ),
        (
            {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"},
            FAILED,
            "DeadlineExceeded",
        ),
        (
            {"jobDeploymentStatus": "ValidationFailed", "message": "bad spec"},
            FAILED,
            "ValidationFailed",
        ),
        ({"jobDeploymentStatus": "Exploded"}, SUBMITTED, "Unknown"),
    ],
)
def test_every_kuberay_state_maps_to_a_phase(rayjob: dict | None, phase: str, reason: str) -> None:
    observation = observe(rayjob)
    assert (observation.phase, observation.reason) == (phase, reason)
    assert observation.message


def test_kuberay_message_is_carried_over() -> None:
    observation = observe(
        {"jobDeploymentStatus": "Failed", "reason": "AppFailed", "message": "exit 4"}
    )
    assert observation.message == "exit 4"


def test_a_failed_jobs_own_error_replaces_kuberays_generic_message() -> None:
    failed = observe(
        {
            "jobDeploymentStatus": "Complete",
            "jobStatus": "FAILED",
            "reason": "AppFailed",
            "message": "Job entrypoint command failed with exit code 3, last available logs: ...",
        }
    )
    error = {"reason": "ModelNotFound", "message": "model 'x' not found: /models/x"}
    assert with_job_error(failed, {"jobError": error}) == type(failed)(
        FAILED, "ModelNotFound", "model 'x' not found: /models/x"
    )
    assert with_job_error(failed, {}) == failed
    # Only the entrypoint's own failure takes it: a stale report never overrides a running
    # job, nor KubeRay's account of a deadline or a failed submission.
    running = observe({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    assert with_job_error(running, {"jobError": error}) == running
    deadline = observe(
        {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded", "message": "too long"}
    )
    assert with_job_error(deadline, {"jobError": error}) == deadline


def test_conditions_keep_transition_times_until_they_flip() -> None:
    first = conditions(RUNNING, "Running", "embedding", 1, "t1")
    again = conditions(RUNNING, "Running", "embedding", 1, "t2", first)
    assert {c["type"]: c["lastTransitionTime"] for c in again}["Running"] == "t1"
    done = conditions(SUCCEEDED, "Succeeded", "ok", 1, "t3", again)
    by_type = {c["type"]: c for c in done}
    assert (
        by_type["Running"]["status"] == "False" and by_type["Running"]["lastTransitionTime"] == "t3"
    )
    assert by_type["Succeeded"]["status"] == "True"
    assert by_type["Submitted"]["lastTransitionTime"] == "t1"


def test_status_patch_carries_kuberay_fields_and_times() -> None:
    rayjob = {
        "jobDeploymentStatus": "Complete",
        "jobStatus": "SUCCEEDED",
        "rayClusterName": "photos-abc",
        "jobId": "photos-xyz",
        "dashboardURL": "photos-head-svc.ns.svc:8265",
        "startTime": "2026-11-28T09:00:00Z",
        "endTime": "2026-11-28T09:30:00Z",
    }
    patch = status_patch(observe(rayjob), rayjob, {}, 3, NOW)
    assert patch["phase"] == SUCCEEDED and patch["observedGeneration"] == 3
    assert (patch["rayClusterName"], patch["jobId"]) == ("photos-abc", "photos-xyz")
    assert (patch["startTime"], patch["completionTime"]) == (
        "2026-11-28T09:00:00Z",
        "2026-11-28T09:30:00Z",
    )


def test_running_without_kuberay_start_time_uses_now_and_keeps_it() -> None:
    rayjob = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    first = status_patch(observe(rayjob), rayjob, {}, 1, NOW)
    later = status_patch(observe(rayjob), rayjob, first, 1, "2026-11-28T11:00:00Z")
    assert first["startTime"] == later["startTime"] == NOW
    assert "completionTime" not in later


def test_events_only_on_transitions() -> None:
    running = observe({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    assert transition_event(RUNNING, running) is None
    kind, reason, message = transition_event(SUBMITTED, running)
    assert (kind, reason) == ("Normal", "JobRunning") and "Submitted → Running" in message
    failed = observe({"jobDeploymentStatus": "Failed", "reason": "AppFailed", "message": "exit 4"})
    assert transition_event(RUNNING, failed)[:2] == ("Warning", "JobFailed")
