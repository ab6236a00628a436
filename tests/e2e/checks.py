"""Checks the e2e scenarios share: scheduling onto (fake) GPU nodes, loopback-only addresses,
and the examples' prerequisites. Each prints what it saw, so the log shows it."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from tests.e2e.steps import (
    JOB_TIMEOUT,
    job_status,
    scheduled_events,
    share,
    wait_scheduled_workers,
)
from tests.support.providers import Provider
from tests.support.summary import report
from tests.support.waiting import wait_for


def note(line: str) -> None:
    """One line of the e2e log: printed again in pytest's terminal summary, so that a CI log
    shows what the cluster did (bindings, GPU requests, KubeRay's transitions, outcomes) even
    when every test passes."""
    report("e2e: what the cluster did", f"[e2e] {line}")


def show(title: str, lines: list[str]) -> None:
    note(title)
    for line in lines:
        note(f"  {line}")


ADDRESS_FIELDS = (
    ("nodes", ['status.addresses[?(@.type=="InternalIP")].address']),
    ("pods", ["status.podIP", "status.hostIP"]),
    ("services", ["spec.clusterIP"]),
    ("endpointslices", ["endpoints[*].addresses[*]"]),
)


def assert_loopback(provider: Provider, namespace: str | None = None) -> list[str]:
    """Every address the cluster hands out (in a namespace, or everywhere) is in 127.0.0.0/8,
    so nothing that dials a pod, node or service IP can leave the machine."""
    scope = ["-n", namespace] if namespace else ["-A"]
    addresses: list[str] = []
    for kind, paths in ADDRESS_FIELDS:
        if namespace and kind == "nodes":
            continue
        template = "".join("{range .items[*]}{." + p + "}{'\\n'}{end}" for p in paths)
        out = provider.cluster.kubectl("get", kind, *scope, "-o", f"jsonpath={template}").stdout
        addresses += [a for a in out.split() if a and a != "None"]
    outside = [a for a in addresses if not ipaddress.ip_address(a).is_loopback]
    assert not outside, outside
    return addresses


def check_gpu_workers(provider: Provider, namespace: str, count: int, gpus: int) -> None:
    """Workers were bound by kube-scheduler to nodes that have the GPUs they request."""
    pods = wait_scheduled_workers(provider, namespace, count)
    show("worker pods bound by kube-scheduler", scheduled_events(provider, namespace))
    if not provider.fake_gpus:
        return
    show("pod and service addresses (all loopback)", assert_loopback(provider, namespace))
    for pod in pods:
        requests = pod["spec"]["containers"][0]["resources"]["requests"]
        node = provider.cluster.get("node", pod["spec"]["nodeName"], "default")
        assert node is not None
        assert int(requests["nvidia.com/gpu"]) == gpus
        assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= gpus
        name, node_name = pod["metadata"]["name"], node["metadata"]["name"]
        note(f"  {name} requests nvidia.com/gpu={gpus} on {node_name}")


def check_waiting_for_resources(provider: Provider, namespace: str, name: str) -> None:
    """On nodes smaller than a job asks for (no GPUs, too few cores), its pods stay Pending
    as Unschedulable, and the EmbeddingJob says so with the scheduler's words: it waits
    (Submitted), it is not Running."""

    def unschedulable() -> list[str] | None:
        out = provider.cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "reason=FailedScheduling",
            "-o",
            "json",
        )
        return [e["message"] for e in json.loads(out.stdout)["items"]] or None

    show("pods cannot be scheduled", wait_for(unschedulable, timeout=JOB_TIMEOUT, interval=1.0))

    def says_why() -> dict[str, Any] | None:
        status = job_status(provider, namespace, name)
        return status if status.get("reason") == "Unschedulable" else None

    status = wait_for(says_why, timeout=120, interval=1.0, message="the job to say Unschedulable")
    assert status["phase"] == "Submitted", status
    assert "nodes are available" in status["message"], status
    note(f"{name}: {status['phase']}/{status['reason']}: {status['message']}")
    provider.cluster.kubectl("delete", "embeddingjob", name, "-n", namespace, "--wait=false")


def example_prerequisites(provider: Provider, namespace: str) -> list[dict[str, Any]]:
    """The Secrets and the models PVC the examples refer to (empty: the real weights are not
    here, so each example must end Failed, naming its model)."""
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": n, "namespace": namespace},
            "stringData": {"PLACEHOLDER": "1"},
        }
        for n in ("s3-credentials", "gcs-credentials", "hf-token")
    ]
    pv_dir = share(provider, namespace, "pv-models")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-models"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "hostPath": {"path": str(pv_dir)},
            "claimRef": {"namespace": namespace, "name": "models"},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": pv["metadata"]["name"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    return [*secrets, pv, pvc]
