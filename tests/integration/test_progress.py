"""Progress and results reported by the job to its own EmbeddingJob, with least privilege."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import daft
import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from embedding_job.api import API_VERSION, FROM_EMBEDDINGJOB_FLAG, KIND, parse_config
from embedding_job.run.model_plan import embedder_settings, plan_models
from embedding_job.run.pipeline import Workers, embed
from embedding_job.run.row_counts import NativeTracker, RayTracker, worker_counter
from embedding_job.run.status_report import ProgressLoop, StatusReporter
from tests.support.images import good_images
from tests.support.jobs import job, read_manifest, run_cli, table, write_config
from tests.support.kube import Cluster, Operator
from tests.support.models import DINOV2
from tests.support.waiting import wait_for

JOB = """
apiVersion: embedding.dev/v1alpha1
kind: EmbeddingJob
metadata: {{name: {name}}}
spec:
  input: {{uri: "s3://bucket/in/"}}
  output: {{uri: "s3://bucket/out/{name}/"}}
"""


def api_as(kubeconfig: Path) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))


def job_identity(
    cluster: Cluster, namespace: str, name: str, tmp_path: Path, spec: dict[str, Any] | None = None
) -> Path:
    """Apply the EmbeddingJob (JOB, or one with this spec); a kubeconfig as its own
    ServiceAccount once the operator has made it."""
    if spec is None:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=JOB.format(name=name))
    else:
        manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}}
        cluster.apply({**manifest, "spec": spec}, namespace=namespace)
    wait_for(
        lambda: cluster.get("rolebinding", f"{name}-embedding-job-status", namespace),
        message="job identity",
    )
    return cluster.kubeconfig_for(
        f"{name}-embedding-job", namespace, tmp_path / f"{name}.kubeconfig"
    )


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (cluster.get("ej", name, namespace) or {}).get("status") or {}


def test_a_run_never_writes_to_a_namesake_with_another_uid(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    """A run checks the EmbeddingJob's uid before each status write: one meant for an
    earlier EmbeddingJob of the same name is never written, and the run stops reporting."""
    kubeconfig = job_identity(cluster, namespace, "twice", tmp_path)
    job = cluster.get("ej", "twice", namespace)
    assert job is not None
    api = api_as(kubeconfig)
    mine = StatusReporter(namespace, "twice", api, job["metadata"]["uid"])
    assert mine.progress(1, 0, 0, 4, 1.0) is True
    stale = StatusReporter(namespace, "twice", api, "0000-not-this-job")
    assert stale.progress(3, 0, 0, 4, 1.0) is False
    assert stale.progress(4, 0, 0, 4, 1.0) is False  # detached for good (a unit test shows why)
    assert status(cluster, namespace, "twice")["progress"]["rowsDone"] == 1


def test_the_job_identity_patches_only_its_own_status(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    kubeconfig = job_identity(cluster, namespace, "mine", tmp_path)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=JOB.format(name="other"))
    api = api_as(kubeconfig)
    assert StatusReporter(namespace, "mine", api).progress(5, 1, 0, 10, 2.5) is True
    progress = status(cluster, namespace, "mine")["progress"]
    assert (progress["rowsDone"], progress["rowsFailed"], progress["rowsTotal"]) == (5, 1, 10)
    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object_status(
            "embedding.dev",
            "v1alpha1",
            namespace,
            "embeddingjobs",
            "other",
            {"status": {"phase": "Succeeded"}},
        )
    assert refused.value.status == 403
    with pytest.raises(ApiException) as spec_refused:
        api.patch_namespaced_custom_object(
            "embedding.dev",
            "v1alpha1",
            namespace,
            "embeddingjobs",
            "mine",
            {"spec": {"suspend": True}},
        )
    assert spec_refused.value.status == 403
    assert StatusReporter(namespace, "other", api).progress(1, 0, 0, None, 1.0) is False
    # The identity belongs to the EmbeddingJob: deleting the job removes it.
    cluster.kubectl("delete", "ej", "mine", "-n", namespace, "--wait=true")
    wait_for(
        lambda: cluster.get("role", "mine-embedding-job-status", namespace) is None,
        message="Role collected",
    )
    wait_for(
        lambda: cluster.get("serviceaccount", "mine-embedding-job", namespace) is None,
        message="SA collected",
    )


@pytest.mark.parametrize("runner", ["native", "ray"])
def test_a_running_job_reports_progress_and_its_output(
    cluster: Cluster,
    namespace: str,
    operator: Operator,
    tmp_path: Path,
    models_root: Path,
    runner: str,
) -> None:
    kubeconfig = job_identity(cluster, namespace, "live", tmp_path)
    ids = [f"img-{i:02d}" for i in range(16)] + ["bad-1"]
    source = table(tmp_path / "in.parquet", ids)
    cfg = {
        "input": {"uri": str(source), "idColumn": "id", "srcType": "image_binary"},
        # Asked for float16: the CPU computes in float32, and the status says so.
        "model": {"name": DINOV2, "path": str(models_root), "dtype": "float16"},
        "inference": {"batchSize": 4},
        "output": {"uri": str(tmp_path / "out")},
    }
    env = {
        "KUBECONFIG": str(kubeconfig),
        "EMBEDDING_JOB_NAME": "live",
        "EMBEDDING_JOB_NAMESPACE": namespace,
        "EMBEDDING_JOB_PROGRESS_SECONDS": "0.5",
    }
    result = run_cli(
        "run",
        "--config",
        str(write_config(tmp_path / "job.yaml", cfg)),
        "--runner",
        runner,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cannot report progress" not in result.stderr
    final = status(cluster, namespace, "live")
    assert final["output"]["rows"] == 17 and final["output"]["rowsFailed"] == 1
    assert final["output"]["embeddingDim"] == 32 and final["output"]["files"]
    assert final["output"]["uri"] == str(tmp_path / "out")
    assert (final["output"]["device"], final["output"]["dtype"]) == ("cpu", "float32")
    progress = final["progress"]
    assert (progress["rowsDone"], progress["rowsTotal"], progress["rowsFailed"]) == (17, 17, 1)
    assert progress["remainingSeconds"] == 0 and progress["imagesPerSecond"] >= 0
    rows_column = cluster.kubectl(
        "get", "ej", "live", "-n", namespace, "--no-headers"
    ).stdout.split()
    assert "17" in rows_column
    header, row = cluster.kubectl(
        "get", "ej", "live", "-n", namespace, "-o", "wide"
    ).stdout.splitlines()
    columns = dict(zip(header.split(), row.split(), strict=False))
    assert columns["ETA-SECONDS"] == "0"
    assert float(columns["IMAGES/S"]) == progress["imagesPerSecond"]


def test_a_job_reports_its_rate_and_time_left_while_it_runs(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    kubeconfig = job_identity(cluster, namespace, "eta", tmp_path)
    done, seconds = [0, 200], [0.0, 20.0]
    loop = ProgressLoop(
        StatusReporter(namespace, "eta", api_as(kubeconfig)),
        lambda: (done.pop(0), 0),
        skipped=100,
        total=1100,
        clock=lambda: seconds.pop(0),
    )
    loop.report()
    loop.report()  # 200 rows in 20 s
    progress = wait_for(
        lambda: (
            (p := status(cluster, namespace, "eta").get("progress", {})).get("rowsDone") == 200
            and p
        ),
        message="the second report",
    )
    assert progress["imagesPerSecond"] == 10
    assert progress["remainingSeconds"] == 80  # 1100 - 100 skipped - 200 done, at 10/s
    header, row = cluster.kubectl(
        "get", "ej", "eta", "-n", namespace, "-o", "wide"
    ).stdout.splitlines()
    columns = dict(zip(header.split(), row.split(), strict=False))
    assert columns["ETA-SECONDS"] == str(progress["remainingSeconds"])
    assert float(columns["IMAGES/S"]) == progress["imagesPerSecond"]


def test_native_tracker_counts_the_embedding_udf_rows(models_root: Path, tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "input": {"uri": str(tmp_path / "in.parquet"), "srcType": "image_binary"},
            # Two models (float16 asked of the second: a CPU computes it in float32).
            "models": [
                {"name": DINOV2, "path": str(models_root), "alias": "a"},
                {"name": DINOV2, "path": str(models_root), "alias": "b", "dtype": "float16"},
            ],
            "inference": {"batchSize": 2},
            "output": {"uri": str(tmp_path / "o")},
        }
    )
    models = plan_models(cfg)
    settings = embedder_settings(cfg, models, cpu_threads=None)
    images = list(good_images().values())
    df = daft.from_pydict({"image": images})
    tracker = NativeTracker()
    try:
        embed(df, cfg, settings, models, Workers(gpus=0, concurrency=1)).collect()
        # Each row once, however many models embed it; each model's precision as it ran.
        assert tracker.snapshot() == (len(images), 0)
        assert tracker.rows_by_precision() == {
            "0/cpu/float32": len(images),
            "1/cpu/float32": len(images),
        }
    finally:
        tracker.close()


def test_ray_tracker_counts_what_workers_add() -> None:
    import ray

    ray.init(num_cpus=1, include_dashboard=False)
    try:
        tracker = RayTracker()
        counter = worker_counter(tracker.actor_name)
        assert counter is not None
        two = ["0/cpu/float32", "1/cpu/float32"]
        ray.get([counter.add.remote(4, 1, two), counter.add.remote(3, 0)])
        assert tracker.snapshot() == (7, 1)
        assert tracker.rows_by_precision() == dict.fromkeys(two, 4)
        tracker.close()
    finally:
        ray.shutdown()


def test_a_failing_job_reports_why_and_a_retry_clears_it(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path, models_root: Path
) -> None:
    kubeconfig = job_identity(cluster, namespace, "broken", tmp_path)
    env = {
        "KUBECONFIG": str(kubeconfig),
        "EMBEDDING_JOB_NAME": "broken",
        "EMBEDDING_JOB_NAMESPACE": namespace,
    }
    cfg = {
        "input": {"uri": str(tmp_path / "in") + "/"},
        "model": {"name": "facebook/dinov2-large", "path": str(models_root)},
        "output": {"uri": str(tmp_path / "out")},
    }
    config_file = str(write_config(tmp_path / "job.yaml", cfg))
    result = run_cli("run", "--config", config_file, "--runner", "native", env=env)
    assert result.returncode == 3, result.stderr[-3000:]
    error = status(cluster, namespace, "broken")["jobError"]
    assert error["reason"] == "ModelNotFound"
    assert "facebook/dinov2-large" in error["message"] and error["time"]
    # A bad config is reported too.
    cfg["inference"] = {"batchSize": 0}
    write_config(tmp_path / "job.yaml", cfg)
    result = run_cli("run", "--config", config_file, "--runner", "native", env=env)
    assert result.returncode == 2
    error = status(cluster, namespace, "broken")["jobError"]
    assert error["reason"] == "InvalidConfig" and "batchSize" in error["message"]
    # The next attempt starts by forgetting it: a successful one leaves no jobError.
    cfg["inference"] = {"batchSize": 4}
    cfg["model"] = {"name": DINOV2, "path": str(models_root), "dtype": "float32"}
    cfg["input"] = {"uri": str(table(tmp_path / "in.parquet", ["a", "b"])), "idColumn": "id"}
    cfg["input"]["srcType"] = "image_binary"
    write_config(tmp_path / "job.yaml", cfg)
    result = run_cli("run", "--config", config_file, "--runner", "native", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    final = status(cluster, namespace, "broken")
    assert "jobError" not in final and final["output"]["rows"] == 2


def own_job_env(kubeconfig: Path, namespace: str, name: str, uid: str) -> dict[str, str]:
    """What the operator gives the driver: its EmbeddingJob's identity, and credentials."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "EMBEDDING_JOB_NAME": name,
        "EMBEDDING_JOB_NAMESPACE": namespace,
        "EMBEDDING_JOB_UID": uid,
    }


