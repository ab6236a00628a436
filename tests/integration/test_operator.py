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
    parse_spec,
)
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import LABEL_JOB, Owner
from tests.support.jobs import examples
from tests.support.kube import Cluster, Operator
from tests.support.operator_jobs import (
    JOB,
    apply_job,
    ej_status,
    events,
    kopf_record,
    submitted,
    wait_phase,
)
from tests.support.scrape import Samples, scrape, value
from tests.support.specs import largest_spec
from tests.support.waiting import wait_for


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
    # No finalizer: nothing of ours must run before the job goes (the resync only reads).
    assert "finalizers" not in cluster.get("ej", "photos", namespace)["metadata"]
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


def confused(name: str) -> str:
    """A job that passes the schema (each field is fine) but not the contract: images-glob
    needs URL sources."""
    return JOB.format(name=name).replace(
        'input: {uri: "s3://bucket/images/"}',
        'input: {uri: "s3://bucket/images/", format: images-glob, srcType: image_base64}',
    )


def test_semantically_invalid_spec_fails_once_without_a_rayjob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    apply_job(cluster, namespace, "confused", confused("confused"))
    status = wait_phase(cluster, namespace, "confused", "Failed")
    assert status["reason"] == "InvalidSpec" and "srcType must be image_url" in status["message"]
    wait_for(
        lambda: any(r == "InvalidSpec" for _, r, _ in events(cluster, namespace)),
        message="InvalidSpec event",
    )
    assert cluster.get("rayjob", "confused", namespace) is None
    assert sum(1 for _, r, _ in events(cluster, namespace) if r == "InvalidSpec") == 1


def test_kubectl_get_names_the_models_a_job_embeds_with(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    two = JOB.format(name="two").replace(
        "model: {name: facebook/dinov2-base}",
        "models: [{name: openai/clip-vit-base-patch32}, {name: facebook/dinov2-base}]",
    )
    apply_job(cluster, namespace, "two", two)
    apply_job(cluster, namespace, "one", JOB.format(name="one"))
    apply_job(cluster, namespace, "refused", confused("refused"))  # no RayJob
    for name, phase in [("two", "Submitted"), ("one", "Submitted"), ("refused", "Failed")]:
        wait_phase(cluster, namespace, name, phase)
    # The apiserver stores spec.model's defaults next to models: the column must not show it.
    assert cluster.get("ej", "two", namespace)["spec"]["model"]["name"] == "facebook/dinov2-large"
    header, *rows = cluster.kubectl("get", "ej", "-n", namespace).stdout.splitlines()
    start = header.index("MODEL")
    shown = {row.split()[0]: row[start : header.index("ROWS")].strip() for row in rows}
    assert shown == {
        "two": "openai/clip-vit-base-patch32, facebook/dinov2-base",
        "one": "facebook/dinov2-base",
        "refused": "facebook/dinov2-base",
    }, shown


def test_the_finalizer_an_older_operator_put_on_a_job_is_taken_off(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # Before the resync loop, kopf's per-job timer kept this finalizer on every running job;
    # left there, it would hold the job's deletion with nothing to remove it.
    operator.stop()
    apply_job(cluster, namespace, "upgraded")
    finalizer = {"metadata": {"finalizers": ["embedding.dev/finalizer"]}}
    cluster.kubectl("patch", "ej", "upgraded", "-n", namespace, "--type", "merge",
                    "-p", json.dumps(finalizer))  # fmt: skip
    operator.start()
    wait_phase(cluster, namespace, "upgraded", "Submitted")
    wait_for(
        lambda: "finalizers" not in cluster.get("ej", "upgraded", namespace)["metadata"],
        message="the old finalizer to be removed",
    )
    cluster.kubectl("delete", "ej", "upgraded", "-n", namespace, "--timeout=60s")
    assert cluster.get("ej", "upgraded", namespace) is None


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
    wait_for(lambda: kopf_record(cluster, namespace, "paused"), message="kopf done with the job")
    # kopf's record went out with the status: nothing of it on the object itself.
    annotations = cluster.get("ej", "paused", namespace)["metadata"].get("annotations", {})
    assert not [key for key in annotations if key.startswith(GROUP)], annotations
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
    # handled: a copy of this spec would double the object; it records spec.suspend only.
    status = wait_phase(cluster, namespace, "huge", "Failed")
    assert status["reason"] == "PolicyDenied"
    handled = wait_for(
        lambda: kopf_record(cluster, namespace, "huge"), message="kopf's record of the handled job"
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
