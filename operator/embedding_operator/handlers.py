"""Thin kopf handlers: parse → decide (pure modules) → act (kube.py).

Level-triggered: the EmbeddingJob's status is derived from the RayJob's current state, on
every RayJob event and again by the resync loop (``resync``; resync.py), so a lost event or a
failed status patch is repaired at the next pass. Every error that retrying cannot fix ends
in phase Failed with a reason, a message and a Warning Event.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from embedding_job.api import (
    GROUP,
    PLURAL,
    TERMINAL_PHASES,
    VERSION,
    ConfigError,
    EmbeddingJobStatus,
    EventReason,
    OutputStatus,
    Phase,
    check_name,
    named_models,
    parse_spec,
    timestamp,
)
from embedding_operator import kube, metrics
from embedding_operator.builders import build_rayjob
from embedding_operator.job_objects import LABEL_JOB, Owner, build_job_identity
from embedding_operator.kube import Patched
from embedding_operator.pod_status import (
    TORN_DOWN,
    diagnose,
    kept_diagnosis,
    pod_problems,
    torn_down,
)
from embedding_operator.policy import violations
from embedding_operator.resync import Followed, Resync
from embedding_operator.settings import (
    IMAGE_PULL_GRACE,
    RESYNC_SECONDS,
    WAIT_FOR_PREVIOUS_LIMIT_SECONDS,
    WAIT_FOR_PREVIOUS_SECONDS,
    operator_defaults,
    operator_policy,
)
from embedding_operator.status import (
    Observation,
    Ownership,
    conditions,
    in_flight,
    name_taken,
    observe,
    owner_uids,
    ownership,
    rayjob_missing,
    status_patch,
    transition_event,
    waiting_for_previous,
    with_job_error,
)


def _refuse(body: kopf.Body, patch: kopf.Patch, problems: list[str], reason: EventReason) -> None:
    """A spec that can never run (invalid, or outside the policy): Failed, once, no RayJob."""
    message = "; ".join(problems)
    generation = body.meta.get("generation", 1)
    status = EmbeddingJobStatus(
        phase=Phase.FAILED,
        reason=reason.value,
        message=message,
        model=named_models(body.spec),
        observed_generation=generation,
        conditions=conditions(
            Phase.FAILED, reason.value, message, generation, timestamp(), submitted=False
        ),
    )
    patch.status.update(status.to_patch())
    kopf.event(body, type="Warning", reason=reason.value, message=message)
    metrics.entered(Phase.FAILED, reason.value, body.meta.get("creationTimestamp"))


def _record(
    ej: Mapping[str, Any],
    observation: Observation,
    rayjob_status: dict[str, Any] | None = None,
    extra: EmbeddingJobStatus | None = None,
    patch: kopf.Patch | None = None,
) -> Patched:
    """Write an observation to the EmbeddingJob's status (when it changes anything), with an
    Event when the phase changes. Within a handler of the EmbeddingJob itself, ``patch`` is
    kopf's: the status goes out with kopf's own patch, one API call fewer. Otherwise only if
    the job is still the version ``ej`` is: a status (and an Event) worked out from a stale
    copy is not written (CHANGED), nor one for a job that is gone (GONE, no longer followed)."""
    meta, current = ej["metadata"], dict(ej.get("status") or {})
    status = status_patch(
        observation, rayjob_status, current, meta.get("generation", 1), timestamp()
    )
    status["model"] = named_models(ej.get("spec") or {})
    if extra is not None:
        status.update(extra.to_patch())
    if {k: v for k, v in current.items() if k in status} == status:
        return Patched.APPLIED  # nothing to change
    if patch is not None:
        patch.status.update(status)
    else:
        version = meta.get("resourceVersion")
        result = kube.patch_embeddingjob_status(meta["namespace"], meta["name"], status, version)
        if result is Patched.GONE:
            FOLLOWED.gone(str(meta["uid"]))
        if result is not Patched.APPLIED:
            return result
    event = transition_event(current.get("phase"), observation, current.get("reason"))
    if event is not None:
        metrics.entered(observation.phase, observation.reason, meta.get("creationTimestamp"))
        kind, reason, message = event
        target = ej if isinstance(ej, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(ej)))
        kopf.event(target, type=kind, reason=reason, message=message)
    return Patched.APPLIED


def _reflect(
    ej: Mapping[str, Any],
    rayjob: dict[str, Any] | None,
    rayjob_name: str,
    patch: kopf.Patch | None = None,
    *,
    look_at_pods: bool = False,
) -> tuple[Observation, Patched]:
    """The EmbeddingJob's status from its RayJob as it is now (a missing one fails the job);
    with ``look_at_pods``, why its pods do not start while it waits for them. Returns what
    it observed and what became of the status (``_record``)."""
    current = dict(ej.get("status") or {})
    if rayjob is None or ownership(rayjob["metadata"], ej["metadata"]["uid"]) != Ownership.OURS:
        missing = rayjob_missing(rayjob_name)
        return missing, _record(ej, missing, patch=patch)
    rayjob_status = dict(rayjob.get("status") or {})
    observation = torn_down(rayjob["metadata"]) or with_job_error(observe(rayjob_status), current)
    if look_at_pods and observation.phase is Phase.SUBMITTED:
        observation = _diagnose_pods(rayjob, rayjob_status, observation)
    elif not look_at_pods:
        observation = kept_diagnosis(observation, current)
    extra = EmbeddingJobStatus(ray_job_name=rayjob_name)
    return observation, _record(ej, observation, rayjob_status, extra, patch=patch)


def _diagnose_pods(
    rayjob: Mapping[str, Any], rayjob_status: Mapping[str, Any], observation: Observation
) -> Observation:
    """Why a waiting job's pods do not start; an image that stays unpullable tears its cluster
    down (the RayJob suspended and marked in one patch, so no later pass resumes it). Best
    effort: pods that cannot be listed leave the RayJob's own account as it is."""
    cluster, namespace = rayjob_status.get("rayClusterName"), rayjob["metadata"]["namespace"]
    if not cluster:
        return observation
    try:
        pods = kube.list_cluster_pods(namespace, str(cluster))
    except (kopf.PermanentError, kopf.TemporaryError) as exc:
        logging.getLogger(__name__).warning("pods of %s not diagnosed: %s", cluster, exc)
        return observation
    now = datetime.datetime.now(datetime.UTC)
    diagnosed, tear_down = diagnose(observation, pod_problems(pods), now, IMAGE_PULL_GRACE)
    if tear_down:
        name = rayjob["metadata"]["name"]
        kube.patch_rayjob_suspend(namespace, name, True, {TORN_DOWN: diagnosed.message})
    return diagnosed