def test_the_job_reads_its_config_from_its_embeddingjob_with_its_own_rights(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path, models_root: Path
) -> None:
    ids = [f"img-{i:02d}" for i in range(6)] + ["bad-1"]
    spec = job(models_root, table(tmp_path / "in.parquet", ids), tmp_path / "out")
    spec["input"]["srcType"] = "image_binary"
    kubeconfig = job_identity(cluster, namespace, "own", tmp_path, spec)
    uid = cluster.get("ej", "own", namespace)["metadata"]["uid"]  # type: ignore[index]
    # The operator's driver command, as it is, with the job's ServiceAccount token only.
    rayjob = wait_for(lambda: cluster.get("rayjob", "own", namespace), message="RayJob own")
    driver = shlex.split(rayjob["spec"]["entrypoint"])
    assert driver[:2] == ["embedding-job", "run"] and FROM_EMBEDDINGJOB_FLAG in driver
    driver[driver.index("--runner") + 1] = "native"  # no Ray cluster here
    result = run_cli(*driver[1:], env=own_job_env(kubeconfig, namespace, "own", uid))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(tmp_path / "out")
    assert (manifest["rowsIn"], manifest["rowsFailed"]) == (len(ids), 1)
    assert status(cluster, namespace, "own")["output"]["rows"] == len(ids)


