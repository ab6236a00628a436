"""The only module that talks to the Kubernetes API (the official client, sync calls)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from embedding_job.api import GROUP, PLURAL, VERSION
from embedding_operator import metrics

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayjobs"
_RETRYABLE = {408, 429, 500, 502, 503, 504}
#: (connect, read) seconds for every call: a connection that stops answering fails the call
#: (retried) instead of holding a handler thread, or the resync loop, for ever.
TIMEOUT = (10.0, 30.0)


class Patched(StrEnum):
    """What became of a status patch."""

    APPLIED = "applied"
    GONE = "gone"  # the EmbeddingJob no longer exists
    CHANGED = "changed"  # it changed since the version the patch was made from: not applied


#: The process's one API client, made by ``login``.
_shared: list[client.ApiClient] = []


def login(connections: int, kubeconfig: str | None = None) -> None:
    """Load credentials (from ``kubeconfig`` when given, else in-cluster when running in a
    pod, else $KUBECONFIG's or ~/.kube/config) and make the process's one API client, keeping
    up to ``connections`` connections open: one per handler thread."""
    # Typed as Any: some kubernetes releases annotate these loaders and some do not.
    in_cluster: Any = config.load_incluster_config
    from_kubeconfig: Any = config.load_kube_config
    if kubeconfig is not None:
        from_kubeconfig(kubeconfig)
    else:
        try:
            in_cluster()
        except config.ConfigException:
            from_kubeconfig()
    # Our own copy of the settings: kopf's login loads them again, into the global default.
    settings = client.Configuration.get_default_copy()
    # The client keeps 5 connections per CPU it sees: 10 on two cores, where 32 handler
    # threads then closed a connection after most calls and opened (TLS) a new one.
    settings.connection_pool_maxsize = connections
    _shared[:] = [client.ApiClient(settings)]


def _shared_client() -> client.ApiClient:
    """The one client (after ``login``): its connection pool keeps TLS connections to the
    apiserver open across calls, instead of a new handshake per call."""
    return _shared[0]


def _api() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(_shared_client())


def _retry_or_raise(exc: ApiException, what: str) -> kopf.TemporaryError:
    if exc.status in _RETRYABLE or exc.status is None or exc.status == 0:
        metrics.api_retry(exc.status)
        return kopf.TemporaryError(f"{what}: API {exc.status} {exc.reason}; retrying", delay=10)
    raise kopf.PermanentError(f"{what}: API {exc.status} {exc.reason}: {exc.body}") from exc


def create_or_get_rayjob(manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the RayJob; if it already exists (a restart, a retry), return the existing one."""
    meta = manifest["metadata"]
    try:
        created = _api().create_namespaced_custom_object(
            RAY_GROUP,
            RAY_VERSION,
            meta["namespace"],
            RAY_PLURAL,
            manifest,
            _request_timeout=TIMEOUT,
        )
        return cast(dict[str, Any], created)
    except ApiException as exc:
        if exc.status != 409:
            raise _retry_or_raise(exc, f"creating RayJob {meta['name']}") from exc
    try:
        existing = _api().get_namespaced_custom_object(
            RAY_GROUP,
            RAY_VERSION,
            meta["namespace"],
            RAY_PLURAL,
            meta["name"],
            _request_timeout=TIMEOUT,
        )
    except ApiException as exc:
        raise _retry_or_raise(exc, f"reading RayJob {meta['name']}") from exc
    return cast(dict[str, Any], existing)


def ensure_object(manifest: dict[str, Any]) -> dict[str, Any]:
    """Create a ServiceAccount, Role or RoleBinding; one that already exists is kept.

    Returns the metadata of the object now in the cluster (its owners tell whose it is).
    """
    meta = manifest["metadata"]
    namespace, kind, name = meta["namespace"], manifest["kind"], meta["name"]
    shared = _shared_client()
    core, rbac = client.CoreV1Api(shared), client.RbacAuthorizationV1Api(shared)
    calls: dict[str, tuple[Any, Any]] = {
        "ServiceAccount": (
            core.create_namespaced_service_account,
            core.read_namespaced_service_account,
        ),
        "Role": (rbac.create_namespaced_role, rbac.read_namespaced_role),
        "RoleBinding": (rbac.create_namespaced_role_binding, rbac.read_namespaced_role_binding),
    }
    create, read = calls[kind]
    try:
        # What it answers is the manifest we sent: not decoded into the client's models.
        _discard(create(namespace, manifest, _request_timeout=TIMEOUT, _preload_content=False))
        return cast(dict[str, Any], meta)
    except ApiException as exc:
        if exc.status != 409:
            raise _retry_or_raise(exc, f"creating {kind} {name}") from exc
    try:
        existing = read(name, namespace, _request_timeout=TIMEOUT)
    except ApiException as exc:
        raise _retry_or_raise(exc, f"reading {kind} {name}") from exc
    refs = existing.metadata.owner_references or []
    return {
        "name": name,
        "ownerReferences": [
            {"apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid}
            for r in refs
        ],
    }


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Drop an undecoded answer, and give its connection back to the pool."""
    response.drain_conn()
    response.release_conn()


def get_rayjob(namespace: str, name: str) -> dict[str, Any] | None:
    """The RayJob, or None when it is gone."""
    try:
        body = _api().get_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name, _request_timeout=TIMEOUT
        )
        return cast(dict[str, Any], body)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _retry_or_raise(exc, f"reading RayJob {name}") from exc


def get_embeddingjob(namespace: str, name: str) -> dict[str, Any] | None:
    """The EmbeddingJob, or None when it is gone."""
    try:
        body = _api().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=TIMEOUT
        )
        return cast(dict[str, Any], body)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _retry_or_raise(exc, f"reading EmbeddingJob {name}") from exc


def patch_embeddingjob_status(
    namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
) -> Patched:
    """Merge-patch the status subresource; with ``resource_version``, only if the job has not
    changed since that version (a patch made from a stale copy is then not applied)."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        _api().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return Patched.GONE
        if exc.status == 409 and resource_version:
            return Patched.CHANGED
        raise _retry_or_raise(exc, f"updating status of EmbeddingJob {name}") from exc
    return Patched.APPLIED


def list_cluster_pods(namespace: str, cluster: str) -> list[dict[str, Any]]:
    """The pods of a Ray cluster (KubeRay labels them with its name), as plain dicts."""
    shared = _shared_client()
    try:
        pods = client.CoreV1Api(shared).list_namespaced_pod(
            namespace, label_selector=f"ray.io/cluster={cluster}", _request_timeout=TIMEOUT
        )
    except ApiException as exc:
        raise _retry_or_raise(exc, f"listing the pods of Ray cluster {cluster}") from exc
    except urllib3.exceptions.HTTPError as exc:  # no answer at all: the next pass tries again
        raise kopf.TemporaryError(f"listing the pods of Ray cluster {cluster}: {exc}") from exc
    return cast(list[dict[str, Any]], shared.sanitize_for_serialization(pods)["items"])


def patch_rayjob_suspend(
    namespace: str, name: str, suspend: bool, annotations: dict[str, str] | None = None
) -> None:
    """Suspend or resume the RayJob (KubeRay deletes or recreates its cluster), with
    annotations in the same patch when given."""
    body: dict[str, Any] = {"spec": {"suspend": suspend}}
    if annotations:
        body["metadata"] = {"annotations": annotations}
    try:
        _api().patch_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name, body, _request_timeout=TIMEOUT
        )
    except ApiException as exc:
        raise _retry_or_raise(exc, f"suspending RayJob {name}") from exc