def _previous_or_taken(owner: Owner, kind: str, metadata: Mapping[str, Any]) -> Observation | None:
    """None when the object is ours; otherwise what the job must say about it."""
    found = ownership(dict(metadata), owner.uid, owner.name)
    if found is Ownership.OURS:
        return None
    if found is Ownership.PREVIOUS:
        return waiting_for_previous(kind, str(metadata["name"]))
    return name_taken(kind, str(metadata["name"]))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@metrics.timed("submit")
def submit(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    runtime: datetime.timedelta,
    **_: Any,
) -> None:
    """Validate the spec and create (or adopt) the job's RayJob, exactly once."""
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    uid = str(body.metadata.uid)
    if status.get("rayJobName"):
        # Submitted before (an operator restart): never create it again. The resync loop
        # looks at its RayJob within an interval or two, paced, so that a restart does not
        # read every RayJob of every job at once.
        return
    try:
        problems = check_name(name)
        spec = parse_spec(dict(body.spec))
    except ConfigError as exc:
        problems = [*problems, *exc.problems]
    if problems:
        # Retrying cannot fix a bad spec: report once, never create a RayJob.
        _refuse(body, patch, problems, EventReason.INVALID_SPEC)
        return
    defaults = operator_defaults()
    denied = violations(spec, operator_policy(defaults))
    if denied:
        _refuse(body, patch, denied, EventReason.POLICY_DENIED)
        return
    owner = Owner(name, namespace, uid)
    try:
        problem = _create(
            body,
            patch,
            owner,
            build_job_identity(owner, spec),
            build_rayjob(owner, spec, defaults),
            runtime.total_seconds(),
        )
    except kopf.PermanentError as exc:  # refused by the apiserver (422, 403, an admission policy)
        problem = Observation(Phase.FAILED, "FailedToCreateRayJob", str(exc), submitted=False)
    if problem is not None:
        _record(body, problem, patch=patch)
        return
    output = OutputStatus(uri=spec.output.uri, format=spec.output.format.value)
    patch.status.update(EmbeddingJobStatus(output=output).to_patch())
    logger.info("RayJob %s/%s submitted", namespace, name)