def test_a_job_that_cannot_read_its_config_says_why(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    job_identity(cluster, namespace, "unread", tmp_path)
    uid = cluster.get("ej", "unread", namespace)["metadata"]["uid"]  # type: ignore[index]
    # An identity that may patch the job's status but not read it.
    rule = {"apiGroups": [API_VERSION.split("/")[0]], "resources": ["embeddingjobs/status"]}
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "blind"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "blind"},
            "rules": [{**rule, "resourceNames": ["unread"], "verbs": ["patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "blind"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "blind"},
            "subjects": [{"kind": "ServiceAccount", "name": "blind", "namespace": namespace}],
        },
        namespace=namespace,
    )
    blind = cluster.kubeconfig_for("blind", namespace, tmp_path / "blind.kubeconfig")
    result = run_cli(
        "run", FROM_EMBEDDINGJOB_FLAG, env=own_job_env(blind, namespace, "unread", uid)
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "may not read it" in result.stderr
    error = wait_for(
        lambda: status(cluster, namespace, "unread").get("jobError"), message="jobError"
    )
    assert error["reason"] == "ConfigUnavailable" and "403" in error["message"]
    # A namesake with another uid is another job: the run stops and writes nothing to it.
    mine = cluster.kubeconfig_for("unread-embedding-job", namespace, tmp_path / "unread.kubeconfig")
    result = run_cli(
        "run", FROM_EMBEDDINGJOB_FLAG, env=own_job_env(mine, namespace, "unread", "gone-uid")
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "another job now" in result.stderr and "gone-uid" in result.stderr
    assert status(cluster, namespace, "unread")["jobError"] == error
    # Without the identity the operator sets, the run says what is missing.
    result = run_cli("run", FROM_EMBEDDINGJOB_FLAG, env={"EMBEDDING_JOB_NAME": ""})
    assert result.returncode == 3 and "EMBEDDING_JOB_NAMESPACE" in result.stderr
