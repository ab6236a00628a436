"""The chart's tenancy admission policy on the real apiserver: a user who may only create
EmbeddingJobs gets nothing through the operator that their own RBAC denies them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.helm import by_kind, render
from tests.support.kube import Cluster
from tests.support.waiting import wait_for

TENANT = "tenant-a"
VALUES = [
    "--set",
    "tenancy.allowedHostPaths={/data}",
    "--set",
    "tenancy.allowedImages={registry.example.com/ml/}",
    "--set",
    "tenancy.allowedNfs[0].server=nfs.example.com",
    "--set",
    "tenancy.allowedNfs[0].path=/exports/ml",
]


def job(name: str, **cluster: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "embedding.dev/v1alpha1",
            "kind": "EmbeddingJob",
            "metadata": {"name": name},
            "spec": {
                "input": {"uri": "s3://b/in/"},
                "output": {"uri": f"s3://b/out/{name}/"},
                "cluster": cluster,
            },
        }
    )


@pytest.fixture(scope="module")
def policy(cluster: Cluster) -> Iterator[list[dict[str, Any]]]:
    docs = render(extra=VALUES)
    objects = by_kind(docs, "ValidatingAdmissionPolicy") + by_kind(
        docs, "ValidatingAdmissionPolicyBinding"
    )
    assert len(objects) == 2
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    cluster.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        yield objects
    finally:
        cluster.kubectl("delete", "-f", "-", stdin=manifest, check=False)


@pytest.fixture
def tenant(cluster: Cluster, namespace: str, policy: list[dict[str, Any]]) -> str:
    """A user who may create and read EmbeddingJobs in the namespace, and nothing else."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "ej-author", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["embedding.dev"],
                "resources": ["embeddingjobs"],
                "verbs": ["create", "get", "list"],
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(role))
    cluster.kubectl(
        "create",
        "rolebinding",
        "ej-author",
        "-n",
        namespace,
        "--role=ej-author",
        f"--user={TENANT}",
    )
    # The policy is in force once a job the tenant may not submit is refused.
    wait_for(
        lambda: (
            "may not get Secret"
            in submit(cluster, namespace, "probe", storageSecretRef={"name": "s"})
        ),
        message="the admission policy in force",
    )
    return TENANT


def submit(cluster: Cluster, namespace: str, name: str, **spec_cluster: Any) -> str:
    """Create the job as the tenant; '' when accepted, else the apiserver's message."""
    result = cluster.kubectl(
        "create", "-n", namespace, f"--as={TENANT}", "-f", "-",
        stdin=job(name, **spec_cluster), check=False,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stderr


def grant(cluster: Cluster, namespace: str, verb: str, resource: str, name: str | None) -> None:
    args = ["create", "role", f"{verb}-{resource}", "-n", namespace, f"--verb={verb}"]
    args += [f"--resource={resource}"] + ([f"--resource-name={name}"] if name else [])
    cluster.kubectl(*args)
    cluster.kubectl(
        "create", "rolebinding", f"{verb}-{resource}", "-n", namespace,
        f"--role={verb}-{resource}", f"--user={TENANT}",
    )  # fmt: skip


def test_secrets_only_those_the_user_may_read(
    cluster: Cluster, namespace: str, tenant: str
) -> None:
    refused = submit(cluster, namespace, "s1", storageSecretRef={"name": "s3-creds"})
    assert "spec.cluster.storageSecretRef" in refused and f"{tenant} may not get Secret" in refused
    assert "hfTokenSecretRef" in submit(cluster, namespace, "s2", hfTokenSecretRef={"name": "hf"})
    grant(cluster, namespace, "get", "secrets", "s3-creds")
    assert submit(cluster, namespace, "s3", storageSecretRef={"name": "s3-creds"}) == ""
    # Reading one Secret is not reading all of them.
    assert "may not get Secret" in submit(cluster, namespace, "s4", storageSecretRef={"name": "x"})


def test_claims_only_those_the_user_may_read(cluster: Cluster, namespace: str, tenant: str) -> None:
    assert "modelsVolumeClaim" in submit(cluster, namespace, "c1", modelsVolumeClaim="models")
    shared = [{"name": "shared", "mountPath": "/shared", "claimName": "shared"}]
    assert "spec.cluster.volumes" in submit(cluster, namespace, "c2", volumes=shared)
    grant(cluster, namespace, "get", "persistentvolumeclaims", None)
    assert submit(cluster, namespace, "c3", modelsVolumeClaim="models", volumes=shared) == ""


def test_a_service_account_only_for_users_who_may_create_pods(
    cluster: Cluster, namespace: str, tenant: str
) -> None:
    refused = submit(cluster, namespace, "a1", serviceAccountName="deployer")
    assert "may not create pods" in refused and "deployer" in refused
    grant(cluster, namespace, "create", "pods", None)
    assert submit(cluster, namespace, "a2", serviceAccountName="deployer") == ""


@pytest.mark.parametrize(
    ("spec_cluster", "field"),
    [
        ({"volumes": [{"name": "root", "mountPath": "/host", "hostPath": "/"}]}, "hostPath"),
        ({"volumes": [{"name": "up", "mountPath": "/up", "hostPath": "/data/../etc"}]}, "hostPath"),
        ({"volumes": [{"name": "db", "mountPath": "/db", "hostPath": "/database"}]}, "hostPath"),
        ({"image": "docker.io/library/busybox:1"}, "spec.cluster.image"),
        ({"image": "registry.example.com/ml-other/job:1"}, "spec.cluster.image"),
        (
            {
                "volumes": [
                    {
                        "name": "n",
                        "mountPath": "/n",
                        "nfs": {"server": "other.example", "path": "/"},
                    }
                ]
            },
            "NFS volumes",
        ),
        (
            {
                "volumes": [
                    {
                        "name": "n",
                        "mountPath": "/n",
                        "nfs": {"server": "nfs.example.com", "path": "/exports/ml/../hr"},
                    }
                ]
            },
            "NFS volumes",
        ),
        ({"worker": {"tolerations": [{"operator": "Exists"}]}}, "worker.tolerations"),
        (
            {"head": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane"}]}},
            "head.tolerations",
        ),
        (
            {"worker": {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}},
            "worker.nodeSelector",
        ),
    ],
)
def test_the_platforms_rules_hold_for_every_user(
    cluster: Cluster, namespace: str, tenant: str, spec_cluster: dict[str, Any], field: str
) -> None:
    assert field in submit(cluster, namespace, "p1", **spec_cluster)
    # An administrator is bound by them too.
    admin = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=job("p2", **spec_cluster), check=False
    )
    assert admin.returncode != 0 and field in admin.stderr


def test_what_the_platform_allows_is_accepted(
    cluster: Cluster, namespace: str, tenant: str
) -> None:
    allowed = {
        "image": "registry.example.com/ml/embedding-job:2",
        "volumes": [
            {"name": "data", "mountPath": "/data", "hostPath": "/data/images"},
            {
                "name": "share",
                "mountPath": "/share",
                "nfs": {"server": "nfs.example.com", "path": "/exports/ml/photos"},
            },
        ],
        "worker": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100"},
        },
    }
    assert submit(cluster, namespace, "ok", **allowed) == ""


def test_explicit_nulls_are_no_reference(cluster: Cluster, namespace: str, tenant: str) -> None:
    # A field written as null is a field left out: no check fails on it.
    nulls = {"image": None, "storageSecretRef": None, "serviceAccountName": None}
    assert submit(cluster, namespace, "nulls", **nulls) == ""