def _create(
    body: kopf.Body,
    patch: kopf.Patch,
    owner: Owner,
    identity: list[dict[str, Any]],
    manifest: dict[str, Any],
    waited: float,
) -> Observation | None:
    """Create the job's objects. Returns why the job fails, if it does; raises TemporaryError
    (a retry) while an earlier namesake's objects are being collected."""
    for item in identity:
        problem = _previous_or_taken(owner, item["kind"], kube.ensure_object(item))
        if problem is not None:
            return _failed_or_wait(body, problem, waited)
    rayjob = kube.create_or_get_rayjob(manifest)
    problem = _previous_or_taken(owner, "RayJob", rayjob["metadata"])
    if problem is not None:
        return _failed_or_wait(body, problem, waited)
    # One adopted from an earlier attempt (a restart, a lost patch) may predate a change of
    # spec.suspend, which the update handler, not run for a new job, would not pass on.
    _match_suspend(body, rayjob)
    # Its Event is the phase change's (New → Submitted): one write per job, not two alike.
    _reflect(body, rayjob, owner.name, patch)
    return None


def _failed_or_wait(body: kopf.Body, problem: Observation, waited: float) -> Observation:
    """A name something else owns is the end; an earlier job's garbage is waited for, for a
    while: what the collector has not removed by then is stuck (a finalizer nobody removes)."""
    if problem.phase is Phase.FAILED:
        return problem
    if waited > WAIT_FOR_PREVIOUS_LIMIT_SECONDS:
        return Observation(
            Phase.FAILED,
            "PreviousJobNotCollected",
            f"{problem.message}, for {waited:.0f} s: something holds it (a finalizer?); "
            "delete it by hand, then re-create this EmbeddingJob",
            submitted=False,
        )
    _record(body, problem)
    raise kopf.TemporaryError(problem.message, delay=WAIT_FOR_PREVIOUS_SECONDS)


# On update only: a new job's RayJob is created as suspended as its spec says, and a handler
# that also ran on creation would cost every new job one more kopf cycle (a patch and a GET).
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.suspend")
@metrics.timed("suspend")
def suspend(body: kopf.Body, new: Any, **_: Any) -> None:
    """spec.suspend is the one mutable field: pass it to the RayJob (the resync does too)."""
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES or not status.get("rayJobName"):
        return  # not submitted yet (a namesake's objects still going): created as it says
    _match_suspend(body, kube.get_rayjob(str(body.metadata.namespace), status["rayJobName"]))


def _match_suspend(ej: Mapping[str, Any], rayjob: dict[str, Any] | None) -> None:
    """Make the job's own RayJob as suspended as the EmbeddingJob says."""
    if rayjob is None or ownership(rayjob["metadata"], ej["metadata"]["uid"]) != Ownership.OURS:
        return
    if torn_down(rayjob["metadata"]) is not None:
        return  # its cluster was torn down for good
    wanted = bool((ej.get("spec") or {}).get("suspend"))
    if bool(rayjob.get("spec", {}).get("suspend")) != wanted:
        meta = rayjob["metadata"]
        kube.patch_rayjob_suspend(meta["namespace"], meta["name"], wanted)


