"""EmbeddingJobs on a test cluster, as the operator's integration tests apply and watch them."""

from __future__ import annotations

from typing import Any

from tests.support.kube import Cluster
from tests.support.waiting import wait_for

JOB = """
apiVersion: embedding.dev/v1alpha1
kind: EmbeddingJob
metadata: {{name: {name}}}
spec:
  input: {{uri: "s3://bucket/images/"}}
  model: {{name: facebook/dinov2-base}}
  output: {{uri: "s3://bucket/out/{name}/"}}
  cluster:
    worker: {{replicas: 2, gpus: 4}}
"""


def apply_job(
    cluster: Cluster, namespace: str, name: str, text: str | None = None
) -> dict[str, Any]:
    cluster.apply(text or JOB.format(name=name), namespace=namespace)
    return cluster.get("ej", name, namespace)  # type: ignore[return-value]


def ej_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (cluster.get("ej", name, namespace) or {}).get("status") or {}


def kopf_record(cluster: Cluster, namespace: str, name: str) -> str | None:
    """What kopf recorded as the job's last handled spec (in status.kopf), once it has."""
    status = ej_status(cluster, namespace, name)
    return (status.get("kopf") or {}).get("last-handled-configuration")


def wait_phase(cluster: Cluster, namespace: str, name: str, phase: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := ej_status(cluster, namespace, name)).get("phase") == phase and s,
        message=lambda: f"phase {phase}; status is {ej_status(cluster, namespace, name)}",
    )


def submitted(cluster: Cluster, namespace: str, name: str) -> None:
    """Apply the job and wait until its RayJob exists and its status says Submitted."""
    apply_job(cluster, namespace, name)
    wait_for(lambda: cluster.get("rayjob", name, namespace), message=f"RayJob {name}")
    wait_phase(cluster, namespace, name, "Submitted")


def events(cluster: Cluster, namespace: str) -> list[tuple[str, str, str]]:
    items = cluster.items("events", namespace)
    return [
        (e["type"], e["reason"], e.get("message", ""))
        for e in items
        if e["involvedObject"]["kind"] == "EmbeddingJob"
    ]


def running(cluster: Cluster, namespace: str, name: str) -> None:
    """Apply the job, let its RayJob report a running Ray job, and wait for phase Running."""
    apply_job(cluster, namespace, name)
    wait_for(lambda: cluster.get("rayjob", name, namespace), message=f"RayJob {name}")
    cluster.drive(namespace, name, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    wait_phase(cluster, namespace, name, "Running")
