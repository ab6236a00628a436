"""The job's config, read from its own EmbeddingJob (``embedding-job run --from-embeddingjob``).

The operator's driver command carries no config: a command line is bounded (Linux refuses one
argument over 128 KiB, an environment variable likewise), while the EmbeddingJob is the one
source of truth and its spec cannot change after submission (only ``suspend``). The job's
ServiceAccount may ``get`` the status subresource of its own EmbeddingJob, which answers with the
whole object, spec included; so this works wherever the driver runs, with no other object and
no other right.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from embedding_job.api import (
    GROUP,
    JOB_NAME_ENV,
    JOB_NAMESPACE_ENV,
    PLURAL,
    VERSION,
    EmbeddingJobConfig,
    config_of,
)
from embedding_job.errors import ConfigUnavailableError
from embedding_job.run.status_report import StatusReporter


def read_own_config(
    reporter: StatusReporter | None, overrides: Iterable[str] = ()
) -> EmbeddingJobConfig:
    """The job config of the EmbeddingJob this run belongs to.

    Raises ConfigUnavailableError (exit 3) when it cannot be read, ConfigError (exit 2) when
    its spec is not a valid config. An EmbeddingJob of the same name but another uid (deleted
    and re-created) is another job: the reporter is detached so that this run never writes to it.
    """
    if reporter is None:
        raise ConfigUnavailableError(
            f"--from-embeddingjob: no EmbeddingJob to read: {JOB_NAME_ENV} and "
            f"{JOB_NAMESPACE_ENV} name it (the operator sets them) and Kubernetes credentials "
            "(in-cluster, or KUBECONFIG) reach it; a job run by hand uses --config"
        )
    where = f"EmbeddingJob {reporter.namespace}/{reporter.name}"
    resource = _get(reporter, where)
    if reporter.is_other_job(resource):
        uid = (resource.get("metadata") or {}).get("uid")
        reporter.detach()
        raise ConfigUnavailableError(
            f"{where} is another job now (uid {uid}, this run's is {reporter.uid}): it was "
            "deleted and re-created, and this run's job is gone"
        )
    return config_of(resource, overrides)


def _get(reporter: StatusReporter, where: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        resource: dict[str, Any] = reporter.api.get_namespaced_custom_object_status(
            GROUP, VERSION, reporter.namespace, PLURAL, reporter.name
        )
    except ApiException as exc:
        raise ConfigUnavailableError(_refusal(where, exc.status, exc.reason)) from None
    except Exception as exc:  # noqa: BLE001 - refused, timed out, TLS: the API is out of reach
        raise ConfigUnavailableError(
            f"cannot read {where}: the Kubernetes API is out of reach ({type(exc).__name__}: {exc})"
        ) from None
    return resource


def _refusal(where: str, status: int | None, reason: str | None) -> str:
    """Why the API refused to hand over the EmbeddingJob, and what to check."""
    if status == 404:
        return f"{where} not found: it was deleted (or {JOB_NAME_ENV} names another)"
    if status in (401, 403):
        return (
            f"{where}: API {status} {reason}: the job's ServiceAccount may not read it; the "
            "operator's per-job Role grants get on its embeddingjobs/status"
        )
    return f"cannot read {where}: API {status} {reason}"
