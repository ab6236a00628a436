"""Operator settings from the environment (set by the Helm chart)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf

from embedding_job.api import GROUP, KIND, EmbeddingJobSpec
from embedding_operator.builders import Defaults
from embedding_operator.job_objects import LABEL_JOB
from embedding_operator.kube import RAY_GROUP, RAY_PLURAL
from embedding_operator.policy import Policy


def operator_defaults(env: Mapping[str, str] | None = None) -> Defaults:
    """Defaults a spec may leave empty: the job image and the GPU worker shape (from ``env``,
    by default the process's environment)."""
    base = Defaults()
    env = os.environ if env is None else env
    return Defaults(
        job_image=env.get("EMBEDDING_OPERATOR_JOB_IMAGE") or base.job_image,
        worker_gpus=int(env.get("EMBEDDING_OPERATOR_WORKER_GPUS") or base.worker_gpus),
        worker_cpu=env.get("EMBEDDING_OPERATOR_WORKER_CPU") or base.worker_cpu,
        worker_memory=env.get("EMBEDDING_OPERATOR_WORKER_MEMORY") or base.worker_memory,
        host_network=env.get("EMBEDDING_OPERATOR_JOB_HOST_NETWORK", "").lower() == "true",
    )


def operator_policy(defaults: Defaults) -> Policy:
    """What specs may ask for (the chart's tenancy values)."""
    return Policy.from_env(defaults.job_image)


#: Seconds between two reconciliations of a running job from its RayJob's current state.
RESYNC_SECONDS = float(os.environ.get("EMBEDDING_OPERATOR_RESYNC_SECONDS", "30"))
#: Seconds a Ray pod may fail to pull its image before the job fails.
IMAGE_PULL_GRACE = datetime.timedelta(
    seconds=float(os.environ.get("EMBEDDING_OPERATOR_IMAGE_PULL_GRACE_SECONDS", "300"))
)
#: Seconds before a job waiting for an earlier namesake's objects to go looks again, and the
#: most it waits before it fails.
WAIT_FOR_PREVIOUS_SECONDS = 5.0
WAIT_FOR_PREVIOUS_LIMIT_SECONDS = float(
    os.environ.get("EMBEDDING_OPERATOR_WAIT_FOR_PREVIOUS_SECONDS", "600")
)


#: Handlers are synchronous (the official client): enough threads that a burst of new jobs is
#: not served a few at a time, each with a connection of its own (``kube.login``).
HANDLER_THREADS = int(os.environ.get("EMBEDDING_OPERATOR_WORKERS", "32"))

#: The spec fields kopf remembers of a handled EmbeddingJob (``_WATCHED``), and what it need
#: not (``_UNWATCHED``): the rest of the spec cannot change (the CRD says so) and no handler
#: looks at labels or annotations. Its record (status.kopf) then holds ``spec.suspend`` only,
#: not a copy of a spec of up to 320 KB that would double the object.
_WATCHED = ("suspend",)
_UNWATCHED = [
    "metadata",
    *(
        f"spec.{field.serialization_alias or name}"  # the name in the object: camelCase
        for name, field in EmbeddingJobSpec.model_fields.items()
        if (field.serialization_alias or name) not in _WATCHED
    ),
]


class SpecRecord(kopf.StatusDiffBaseStorage):
    """kopf's record of the handled spec, in ``status.kopf``, of the ``_WATCHED`` fields.

    kopf builds a record of every event it gets, of every kind it watches, by deep-copying the
    whole object (its managedFields, status and spec), then dropping its metadata but labels
    and annotations, its status and the ignored fields. This copies only what the record
    keeps:
    - of an EmbeddingJob, ``_WATCHED`` and the fields of handlers with ``field=``: the same
      record as kopf's own build;
    - of another kind (a RayJob: kopf has one storage for every resource), nothing. kopf
      diffs records only for the kinds that have change handlers or daemons, and only
      EmbeddingJobs have them (``recorded_kinds``; a unit test checks the registry). Its own
      build of a RayJob deep-copied the whole RayJob, twice, on each RayJob event, for a
      diff that nothing read.
    """

    #: The kinds whose records kopf compares: those with change handlers (the rest: empty).
    recorded_kinds = frozenset({KIND})

    def __init__(self) -> None:
        # Parsed once: kopf parses a field given as text on each of its uses, on every event.
        super().__init__(ignored_fields=[_field_path(field) for field in _UNWATCHED])

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if body.get("kind") not in self.recorded_kinds:
            return cast(kopf.BodyEssence, {})
        extra = list(extra_fields or ())  # those of handlers with field=: spec.suspend
        # No metadata: the record ignores all of it (``_UNWATCHED``), extra fields included.
        kept = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        spec = body.get("spec")
        if isinstance(spec, Mapping):
            kept["spec"] = {k: spec[k] for k in _WATCHED if k in spec}
        for field in extra:
            _copy_field(body, kept, _field_path(field))
        return super().build(body=kopf.Body(cast(kopf.RawBody, kept)), extra_fields=extra)


def _field_path(field: str | Iterable[str]) -> tuple[str, ...]:
    """The keys of a field given as dotted text (``spec.suspend``) or already as keys (kopf's
    ``FieldPath``)."""
    return tuple(field.split(".")) if isinstance(field, str) else tuple(field)


def _copy_field(src: Mapping[str, Any], dst: dict[str, Any], path: tuple[str, ...]) -> None:
    """Put ``src``'s value at ``path`` (absent: nothing) at the same place in ``dst``,
    sharing it (the caller's build copies)."""
    for key in path[:-1]:
        src = src.get(key)  # type: ignore[assignment]
        if not isinstance(src, Mapping):
            return
        dst = dst.setdefault(key, {})
    if path and path[-1] in src:
        dst[path[-1]] = src[path[-1]]


def configure(settings: kopf.OperatorSettings) -> None:
    """Where kopf keeps its record, our finalizer's name (for the finalizer older versions
    put on jobs, which kopf takes off), watch timeouts and event posting."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's record in status.kopf, not in annotations: it then goes out with the status in one
    # PATCH of the status subresource, where annotations take a PATCH of the object of their
    # own (one write a job fewer).
    settings.persistence.progress_storage = kopf.StatusProgressStorage()
    settings.persistence.diffbase_storage = SpecRecord()
    # Only our own RayJobs cross the wire: the apiserver filters the watch by their label.
    settings.watching.label_selectors[RAY_GROUP, RAY_PLURAL] = LABEL_JOB
    # Watches end and restart on these timeouts, so a silently dropped connection heals.
    settings.watching.server_timeout = int(
        os.environ.get("EMBEDDING_OPERATOR_WATCH_SERVER_TIMEOUT", "300")
    )
    settings.watching.client_timeout = int(
        os.environ.get("EMBEDDING_OPERATOR_WATCH_CLIENT_TIMEOUT", "330")
    )
    settings.watching.connect_timeout = int(
        os.environ.get("EMBEDDING_OPERATOR_WATCH_CONNECT_TIMEOUT", "30")
    )
    settings.posting.reporting_component = "embedding-operator"
    settings.execution.max_workers = HANDLER_THREADS
