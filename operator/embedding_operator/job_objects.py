"""Pure: the job's own Kubernetes objects besides its RayJob — whose they are (labels, owner
references) and the identity its pods run as (a ServiceAccount and a Role that may only read
and patch its own EmbeddingJob's status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embedding_job.api import API_VERSION, GROUP, KIND, EmbeddingJobSpec

LABEL_JOB = f"{GROUP}/job"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class Owner:
    """The EmbeddingJob a RayJob belongs to."""

    name: str
    namespace: str
    uid: str


def labels(owner: Owner, spec: EmbeddingJobSpec) -> dict[str, str]:
    """Labels of the RayJob (KubeRay copies them to its cluster)."""
    result = {
        "app.kubernetes.io/name": "embedding-job",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": "embedding-operator",
        LABEL_JOB: owner.name,
    }
    if spec.cluster.lifecycle.queue_name:
        result[LABEL_QUEUE] = spec.cluster.lifecycle.queue_name
    return result


def owner_reference(owner: Owner) -> dict[str, Any]:
    """Makes the RayJob (and so its cluster and pods) garbage with its EmbeddingJob."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_service_account(owner: Owner, spec: EmbeddingJobSpec) -> str:
    """The identity of the job's pods: the user's ServiceAccount, or one made for this job."""
    return spec.cluster.service_account_name or f"{owner.name}-embedding-job"


def build_job_identity(owner: Owner, spec: EmbeddingJobSpec) -> list[dict[str, Any]]:
    """ServiceAccount (unless the spec names one), Role and RoleBinding that let the job
    get and patch the status of its own EmbeddingJob, and nothing else."""
    account = job_service_account(owner, spec)
    name = f"{owner.name}-embedding-job-status"
    meta = {
        "namespace": owner.namespace,
        "labels": labels(owner, spec),
        "ownerReferences": [owner_reference(owner)],
    }
    objects: list[dict[str, Any]] = []
    if not spec.cluster.service_account_name:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, **meta},
            }
        )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, **meta},
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["embeddingjobs/status"],
                    "resourceNames": [owner.name],
                    "verbs": ["get", "patch"],
                }
            ],
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": owner.namespace}],
        }
    )
    return objects
