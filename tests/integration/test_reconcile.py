"""The operator keeps each EmbeddingJob's status true to its RayJob as it is, whatever it
missed (a deleted RayJob, a lost status write, a restart, a namesake being collected), and ends
every job it must refuse with a reason, a message and an Event."""

from __future__ import annotations

import json
from typing import Any

from embedding_job.api import load_config, parse_spec
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import Owner
from tests.support.kube import Cluster, Operator
from tests.support.operator_jobs import (
    JOB,
    apply_job,
    ej_status,
    events,
    running,
    submitted,
    wait_phase,
)
from tests.support.waiting import wait_for


def test_a_rayjob_deleted_under_a_running_job_fails_it(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    running(cluster, namespace, "orphan")
    cluster.kubectl("delete", "rayjob", "orphan", "-n", namespace)
    status = wait_phase(cluster, namespace, "orphan", "Failed")
    assert status["reason"] == "RayJobMissing" and "re-create" in status["message"]
    wait_for(
        lambda: any(
            t == "Warning" and r == "JobFailed" and "RayJobMissing" in m
            for t, r, m in events(cluster, namespace)
        ),
        message="a Warning event for the missing RayJob",
    )
    assert cluster.get("rayjob", "orphan", namespace) is None  # not silently re-run


def test_a_restart_never_recreates_a_deleted_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    submitted(cluster, namespace, "rerun")
    operator.stop()
    cluster.kubectl("delete", "rayjob", "rerun", "-n", namespace)
    operator.start()
    status = wait_phase(cluster, namespace, "rerun", "Failed")
    assert status["reason"] == "RayJobMissing"
    assert cluster.get("rayjob", "rerun", namespace) is None


def test_a_lost_status_update_is_repaired_by_the_resync(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    running(cluster, namespace, "drift")
    # As if the operator's patch for Running had failed: the status says Submitted again.
    cluster.kubectl(
        "patch",
        "ej",
        "drift",
        "-n",
        namespace,
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        json.dumps({"status": {"phase": "Submitted", "reason": "RayJobCreated"}}),
    )
    assert ej_status(cluster, namespace, "drift")["phase"] == "Submitted"
    status = wait_phase(cluster, namespace, "drift", "Running")
    assert status["reason"] == "Running"


def test_a_new_job_waits_while_its_namesakes_rayjob_is_collected(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    old = apply_job(cluster, namespace, "again")
    wait_for(lambda: cluster.get("rayjob", "again", namespace), message="RayJob again")
    # Hold the old RayJob in deletion, as a slow garbage collection (or KubeRay's own
    # finalizer, stopping a Ray job) would.
    cluster.kubectl(
        "patch", "rayjob", "again", "-n", namespace, "--type", "merge",
        "-p", json.dumps({"metadata": {"finalizers": ["test.embedding.dev/hold"]}}),
    )  # fmt: skip
    cluster.kubectl("delete", "ej", "again", "-n", namespace, "--wait=true")
    wait_for(
        lambda: (
            (cluster.get("rayjob", "again", namespace) or {})
            .get("metadata", {})
            .get("deletionTimestamp")
        ),
        message="the old RayJob being deleted",
    )
    new = apply_job(cluster, namespace, "again")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    status = wait_for(
        lambda: (
            (s := ej_status(cluster, namespace, "again")).get("reason") == "WaitingForPreviousJob"
            and s
        ),
        message=lambda: f"WaitingForPreviousJob; status {ej_status(cluster, namespace, 'again')}",
    )
    assert status["phase"] == "Submitted" and "being deleted" in status["message"]
    cluster.kubectl(
        "patch", "rayjob", "again", "-n", namespace, "--type", "merge",
        "-p", json.dumps({"metadata": {"finalizers": None}}),
    )  # fmt: skip
    rayjob = wait_for(
        lambda: (
            (r := cluster.get("rayjob", "again", namespace))
            and r["metadata"]["ownerReferences"][0]["uid"] == new["metadata"]["uid"]
            and r
        ),
        timeout=60,
        message="the new job's own RayJob",
    )
    assert not rayjob["metadata"].get("deletionTimestamp")
    assert wait_phase(cluster, namespace, "again", "Submitted")["reason"] == "RayJobCreated"


def test_a_rayjob_name_taken_by_something_else_fails_the_job(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    foreign = build_rayjob(
        Owner("taken", namespace, "not-an-embeddingjob"),
        parse_spec(load_config(JOB.format(name="taken")).to_wire()),
        Defaults(),
    )
    foreign["metadata"].pop("ownerReferences")
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(foreign))
    apply_job(cluster, namespace, "taken")
    status = wait_phase(cluster, namespace, "taken", "Failed")
    assert status["reason"] == "NameTaken" and "RayJob named taken" in status["message"]
    wait_for(
        lambda: any(t == "Warning" and "NameTaken" in m for t, _, m in events(cluster, namespace)),
        message="a Warning event",
    )


def test_a_rayjob_the_apiserver_refuses_fails_the_job_with_its_reason(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # An admission policy of the cluster refuses this RayJob: retrying cannot fix that.
    policy = f"deny-rayjobs-{namespace}"
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(_deny_rayjobs(policy, namespace)))
    try:
        wait_for(
            lambda: "denied" in _try_create_rayjob(cluster, namespace),
            message="the admission policy in force",
        )
        apply_job(cluster, namespace, "refused")
        status = wait_phase(cluster, namespace, "refused", "Failed")
        assert status["reason"] == "FailedToCreateRayJob"
        assert "no RayJobs here" in status["message"], status["message"]
        wait_for(
            lambda: any(
                t == "Warning" and "FailedToCreateRayJob" in m
                for t, _, m in events(cluster, namespace)
            ),
            message="a Warning event",
        )
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding", policy, check=False)
        cluster.kubectl("delete", "validatingadmissionpolicy", policy, check=False)


def _deny_rayjobs(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": ["ray.io"],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["rayjobs"],
                            }
                        ]
                    },
                    "validations": [{"expression": "false", "message": "no RayJobs here"}],
                },
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {
                    "policyName": name,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}
                        }
                    },
                },
            },
        ],
    }


def _try_create_rayjob(cluster: Cluster, namespace: str) -> str:
    probe = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"entrypoint": "true"},
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=json.dumps(probe), check=False
    )
    return result.stderr


def test_a_spec_outside_the_tenancy_policy_fails_without_a_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # Where the chart's admission policy is not installed, the operator applies the same
    # platform rules (here its defaults: no hostPath volumes, GPU taints only).
    text = JOB.format(name="greedy").replace(
        "    worker: {replicas: 2, gpus: 4}",
        "    worker: {replicas: 2, gpus: 4, tolerations: [{operator: Exists}]}\n"
        "    volumes: [{name: root, mountPath: /host, hostPath: /}]",
    )
    apply_job(cluster, namespace, "greedy", text)
    status = wait_phase(cluster, namespace, "greedy", "Failed")
    assert status["reason"] == "PolicyDenied"
    assert "spec.cluster.volumes[0].hostPath" in status["message"]
    assert "spec.cluster.worker.tolerations[0]" in status["message"]
    wait_for(
        lambda: any(
            t == "Warning" and r == "PolicyDenied" for t, r, _ in events(cluster, namespace)
        ),
        message="a PolicyDenied Warning event",
    )
    assert cluster.get("rayjob", "greedy", namespace) is None
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Submitted"] == "False" and conditions["Failed"] == "True"