def rayjob_has_news(body: kopf.Body, type: str | None, **_: Any) -> bool:  # noqa: A002
    """Whether a RayJob event says anything to reflect. Not a deletion: the resync notices a
    RayJob deleted under a running job. Not a RayJob without a status: just created, KubeRay
    has said nothing yet, and submit wrote what that means. (kopf asks this on its event loop,
    so these events take no handler thread.)"""
    return type != "DELETED" and bool(body.get("status"))


@kopf.on.event(
    "ray.io", "v1", "rayjobs", labels={LABEL_JOB: kopf.PRESENT}, when=rayjob_has_news
)  # fmt: skip
@metrics.timed("rayjob_changed")
def rayjob_changed(
    body: kopf.Body,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """Reflect a RayJob's status on its EmbeddingJob, with an Event per phase change."""
    namespace = str(body.metadata.namespace)
    owners = set(owner_uids(dict(body.metadata)))
    for ref in body.metadata.get("ownerReferences", []):
        if ref.get("uid") not in owners:
            continue
        try:
            _follow_rayjob(namespace, ref, dict(body))
        except kopf.TemporaryError as exc:
            # kopf does not retry event handlers: the resync repairs this one.
            logger.warning("status of %s not updated (%s); the resync will retry", ref["name"], exc)


#: Reads of a job that changed between its read and its status patch, before the resync is
#: left to it (the job's own progress reports change it every few seconds).
_READS_PER_EVENT = 3


def _follow_rayjob(namespace: str, ref: Mapping[str, Any], rayjob: dict[str, Any]) -> None:
    """Reflect one RayJob's state on the EmbeddingJob ``ref`` names, read fresh."""
    name = str(rayjob["metadata"]["name"])
    for _ in range(_READS_PER_EVENT):
        ej = kube.get_embeddingjob(namespace, ref["name"])
        if ej is None or ej["metadata"]["uid"] != ref.get("uid"):
            return
        status = ej.get("status") or {}
        if not in_flight(status) or status.get("rayJobName") != name:
            return  # finished, or not the RayJob this job follows (a copied owner reference)
        if _reflect(ej, rayjob, name)[1] is not Patched.CHANGED:
            return


#: The in-flight jobs the resync loop visits, fed by ``follow``.
FOLLOWED = Followed()


@metrics.timed("resync")
def resync(body: dict[str, Any]) -> None:
    """One running job, from its RayJob's current state: a lost RayJob event, a failed status
    patch or a RayJob deleted under the job is repaired or reported here."""
    name = str(body["status"]["rayJobName"])
    rayjob = kube.get_rayjob(str(body["metadata"]["namespace"]), name)
    observation, patched = _reflect(body, rayjob, name, look_at_pods=True)
    # CHANGED: the watch's copy was stale; its news is on the way, and the next pass looks again.
    if patched is Patched.APPLIED and observation.phase not in TERMINAL_PHASES:
        _match_suspend(body, rayjob)


#: The loop (resync.py); it starts with the first EmbeddingJob event and stops with kopf.
RESYNC = Resync(FOLLOWED, RESYNC_SECONDS, resync)


# Async: it only updates memory, so it runs on kopf's event loop at once, instead of waiting
# for a handler thread (and taking one) on each of every job's events.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def follow(body: kopf.Body, type: str | None, **_: Any) -> None:  # noqa: A002 - kopf's
    """Keep the jobs-by-phase gauge and the resync's jobs in step with every EmbeddingJob,
    whoever changed it."""
    uid = str(body.metadata.uid)
    if type == "DELETED":
        metrics.JOBS.gone(uid)
        FOLLOWED.gone(uid)
    else:
        metrics.JOBS.seen(uid, (body.get("status") or {}).get("phase"))
        FOLLOWED.seen(body)
    RESYNC.start_once()  # here, in a handler's context: see Resync.start_once
