"""Why a job's pods do not start, from pods as the API returns them (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from embedding_job.api import EventReason, Phase
from embedding_operator.pod_status import (
    TORN_DOWN,
    diagnose,
    kept_diagnosis,
    pod_problems,
    torn_down,
)
from embedding_operator.status import Observation, observe, transition_event

CREATED = "2026-12-02T10:00:00Z"
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
GRACE = timedelta(seconds=300)
INITIALIZING = observe({"jobDeploymentStatus": "Initializing"})


def pod(name: str, phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": CREATED},
        "status": {"phase": phase, **status},
    }


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {"name": "ray-worker", "state": {"waiting": {"reason": reason, "message": message}}}


PULL = pod(
    "job-head-x",
    containerStatuses=[waiting("ImagePullBackOff", 'Back-off pulling image "r/job:nope"')],
)
UNSCHEDULABLE = pod(
    "job-worker-y",
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        }
    ],
)
RUNNING = pod("job-worker-z", phase="Running", containerStatuses=[{"state": {"running": {}}}])


def test_image_problems_come_first_and_running_pods_are_not_problems() -> None:
    problems = pod_problems([UNSCHEDULABLE, RUNNING, PULL])
    assert [(p.pod, p.reason, p.image) for p in problems] == [
        ("job-head-x", "ImagePullBackOff", True),
        ("job-worker-y", "Unschedulable", False),
    ]


def test_an_init_container_that_cannot_pull_is_a_problem_too() -> None:
    init = pod("job-worker-i", initContainerStatuses=[waiting("ErrImagePull", "not found")])
    assert [p.reason for p in pod_problems([init])] == ["ErrImagePull"]


def test_a_waiting_job_says_why_its_pods_do_not_start() -> None:
    observation, tear_down = diagnose(
        INITIALIZING, pod_problems([PULL, UNSCHEDULABLE]), T0 + timedelta(seconds=20), GRACE
    )
    assert not tear_down
    assert (observation.phase, observation.reason) == (Phase.SUBMITTED, "ImagePullBackOff")
    assert observation.message == (
        'pod job-head-x: ImagePullBackOff: Back-off pulling image "r/job:nope" (and 1 more)'
    )
    assert observation.event is EventReason.PODS_NOT_STARTING and observation.warning


def test_waiting_for_resources_is_said_but_not_a_warning() -> None:
    observation, tear_down = diagnose(INITIALIZING, pod_problems([UNSCHEDULABLE]), T0, GRACE)
    assert (observation.reason, observation.warning, tear_down) == ("Unschedulable", False, False)
    assert "Insufficient nvidia.com/gpu" in observation.message


def test_an_image_that_stays_unpullable_past_the_grace_fails_and_tears_down() -> None:
    observation, tear_down = diagnose(
        INITIALIZING, pod_problems([PULL]), T0 + GRACE + timedelta(seconds=1), GRACE
    )
    assert tear_down
    assert (observation.phase, observation.reason) == (Phase.FAILED, "ImagePullFailed")
    assert observation.message.startswith("pod job-head-x: ImagePullBackOff")
    assert "(for 301 s)" in observation.message


def test_only_a_job_waiting_for_its_cluster_is_diagnosed() -> None:
    running = observe({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    assert diagnose(running, pod_problems([PULL]), T0 + GRACE * 2, GRACE) == (running, False)
    assert diagnose(INITIALIZING, [], T0, GRACE) == (INITIALIZING, False)


def test_a_new_reason_within_the_phase_posts_its_event_once() -> None:
    observation, _ = diagnose(INITIALIZING, pod_problems([PULL]), T0, GRACE)
    event = transition_event("Submitted", observation, "ClusterInitializing")
    assert event is not None and event[:2] == ("Warning", "PodsNotStarting")
    assert transition_event("Submitted", observation, "ImagePullBackOff") is None
    plain = Observation(Phase.SUBMITTED, "ClusterInitializing", "starting")
    assert transition_event("Submitted", plain, "RayJobCreated") is None


def test_the_grace_counts_from_the_pods_scheduling_not_its_creation() -> None:
    """A pod that waited a long time for a node has not been failing to pull all that time."""
    late = pod(
        "job-head-late",
        containerStatuses=[waiting("ErrImagePull", "not found")],
        conditions=[
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-02T10:10:00Z"}
        ],
    )
    just_scheduled = T0 + timedelta(minutes=10, seconds=20)
    observation, tear_down = diagnose(INITIALIZING, pod_problems([late]), just_scheduled, GRACE)
    assert (observation.reason, tear_down) == ("ImagePullBackOff", False)
    observation, tear_down = diagnose(
        INITIALIZING, pod_problems([late]), just_scheduled + GRACE, GRACE
    )
    assert (observation.reason, tear_down) == ("ImagePullFailed", True)


def test_the_kubelets_two_names_for_one_failing_pull_are_one_reason() -> None:
    """ErrImagePull and ImagePullBackOff alternate with every back-off: one status, one Event."""
    err = pod("job-head-x", containerStatuses=[waiting("ErrImagePull", "not found")])
    back_off, _ = diagnose(INITIALIZING, pod_problems([PULL]), T0, GRACE)
    pulling, _ = diagnose(INITIALIZING, pod_problems([err]), T0, GRACE)
    assert back_off.reason == pulling.reason == "ImagePullBackOff"
    assert "ErrImagePull: not found" in pulling.message
    assert transition_event("Submitted", pulling, back_off.reason) is None


def test_an_image_the_kubelet_will_never_get_fails_at_once() -> None:
    """An invalid reference, or a pull policy of Never with the image absent, never resolves:
    no grace is waited, and the kubelet's own reason is the one told."""
    for reason in ("InvalidImageName", "ErrImageNeverPull"):
        never = pod("job-head-x", containerStatuses=[waiting(reason, "cannot")])
        observation, tear_down = diagnose(INITIALIZING, pod_problems([never]), T0, GRACE)
        assert (observation.reason, tear_down) == ("ImagePullFailed", True)
        assert observation.message.startswith(f"pod job-head-x: {reason}: cannot (for 0 s)")


def test_a_torn_down_rayjob_keeps_its_job_failed_whatever_it_shows() -> None:
    assert torn_down({"annotations": {"other": "x"}}) is None
    failed = torn_down({"annotations": {TORN_DOWN: "pod p: ErrImagePull: nope (for 301 s)"}})
    assert failed == Observation(
        Phase.FAILED, "ImagePullFailed", "pod p: ErrImagePull: nope (for 301 s)"
    )


def test_a_rayjob_event_between_two_looks_at_the_pods_keeps_their_reason() -> None:
    """KubeRay rewrites the RayJob with every change of its cluster: the job's status must not
    flap from the pods' reason to "initializing" and back (and post an Event each time)."""
    said, _ = diagnose(INITIALIZING, pod_problems([PULL]), T0, GRACE)
    current = {"phase": "Submitted", "reason": said.reason, "message": said.message}
    kept = kept_diagnosis(INITIALIZING, current)
    assert (kept.reason, kept.message) == (said.reason, said.message)
    assert transition_event(current["phase"], kept, current["reason"]) is None
    running = observe({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    assert kept_diagnosis(running, current) == running  # the pods started after all
    plain = {"phase": "Submitted", "reason": "RayJobCreated"}
    assert kept_diagnosis(INITIALIZING, plain) == INITIALIZING
