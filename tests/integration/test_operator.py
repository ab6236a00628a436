"""The operator (a real `kopf run` process) against the real apiserver and GC."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from embedding_job.api import (
    API_VERSION,
    FROM_EMBEDDINGJOB_FLAG,
    GROUP,
    KIND,
    load_config,
    parse_spec,
)
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import LABEL_JOB, Owner
from tests.support.jobs import examples
from tests.support.kube import Cluster, Operator
from tests.support.scrape import Samples, scrape, value
from tests.support.specs import largest_spec
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


def assert_kept(built: Any, stored: Any, path: str = "spec") -> None:
    """Every field we set survives the apiserver (an unknown field would be pruned silently)."""
    if isinstance(built, dict):
        for key, value in built.items():
            assert key in stored, f"{path}.{key} was pruned by KubeRay's CRD"
            assert_kept(value, stored[key], f"{path}.{key}")
    elif isinstance(built, list):
        assert len(built) == len(stored), path
        for index, (a, b) in enumerate(zip(built, stored, strict=True)):
            assert_kept(a, b, f"{path}[{index}]")
    else:
        assert str(built) == str(stored), f"{path}: {built!r} != {stored!r}"


def test_create_makes_exactly_one_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    ej = apply_job(cluster, namespace, "photos")
    rayjob = wait_for(lambda: cluster.get("rayjob", "photos", namespace), message="RayJob photos")
    assert len(cluster.items("rayjob", namespace)) == 1
    ref = rayjob["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == (
        "EmbeddingJob",
        ej["metadata"]["uid"],
        True,
    )
    assert rayjob["metadata"]["labels"]["embedding.dev/job"] == "photos"
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    worker = cluster_spec["workerGroupSpecs"][0]
    assert worker["replicas"] == 2 and worker["rayStartParams"]["num-gpus"] == "4"
    container = worker["template"]["spec"]["containers"][0]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "4"
    assert container["image"] == "example.invalid/embedding-job:test"
    assert cluster_spec["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    owner = Owner("photos", namespace, ej["metadata"]["uid"])
    built = build_rayjob(
        owner, parse_spec(ej["spec"]), Defaults(job_image="example.invalid/embedding-job:test")
    )
    assert_kept(built["spec"], rayjob["spec"])
    # The driver reads its config from this EmbeddingJob: none of it is in the command.
    assert shlex.split(rayjob["spec"]["entrypoint"])[-1] == FROM_EMBEDDINGJOB_FLAG
    assert "s3://bucket" not in rayjob["spec"]["entrypoint"]
    status = wait_phase(cluster, namespace, "photos", "Submitted")
    assert status["rayJobName"] == "photos" and status["output"]["uri"] == "s3://bucket/out/photos/"
    submitted_event = (
        "Normal",
        "RayJobSubmitted",
        "New → Submitted (RayJobCreated: waiting for KubeRay to start the cluster)",
    )
    assert wait_for(lambda: submitted_event in events(cluster, namespace), message="its Event")


def test_status_follows_the_rayjob_to_success(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    apply_job(cluster, namespace, "ok")
    wait_for(lambda: cluster.get("rayjob", "ok", namespace), message="RayJob ok")
    cluster.drive(
        namespace,
        "ok",
        {"jobDeploymentStatus": "Initializing", "rayClusterName": "ok-raycluster-x"},
    )
    status = wait_for(
        lambda: (
            (s := ej_status(cluster, namespace, "ok")).get("reason") == "ClusterInitializing" and s
        ),
        message="Initializing",
    )
    assert status["phase"] == "Submitted" and status["rayClusterName"] == "ok-raycluster-x"
    cluster.drive(
        namespace,
        "ok",
        {
            "jobDeploymentStatus": "Running",
            "jobStatus": "RUNNING",
            "jobId": "ok-123",
            "startTime": "2026-11-28T10:00:00Z",
            "dashboardURL": "ok-head-svc.ns.svc.cluster.local:8265",
        },
    )
    status = wait_phase(cluster, namespace, "ok", "Running")
    assert (status["jobId"], status["startTime"]) == ("ok-123", "2026-11-28T10:00:00Z")
    cluster.drive(
        namespace,
        "ok",
        {
            "jobDeploymentStatus": "Complete",
            "jobStatus": "SUCCEEDED",
            "endTime": "2026-11-28T10:30:00Z",
        },
    )
    status = wait_phase(cluster, namespace, "ok", "Succeeded")
    assert status["completionTime"] == "2026-11-28T10:30:00Z"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (
        conditions["Succeeded"]["status"] == "True" and conditions["Running"]["status"] == "False"
    )
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    reasons = [reason for _, reason, _ in events(cluster, namespace)]
    wait_for(
        lambda: {"JobRunning", "JobSucceeded"} <= {r for _, r, _ in events(cluster, namespace)},
        message=f"events, have {reasons}",
    )


def test_a_failed_rayjob_carries_kuberay_reason_and_message(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    apply_job(cluster, namespace, "doomed")
    wait_for(lambda: cluster.get("rayjob", "doomed", namespace), message="RayJob doomed")
    cluster.drive(
        namespace,
        "doomed",
        {
            "jobDeploymentStatus": "Failed",
            "jobStatus": "FAILED",
            "reason": "AppFailed",
            "message": "embedding-job exited with 3: model not found",
        },
    )
    status = wait_phase(cluster, namespace, "doomed", "Failed")
    assert status["reason"] == "AppFailed" and "model not found" in status["message"]
    assert status["completionTime"]
    wait_for(
        lambda: any(
            t == "Warning" and r == "JobFailed" and "model not found" in m
            for t, r, m in events(cluster, namespace)
        ),
        message="JobFailed event",
    )


def test_semantically_invalid_spec_fails_once_without_a_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # Passes the schema (each field is fine) but not the contract: images-glob needs URL sources.
    text = JOB.format(name="confused").replace(
        'input: {uri: "s3://bucket/images/"}',
        'input: {uri: "s3://bucket/images/", format: images-glob, srcType: image_base64}',
    )
    apply_job(cluster, namespace, "confused", text)
    status = wait_phase(cluster, namespace, "confused", "Failed")
    assert status["reason"] == "InvalidSpec" and "srcType must be image_url" in status["message"]
    wait_for(
        lambda: any(r == "InvalidSpec" for _, r, _ in events(cluster, namespace)),
        message="InvalidSpec event",
    )
    assert cluster.get("rayjob", "confused", namespace) is None
    assert sum(1 for _, r, _ in events(cluster, namespace) if r == "InvalidSpec") == 1


def test_restart_creates_no_duplicate_and_keeps_tracking(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    apply_job(cluster, namespace, "sturdy")
    first = wait_for(lambda: cluster.get("rayjob", "sturdy", namespace), message="RayJob sturdy")
    operator.stop()
    cluster.drive(namespace, "sturdy", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    operator.start()
    wait_phase(cluster, namespace, "sturdy", "Running")
    rayjobs = cluster.items("rayjob", namespace)
    assert [r["metadata"]["uid"] for r in rayjobs] == [first["metadata"]["uid"]]
    cluster.drive(
        namespace, "sturdy", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    wait_phase(cluster, namespace, "sturdy", "Succeeded")


def test_deleting_the_job_garbage_collects_the_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    apply_job(cluster, namespace, "gone")
    wait_for(lambda: cluster.get("rayjob", "gone", namespace), message="RayJob gone")
    cluster.kubectl("delete", "ej", "gone", "-n", namespace, "--wait=true")
    wait_for(
        lambda: cluster.get("rayjob", "gone", namespace) is None, message="RayJob garbage-collected"
    )
    assert cluster.items("ej", namespace) == []


def test_suspend_is_passed_to_the_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    def suspend_passes(samples: Samples | None = None) -> float:
        samples = scrape(operator.metrics_url)[1] if samples is None else samples
        return value(samples, "embedding_operator_reconcile_seconds_count", handler="suspend")

    _, first = wait_for(lambda: scrape(operator.metrics_url), message="operator /metrics")
    before = suspend_passes(first)
    apply_job(cluster, namespace, "paused")
    wait_for(lambda: cluster.get("rayjob", "paused", namespace), message="RayJob paused")
    wait_for(
        lambda: (
            (cluster.get("ej", "paused", namespace) or {})["metadata"]
            .get("annotations", {})
            .get(f"{GROUP}/last-handled-configuration")
        ),
        message="kopf done with the new job",
    )
    # A new RayJob is created as suspended as the spec says: the handler is not run for it.
    assert suspend_passes() == before
    cluster.kubectl(
        "patch",
        "ej",
        "paused",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec": {"suspend": true}}',
    )
    wait_for(
        lambda: (
            (cluster.get("rayjob", "paused", namespace) or {}).get("spec", {}).get("suspend")
            is True
        ),
        message="RayJob suspended",
    )
    wait_for(lambda: suspend_passes() == before + 1, message="the suspend handler ran")
    cluster.drive(namespace, "paused", {"jobDeploymentStatus": "Suspended"})
    wait_phase(cluster, namespace, "paused", "Suspended")


def test_examples_get_rayjobs(cluster: Cluster, namespace: str, operator: Operator) -> None:
    for example in examples():
        cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    names = sorted(e["metadata"]["name"] for e in cluster.items("ej", namespace))
    wait_for(
        lambda: sorted(r["metadata"]["name"] for r in cluster.items("rayjob", namespace)) == names,
        message="a RayJob per example",
    )


# ---- level-triggered: the status follows the RayJob as it is, whatever was missed ----


def test_a_rayjob_deleted_under_a_running_job_fails_it(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    apply_job(cluster, namespace, "orphan")
    wait_for(lambda: cluster.get("rayjob", "orphan", namespace), message="RayJob orphan")
    cluster.drive(namespace, "orphan", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    wait_phase(cluster, namespace, "orphan", "Running")
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
    apply_job(cluster, namespace, "drift")
    wait_for(lambda: cluster.get("rayjob", "drift", namespace), message="RayJob drift")
    cluster.drive(namespace, "drift", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    wait_phase(cluster, namespace, "drift", "Running")
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


# ---- the RayJob watch: only our RayJobs reach the operator ----


def test_the_rayjob_watch_is_sent_only_our_rayjobs(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    probe = Operator(
        cluster,
        tmp_path / "probe.log",
        command=[
            sys.executable, "-m", "kopf", "run", "-m", "tests.support.watch_probe",
            "--standalone", "--namespace", namespace, "--verbose",
        ],
    )  # fmt: skip
    cluster.logs["watch probe"] = probe.output
    probe.start()
    try:
        apply_job(cluster, namespace, "first")
        wait_for(lambda: f"saw {namespace}/first" in probe.output(), message="the probe watching")
        foreign = {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": "foreign", "namespace": namespace},
            "spec": {"entrypoint": "true"},
        }
        cluster.kubectl("create", "-f", "-", stdin=json.dumps(foreign))
        apply_job(cluster, namespace, "second")
        wait_for(lambda: f"saw {namespace}/second" in probe.output(), message="our next RayJob")
        # A watch delivers in the order of changes: had the apiserver sent the foreign RayJob
        # (created before "second"), the probe would have logged it first.
        assert f"saw {namespace}/foreign" not in probe.output()
    finally:
        probe.stop()
        cluster.logs.pop("watch probe")


def test_the_resync_follows_a_rayjob_the_watch_no_longer_sees(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    submitted(cluster, namespace, "unlabelled")
    # Without its label the RayJob leaves the operator's watch; its changes are still found.
    cluster.kubectl("label", "rayjob", "unlabelled", "-n", namespace, f"{LABEL_JOB}-")
    cluster.drive(
        namespace, "unlabelled", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    )
    assert wait_phase(cluster, namespace, "unlabelled", "Running")["rayJobName"] == "unlabelled"


def test_the_largest_spec_the_schema_admits_is_handled(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "huge"}}
    text = json.dumps({**manifest, "spec": largest_spec()})
    # Client-side apply keeps a copy of the object in an annotation, which cannot hold it.
    refused = cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=text, check=False)
    assert refused.returncode != 0 and "Too long" in refused.stderr, refused.stderr[-2000:]
    cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=text)
    # The default policy refuses its NFS volumes and tolerations. kopf then records what it
    # handled in an annotation: a copy of this spec would be refused (422, Too long) and kopf
    # would handle the job again and again; it records spec.suspend only.
    status = wait_phase(cluster, namespace, "huge", "Failed")
    assert status["reason"] == "PolicyDenied"
    handled = wait_for(
        lambda: (
            (cluster.get("ej", "huge", namespace) or {})["metadata"]
            .get("annotations", {})
            .get(f"{GROUP}/last-handled-configuration")
        ),
        message="kopf's record of the handled job",
    )
    assert json.loads(handled) == {"spec": {"suspend": False}}


# ---- metrics ----


def test_metrics_move_as_a_job_is_created_runs_and_fails(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    families, before = wait_for(lambda: scrape(operator.metrics_url), message="operator /metrics")
    assert {
        "embedding_operator_jobs",
        "embedding_operator_reconcile_seconds",
        "embedding_operator_reconcile_errors",
        "embedding_operator_api_retries",
        "embedding_operator_job_transitions",
        "embedding_operator_queue_seconds",
    } <= families

    def moved(name: str, by: float = 1, **labels: str) -> bool:
        now = scrape(operator.metrics_url)[1]
        return value(now, name, **labels) >= value(before, name, **labels) + by

    def jobs_in(phase: str) -> float:
        return value(scrape(operator.metrics_url)[1], "embedding_operator_jobs", phase=phase)

    submitted(cluster, namespace, "counted")
    wait_for(
        lambda: moved("embedding_operator_reconcile_seconds_count", handler="submit"),
        message="the submit handler timed",
    )
    wait_for(
        lambda: moved("embedding_operator_job_transitions_total", phase="Submitted"),
        message="a transition to Submitted counted",
    )
    were_submitted = value(before, "embedding_operator_jobs", phase="Submitted")
    wait_for(lambda: jobs_in("Submitted") == were_submitted + 1, message="one more Submitted")
    cluster.drive(
        namespace,
        "counted",
        {
            "jobDeploymentStatus": "Running",
            "jobStatus": "RUNNING",
            "startTime": "2026-11-28T10:00:00Z",
        },
    )
    wait_phase(cluster, namespace, "counted", "Running")
    wait_for(lambda: moved("embedding_operator_queue_seconds_count"), message="queue time")
    cluster.drive(
        namespace,
        "counted",
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"},
    )
    wait_phase(cluster, namespace, "counted", "Failed")
    wait_for(
        lambda: moved(
            "embedding_operator_job_transitions_total", phase="Failed", reason="AppFailed"
        ),
        message="a failure counted by its reason",
    )
    failed = value(before, "embedding_operator_jobs", phase="Failed")
    wait_for(lambda: jobs_in("Failed") == failed + 1, message="one more job Failed")
    wait_for(lambda: jobs_in("Submitted") == were_submitted, message="no longer Submitted")
    cluster.kubectl("delete", "ej", "counted", "-n", namespace, "--wait=true")
    wait_for(lambda: jobs_in("Failed") == failed, message="a deleted job is no longer counted")
