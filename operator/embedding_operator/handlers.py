"""Thin kopf handlers: parse → decide (pure modules) → act (kube.py)."""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from embedding_job.api import (
    GROUP,
    KIND,
    PLURAL,
    TERMINAL_PHASES,
    VERSION,
    ConfigError,
    EmbeddingJobStatus,
    EventReason,
    OutputStatus,
    Phase,
    check_name,
    parse_spec,
    timestamp,
)
from embedding_operator import kube
from embedding_operator.builders import (
    LABEL_JOB,
    Defaults,
    Owner,
    build_job_identity,
    build_rayjob,
)
from embedding_operator.settings import operator_defaults
from embedding_operator.status import (
    conditions,
    observe,
    status_patch,
    transition_event,
    with_job_error,
)


def _invalid(body: kopf.Body, patch: kopf.Patch, problems: list[str]) -> None:
    message = "; ".join(problems)
    generation = body.meta.get("generation", 1)
    reason = EventReason.INVALID_SPEC.value
    status = EmbeddingJobStatus(
        phase=Phase.FAILED,
        reason=reason,
        message=message,
        observed_generation=generation,
        conditions=conditions(
            Phase.FAILED, reason, message, generation, timestamp(), submitted=False
        ),
    )
    patch.status.update(status.to_patch())
    kopf.event(body, type="Warning", reason=reason, message=message)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def submit(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """Validate the spec and create (or adopt) the job's RayJob, exactly once."""
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    uid = str(body.metadata.uid)
    try:
        problems = check_name(name)
        spec = parse_spec(dict(body.spec))
    except ConfigError as exc:
        problems = [*problems, *exc.problems]
    if problems:
        # Retrying cannot fix a bad spec: report once, never create a RayJob.
        _invalid(body, patch, problems)
        return
    defaults: Defaults = operator_defaults()
    owner = Owner(name, namespace, uid)
    for identity in build_job_identity(owner, spec):
        kube.ensure_object(identity)
    manifest = build_rayjob(owner, spec, defaults)
    rayjob, created = kube.create_or_get_rayjob(manifest)
    owners = [ref.get("uid") for ref in rayjob["metadata"].get("ownerReferences", [])]
    if uid not in owners:
        raise kopf.PermanentError(f"RayJob {name} exists and is not owned by this EmbeddingJob")
    if created:
        kopf.event(
            body,
            type="Normal",
            reason=EventReason.CREATED_RAYJOB.value,
            message=f"created RayJob {name}",
        )
        logger.info("created RayJob %s/%s", namespace, name)
    if not status.get("phase"):
        observation = observe(rayjob.get("status"))
        generation = body.meta.get("generation", 1)
        patch.status.update(
            status_patch(observation, rayjob.get("status"), status, generation, timestamp())
        )
        output = OutputStatus(uri=spec.output.uri, format=spec.output.format.value)
        patch.status.update(EmbeddingJobStatus(ray_job_name=name, output=output).to_patch())


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.suspend")
def suspend(body: kopf.Body, new: Any, old: Any, **_: Any) -> None:
    """spec.suspend is the one mutable field: pass it to the RayJob."""
    if old is None or (body.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return
    kube.patch_rayjob_suspend(str(body.metadata.namespace), str(body.metadata.name), bool(new))


@kopf.on.event("ray.io", "v1", "rayjobs", labels={LABEL_JOB: kopf.PRESENT})
def rayjob_changed(body: kopf.Body, type: str | None, **_: Any) -> None:  # noqa: A002
    """Reflect a RayJob's status on its EmbeddingJob, with an Event per phase change."""
    if type == "DELETED":
        return
    owner = next(
        (
            ref
            for ref in body.metadata.get("ownerReferences", [])
            if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(GROUP)
        ),
        None,
    )
    if owner is None:
        return
    namespace = str(body.metadata.namespace)
    ej = kube.get_embeddingjob(namespace, owner["name"])
    if ej is None or ej["metadata"]["uid"] != owner.get("uid"):
        return
    current = ej.get("status") or {}
    if current.get("reason") == EventReason.INVALID_SPEC:
        return
    rayjob_status = dict(body.get("status") or {})
    observation = with_job_error(observe(rayjob_status), current)
    generation = ej["metadata"].get("generation", 1)
    patch = status_patch(observation, rayjob_status, current, generation, timestamp())
    patch.update(EmbeddingJobStatus(ray_job_name=body.metadata.name).to_patch())
    unchanged = {k: v for k, v in current.items() if k in patch} == patch
    if unchanged:
        return
    kube.patch_embeddingjob_status(namespace, owner["name"], patch)
    event = transition_event(current.get("phase"), observation)
    if event is not None:
        kind, reason, message = event
        kopf.event(kopf.Body(cast(kopf.RawBody, ej)), type=kind, reason=reason, message=message)
