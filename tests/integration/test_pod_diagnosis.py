"""A waiting job says why its pods do not start, and an image that stays unpullable fails it
and tears its cluster down for good — the operator's resync reading pods on the real
apiserver (the pods are the API's: there is no kubelet here, so their status is written by
the test, as the kubelet would write it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from embedding_operator.pod_status import TORN_DOWN
from tests.support.kube import Cluster, Operator
from tests.support.waiting import wait_for

GRACE = 6
JOB = {
    "apiVersion": "embedding.dev/v1alpha1",
    "kind": "EmbeddingJob",
    "metadata": {"name": "pull"},
    "spec": {
        "input": {"uri": "s3://bucket/images/"},
        "output": {"uri": "s3://bucket/out/"},
        "cluster": {"image": "example.invalid/embedding-job:test"},
    },
}


@pytest.fixture(scope="module")
def diagnosing_operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    op.env["EMBEDDING_OPERATOR_IMAGE_PULL_GRACE_SECONDS"] = str(GRACE)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(op.output()[-5000:])


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return (cluster.get("ej", "pull", namespace) or {}).get("status") or {}


def pod_that_cannot_pull(cluster: Cluster, namespace: str, ray_cluster: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{ray_cluster}-head", "labels": {"ray.io/cluster": ray_cluster}},
        "spec": {"containers": [{"name": "ray-head", "image": "example.invalid/nope:1"}]},
    }
    cluster.apply(pod, namespace=namespace)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    waiting = {"reason": "ErrImagePull", "message": 'pulling "example.invalid/nope:1": not found'}
    pod_status = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [
            {
                "name": "ray-head",
                "image": "example.invalid/nope:1",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": waiting},
            }
        ],
    }
    cluster.kubectl(
        "patch", "pod", f"{ray_cluster}-head", "-n", namespace, "--subresource=status",
        "--type", "merge", "-p", json.dumps({"status": pod_status}),
    )  # fmt: skip


def test_an_unpullable_image_is_said_then_fails_the_job_for_good(
    cluster: Cluster, namespace: str, diagnosing_operator: Operator, tmp_path: Path
) -> None:
    cluster.apply(JOB, namespace=namespace)
    wait_for(lambda: cluster.get("rayjob", "pull", namespace), message="the RayJob")
    cluster.drive(
        namespace, "pull", {"jobDeploymentStatus": "Initializing", "rayClusterName": "pull-x1"}
    )
    pod_that_cannot_pull(cluster, namespace, "pull-x1")

    said = wait_for(
        lambda: (s := status(cluster, namespace)).get("reason") == "ImagePullBackOff" and s,
        timeout=60,
        message=lambda: f"the pull error in status; now {status(cluster, namespace)}",
    )
    assert said["phase"] == "Submitted" and "pod pull-x1-head: ErrImagePull" in said["message"]

    failed = wait_for(
        lambda: (s := status(cluster, namespace)).get("phase") == "Failed" and s,
        timeout=60,
        message=lambda: f"the job to fail; now {status(cluster, namespace)}",
    )
    assert failed["reason"] == "ImagePullFailed", failed
    rayjob = cluster.get("rayjob", "pull", namespace)
    assert rayjob is not None and rayjob["spec"]["suspend"] is True
    assert "ErrImagePull" in rayjob["metadata"]["annotations"][TORN_DOWN]
    wanted = {("Warning", "PodsNotStarting"), ("Warning", "JobFailed")}
    wait_for(  # kopf posts Events from a queue, after the status patch
        lambda: wanted <= {(e["type"], e["reason"]) for e in cluster.items("events", namespace)},
        timeout=30,
        message=lambda: f"Events {wanted} in {namespace}",
    )

    # As if the Failed status had been lost and KubeRay had suspended the cluster: the next
    # pass says Failed again from the RayJob's mark, and never resumes it.
    cluster.drive(namespace, "pull", {"jobDeploymentStatus": "Suspended"})
    cluster.kubectl(
        "patch", "ej", "pull", "-n", namespace, "--subresource=status", "--type", "merge",
        "-p", json.dumps({"status": {"phase": "Submitted", "reason": "ClusterInitializing"}}),
    )  # fmt: skip
    again = wait_for(
        lambda: (s := status(cluster, namespace)).get("phase") == "Failed" and s,
        timeout=60,
        message=lambda: f"Failed again; now {status(cluster, namespace)}",
    )
    assert again["reason"] == "ImagePullFailed"
    assert (cluster.get("rayjob", "pull", namespace) or {})["spec"]["suspend"] is True
