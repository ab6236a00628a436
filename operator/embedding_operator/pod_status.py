"""Pure: why a job's Ray pods do not start, from the pods as the API returns them.

KubeRay keeps a RayJob "Initializing" for as long as its pods cannot start (an image that
cannot be pulled, no node with the GPUs asked for), and says nothing about why. The
EmbeddingJob says it: the first pod problem becomes its reason and message while it waits,
and an image that stays unpullable past a grace period fails the job (its cluster is then
torn down), rather than waiting for ever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from embedding_job.api import GROUP, EventReason, Phase, parse_time
from embedding_operator.status import Observation

#: The kubelet's waiting reasons for a pull it keeps retrying (it may yet succeed).
PULL_RETRIED = frozenset({"ErrImagePull", "ImagePullBackOff"})
#: The kubelet's waiting reasons for an image it will never get: no grace is waited.
NEVER_PULLED = frozenset({"InvalidImageName", "ErrImageNeverPull"})
IMAGE_REASONS = PULL_RETRIED | NEVER_PULLED
#: Waiting reasons for a container the kubelet cannot create (a missing Secret, say).
CREATE_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
UNSCHEDULABLE = "Unschedulable"
IMAGE_PULL_FAILED = "ImagePullFailed"
#: The kubelet alternates ErrImagePull and ImagePullBackOff for the same failing pull: the
#: job's reason stays one, so its status and Events do not flap with every back-off.
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
#: The reasons a look at the pods gives a waiting job.
DIAGNOSED = frozenset({IMAGE_PULL_BACK_OFF, UNSCHEDULABLE, *NEVER_PULLED, *CREATE_REASONS})
#: On a RayJob whose cluster the operator tore down (set in the same patch as its suspend):
#: why. The job is Failed for good, whatever state the RayJob shows, and never resumed.
TORN_DOWN = f"{GROUP}/torn-down"


@dataclass(frozen=True)
class PodProblem:
    """One pod that cannot start, and since when: its scheduling for a container the kubelet
    cannot start (time spent waiting for a node is not the kubelet's), else its creation."""

    pod: str
    reason: str
    message: str
    since: datetime

    @property
    def image(self) -> bool:
        return self.reason in IMAGE_REASONS

    def describe(self) -> str:
        return f"pod {self.pod}: {self.reason}: {self.message}".rstrip(": ")


def _waiting(statuses: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for status in statuses:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_REASONS | CREATE_REASONS:
            return waiting
    return None


def _scheduled_at(status: Mapping[str, Any]) -> list[datetime]:
    return [
        parse_time(c["lastTransitionTime"])
        for c in status.get("conditions") or []
        if c.get("type") == "PodScheduled"
        and c.get("status") == "True"
        and c.get("lastTransitionTime")
    ]


def pod_problems(pods: Iterable[Mapping[str, Any]]) -> list[PodProblem]:
    """Problems of pods that are not running, image problems first, then by pod name."""
    problems = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if status.get("phase") not in (None, "Pending"):
            continue
        since = parse_time(meta.get("creationTimestamp") or "1970-01-01T00:00:00Z")
        statuses = [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]
        waiting = _waiting(statuses)
        if waiting is not None:
            started = max([since, *_scheduled_at(status)])
            problems.append(
                PodProblem(meta["name"], waiting["reason"], waiting.get("message", ""), started)
            )
            continue
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == UNSCHEDULABLE:
                message = condition.get("message", "")
                problems.append(PodProblem(meta["name"], UNSCHEDULABLE, message, since))
    return sorted(problems, key=lambda p: (not p.image, p.pod))


def diagnose(
    observation: Observation, problems: list[PodProblem], now: datetime, grace: timedelta
) -> tuple[Observation, bool]:
    """The job's observation given its pods' problems, and whether to tear its cluster down.

    Only a job that waits for its cluster (Submitted) is concerned: once Ray runs, the pods
    started. An image the kubelet will never get, or a pull failing for longer than
    ``grace``, fails the job.
    """
    if observation.phase is not Phase.SUBMITTED or not observation.submitted or not problems:
        return observation, False
    first = problems[0]
    stuck = [
        p for p in problems if p.reason in NEVER_PULLED or (p.image and now - p.since >= grace)
    ]
    if stuck:
        oldest = min(stuck, key=lambda p: p.since)
        waited = int((now - oldest.since).total_seconds())
        message = f"{oldest.describe()} (for {waited} s); the job's Ray cluster was torn down"
        return Observation(Phase.FAILED, IMAGE_PULL_FAILED, message), True
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (
        Observation(
            Phase.SUBMITTED,
            IMAGE_PULL_BACK_OFF if first.reason in PULL_RETRIED else first.reason,
            first.describe() + more,
            event=EventReason.PODS_NOT_STARTING,
            warning=first.image or first.reason in CREATE_REASONS,
        ),
        False,
    )


def torn_down(metadata: Mapping[str, Any]) -> Observation | None:
    """The failure recorded on a RayJob whose cluster the operator tore down, if it is one."""
    message = (metadata.get("annotations") or {}).get(TORN_DOWN)
    return None if message is None else Observation(Phase.FAILED, IMAGE_PULL_FAILED, message)


def kept_diagnosis(observation: Observation, current: Mapping[str, Any]) -> Observation:
    """A RayJob event knows nothing of the pods: while the job still waits for them, the
    reason the last look at its pods found (``current``, the job's status) stands, rather than
    flapping to the RayJob's "initializing" and back with every event between two looks."""
    waiting = observation.phase is Phase.SUBMITTED and observation.submitted
    if not waiting or current.get("phase") != Phase.SUBMITTED:
        return observation
    if current.get("reason") not in DIAGNOSED:
        return observation
    reason, message = str(current["reason"]), str(current.get("message") or "")
    return replace(observation, reason=reason, message=message, event=None, warning=False)
