"""helm install into the real apiserver, and the operator running with exactly the chart's RBAC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helm import CHART, helm, install
from tests.support.kube import Cluster, Operator
from tests.support.waiting import wait_for

RELEASE, RELEASE_NS = "eo", "embedding-system"
SA = "eo-embedding-operator"
JOB = """
apiVersion: embedding.dev/v1alpha1
kind: EmbeddingJob
metadata: {name: rbac-proof}
spec:
  input: {uri: "s3://bucket/images/"}
  output: {uri: "s3://bucket/out/"}
"""


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Iterator[Cluster]:
    """The chart installed with default values (cluster-wide), uninstalled afterwards."""
    # Start from a cluster without our CRD, so that the install is what creates it.
    cluster.kubectl(
        "delete", "crd", "embeddingjobs.embedding.dev", "--ignore-not-found", "--wait=true"
    )
    install(RELEASE, RELEASE_NS, cluster.kubeconfig)
    cluster.kubectl(
        "wait", "--for", "condition=established", "crd/embeddingjobs.embedding.dev", "--timeout=60s"
    )
    try:
        yield cluster
    finally:
        helm(
            "uninstall",
            RELEASE,
            "--namespace",
            RELEASE_NS,
            "--wait",
            check=False,
            kubeconfig=cluster.kubeconfig,
        )


def test_install_creates_crd_rbac_and_deployment(installed: Cluster) -> None:
    assert installed.get("crd", "embeddingjobs.embedding.dev", "default") is not None
    assert installed.get("clusterrole", SA, "default") is not None
    assert installed.get("clusterrolebinding", SA, "default") is not None
    assert installed.get("serviceaccount", SA, RELEASE_NS) is not None
    deployment = installed.get("deployment", SA, RELEASE_NS)
    assert deployment is not None and deployment["spec"]["strategy"]["type"] == "Recreate"
    status = json.loads(
        helm(
            "status", RELEASE, "-n", RELEASE_NS, "-o", "json", kubeconfig=installed.kubeconfig
        ).stdout
    )
    assert status["info"]["status"] == "deployed"


def test_operator_works_with_exactly_the_chart_permissions(
    installed: Cluster, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = installed.kubeconfig_for(SA, RELEASE_NS, tmp_path / "sa-kubeconfig")

    def can(*args: str) -> str:
        result = installed.kubectl(
            "--kubeconfig", str(kubeconfig), "auth", "can-i", *args, check=False
        )
        return result.stdout.strip()

    assert can("create", "rayjobs.ray.io", "-n", namespace) == "yes"
    assert can("patch", "embeddingjobs.embedding.dev/status", "-n", namespace) == "yes"
    # What OwnerReferencesPermissionEnforcement (on in this control plane) asks for.
    assert can("update", "embeddingjobs.embedding.dev/finalizers", "-n", namespace) == "yes"
    assert can("delete", "pods", "-n", namespace) == "no"
    assert can("get", "secrets", "-n", namespace) == "no"
    refused = installed.kubectl(
        "--kubeconfig", str(kubeconfig), "delete", "pod", "any", "-n", "kube-system", check=False
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

    operator = Operator(installed, tmp_path / "operator.log", kubeconfig=kubeconfig)
    operator.start()
    try:
        installed.apply(JOB, namespace=namespace)
        wait_for(
            lambda: installed.get("rayjob", "rbac-proof", namespace),
            message=lambda: f"RayJob; operator log:\n{operator.output()}",
        )
        installed.drive(
            namespace,
            "rbac-proof",
            {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        )
        wait_for(
            lambda: (
                ((installed.get("ej", "rbac-proof", namespace) or {}).get("status") or {}).get(
                    "phase"
                )
                == "Running"
            ),
            message=lambda: f"phase Running; operator log:\n{operator.output()}",
        )
        events = installed.items("events", namespace)
        assert {"RayJobSubmitted", "JobRunning"} <= {e["reason"] for e in events}
        assert "Forbidden" not in operator.output() and "forbidden" not in operator.output()
    finally:
        operator.stop()


def test_uninstall_removes_rbac_and_deployment_but_keeps_the_crd(installed: Cluster) -> None:
    helm("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", kubeconfig=installed.kubeconfig)
    wait_for(
        lambda: installed.get("deployment", SA, RELEASE_NS) is None, message="Deployment removed"
    )
    assert installed.get("clusterrole", SA, "default") is None
    assert installed.get("clusterrolebinding", SA, "default") is None
    assert installed.get("serviceaccount", SA, RELEASE_NS) is None
    # Helm never deletes CRDs from crds/ (that would delete every EmbeddingJob): by design.
    assert installed.get("crd", "embeddingjobs.embedding.dev", "default") is not None
    # Installing again over the kept CRD works (Helm skips existing CRDs).
    helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NS, kubeconfig=installed.kubeconfig)
    assert installed.get("deployment", SA, RELEASE_NS) is not None


def test_helm_install_refuses_bad_values_naming_the_key(cluster: Cluster, tmp_path: Path) -> None:
    values = tmp_path / "bad-values.yaml"
    values.write_text("watch:\n  allNamespaces: yes-please\nreplicas: 2\n")
    result = helm(
        "install",
        "bad",
        str(CHART),
        "--namespace",
        "bad-values",
        "--create-namespace",
        "-f",
        str(values),
        check=False,
        kubeconfig=cluster.kubeconfig,
    )
    assert result.returncode != 0
    assert "/watch/allNamespaces" in result.stderr and "'replicas' not allowed" in result.stderr
    listed = helm("list", "--all-namespaces", "-q", kubeconfig=cluster.kubeconfig).stdout.split()
    assert "bad" not in listed


def test_owner_reference_permissions_are_enforced_here(
    installed: Cluster, namespace: str, tmp_path: Path
) -> None:
    # The control point for the test above: without `update` on embeddingjobs/finalizers an
    # owner reference that blocks the owner's deletion is refused, as on OpenShift.
    installed.apply(JOB, namespace=namespace)
    owner = installed.get("ej", "rbac-proof", namespace)
    assert owner is not None
    installed.kubectl("create", "serviceaccount", "plain", "-n", namespace)
    installed.kubectl(
        "create", "role", "configmaps", "-n", namespace, "--verb=create",
        "--resource=configmaps",
    )  # fmt: skip
    installed.kubectl(
        "create", "rolebinding", "configmaps", "-n", namespace, "--role=configmaps",
        f"--serviceaccount={namespace}:plain",
    )  # fmt: skip
    kubeconfig = installed.kubeconfig_for("plain", namespace, tmp_path / "plain-kubeconfig")
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "embedding.dev/v1alpha1",
                    "kind": "EmbeddingJob",
                    "name": "rbac-proof",
                    "uid": owner["metadata"]["uid"],
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }
    refused = installed.kubectl(
        "--kubeconfig", str(kubeconfig), "create", "-f", "-", stdin=json.dumps(child), check=False
    )
    assert refused.returncode != 0 and "blockOwnerDeletion" in refused.stderr, refused.stderr
