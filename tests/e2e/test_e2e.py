"""EmbeddingJob → operator → KubeRay → Ray → the real job, on a whole cluster.

Runs on the provider EMBOP_E2E_PROVIDER names (tests/e2e/providers.py): ``local`` in CI,
``kind`` for users with Docker. Every scenario prints what it saw, so the log shows the
scheduler's bindings and KubeRay's own status transitions.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.checks import (
    assert_loopback,
    check_gpu_workers,
    check_waiting_for_resources,
    example_prerequisites,
    note,
    show,
)
from tests.e2e.steps import (
    JOB_TIMEOUT,
    deployment_transitions,
    embedding_job,
    gone,
    hidden_size,
    job_status,
    output_files,
    share,
    stage_images,
    store_output,
    wait_terminal,
)
from tests.support.images import random_bytes, truncated_jpeg
from tests.support.jobs import examples, read_output
from tests.support.providers import Provider
from tests.support.waiting import wait_for


def test_happy_path(provider: Provider, namespace: str, models: Path) -> None:
    folder = stage_images(provider, namespace, count=12)
    provider.cluster.apply(embedding_job(provider, namespace, "happy", str(folder) + "/", models))
    check_gpu_workers(provider, namespace, count=1, gpus=1)

    job = wait_terminal(provider, namespace, "happy")
    status = job["status"]
    assert status["phase"] == "Succeeded", status
    out = read_output(status["output"]["uri"])
    assert len(out["embedding"]) == 12
    assert {len(v) for v in out["embedding"]} == {hidden_size(models)}
    assert all(e is None for e in out["embedding_error"])
    assert status["progress"]["rowsDone"] == status["progress"]["rowsTotal"] == 12

    transitions = deployment_transitions(provider, namespace, "happy")
    show("KubeRay's RayJob jobDeploymentStatus transitions", [" -> ".join(transitions)])
    order = [transitions.index(s) for s in ("Initializing", "Running", "Complete")]
    assert order == sorted(order), transitions


def test_bad_rows_are_error_rows_of_a_successful_job(
    provider: Provider, namespace: str, models: Path
) -> None:
    bad = {"zz_truncated.jpg": truncated_jpeg(), "zz_random.jpg": random_bytes()}
    folder = stage_images(provider, namespace, count=6, extra=bad)
    spec = {"errors": {"maxFailedFraction": 0.5}}
    provider.cluster.apply(
        embedding_job(provider, namespace, "bad-rows", str(folder) + "/", models, spec=spec),
    )

    status = wait_terminal(provider, namespace, "bad-rows")["status"]
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["rowsFailed"] == 2
    assert status["progress"]["rowsTotal"] == 8
    out = read_output(status["output"]["uri"])
    failed = sorted(
        Path(p).name for p, e in zip(out["path"], out["embedding_error"], strict=True) if e
    )
    assert failed == sorted(bad)


def test_missing_model_fails_naming_it_and_the_cluster_goes_away(
    provider: Provider, namespace: str, models: Path
) -> None:
    folder = stage_images(provider, namespace, count=2)
    manifest = embedding_job(
        provider,
        namespace,
        "no-model",
        str(folder) + "/",
        models,
        model="facebook/dinov2-large",
        ttl=5,
    )
    provider.cluster.apply(manifest)

    status = wait_terminal(provider, namespace, "no-model")["status"]
    # The job's own account, not KubeRay's "entrypoint failed with exit code 3, logs: ...".
    assert (status["phase"], status["reason"]) == ("Failed", "ModelNotFound"), status
    assert status["message"].startswith("model 'facebook/dinov2-large' not found"), status
    note(f"Failed: {status['reason']}: {status['message'].splitlines()[0]}")
    # shutdownAfterJobFinishes + ttlSecondsAfterFinished=5: KubeRay deletes the RayCluster.
    wait_for(
        lambda: (
            not json.loads(
                provider.cluster.kubectl(
                    "get", "rayclusters,pods", "-n", namespace, "-o", "json"
                ).stdout
            )["items"]
        ),
        timeout=120,
        interval=1.0,
        message="the RayCluster and its pods to be deleted after the TTL",
    )


@pytest.fixture
def held_input(provider: Provider, namespace: str) -> Iterator[Path]:
    """A JSON-lines input whose one image is a FIFO: reading it blocks until released, so
    the job is deterministically mid-run. Released (EOF) at teardown."""
    folder = share(provider, namespace, "held")
    fifo = folder / "held.jpg"
    os.mkfifo(fifo, 0o666)
    fifo.chmod(0o666)
    table = folder / "table.jsonl"
    table.write_text(json.dumps({"id": "held", "image": str(fifo)}) + "\n")
    table.chmod(0o666)
    yield table
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a reader is waiting: EOF it
    except OSError as e:
        if e.errno != errno.ENXIO:  # ENXIO: nobody is reading any more
            raise


def test_delete_mid_run_collects_everything(
    provider: Provider, namespace: str, models: Path, held_input: Path
) -> None:
    spec = {"input": {"uri": str(held_input), "imageColumn": "image", "idColumn": "id"}}
    manifest = embedding_job(provider, namespace, "doomed", str(held_input), models, spec=spec)
    out = manifest["spec"]["output"]["uri"] = store_output(provider, namespace, "doomed")
    provider.cluster.apply(manifest)

    def running() -> dict[str, Any] | None:
        rayjob = provider.cluster.get("rayjob", "doomed", namespace)
        status = (rayjob or {}).get("status") or {}
        return status if status.get("jobStatus") == "RUNNING" else None

    status = wait_for(running, timeout=JOB_TIMEOUT, interval=1.0, message="the Ray job to run")
    job_id, cluster_name = status["jobId"], status["rayClusterName"]
    if provider.sees_ray_head:
        ray_job = provider.ray_job(job_id)
        assert ray_job is not None and ray_job["status"] == "RUNNING", ray_job

    # The running job reports to its EmbeddingJob while it runs: nothing done yet (held).
    def reporting() -> dict[str, Any] | None:
        status = job_status(provider, namespace, "doomed")
        return status if status.get("phase") == "Running" and status.get("progress") else None

    progress = wait_for(reporting, timeout=120, interval=1.0, message="a progress report")[
        "progress"
    ]
    assert progress["rowsDone"] == 0 and progress["updatedAt"], progress

    provider.cluster.kubectl("delete", "embeddingjob", "doomed", "-n", namespace, "--wait=false")
    wait_for(
        lambda: gone(provider, namespace),
        timeout=180,
        interval=1.0,
        message="RayJob, RayCluster and pods to be collected",
    )
    note(f"RayJob doomed, RayCluster {cluster_name} and their pods were garbage-collected")
    written = output_files(provider, out)
    assert "_SUCCESS" not in written and "_manifest.json" not in written, written
    note(f"doomed: nothing claims success at {out}: {written}")
    if provider.sees_ray_head:
        # KubeRay's finalizer asked Ray to stop the job: STOPPED, not FAILED.
        wait_for(
            lambda: (provider.ray_job(job_id) or {}).get("status") == "STOPPED",
            timeout=120,
            interval=1.0,
            message=lambda: f"Ray to stop job {job_id}; now {provider.ray_job(job_id)}",
        )
        note(f"Ray job {job_id}: STOPPED")


def test_two_jobs_at_once_in_two_namespaces(provider: Provider, models: Path) -> None:
    names = [f"e2e-pair-{side}" for side in ("a", "b")]
    jobs = []
    for ns in names:
        provider.cluster.kubectl("create", "namespace", ns)
        folder = stage_images(provider, ns, count=4)
        jobs.append(embedding_job(provider, ns, "twin", str(folder) + "/", models))
    try:
        provider.cluster.apply(*jobs)
        statuses = [wait_terminal(provider, ns, "twin")["status"] for ns in names]
        for ns, status in zip(names, statuses, strict=True):
            assert status["phase"] == "Succeeded", (ns, status)
            assert status["output"]["uri"].startswith(str(provider.workdir / ns))
            assert len(read_output(status["output"]["uri"])["embedding"]) == 4
        assert statuses[0]["rayClusterName"] != statuses[1]["rayClusterName"]
    finally:
        provider.cluster.kubectl("delete", "namespace", *names, "--wait=false", check=False)


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.stem)
def test_example_runs_to_a_truthful_end(provider: Provider, namespace: str, path: Path) -> None:
    provider.cluster.apply(*example_prerequisites(provider, namespace))
    example = yaml.safe_load(path.read_text())
    example["metadata"]["namespace"] = namespace
    provider.cluster.apply(example)

    worker = example["spec"].get("cluster", {}).get("worker", {})
    if not provider.fits_examples:  # more than the nodes have: the truth is "waiting"
        check_waiting_for_resources(provider, namespace, example["metadata"]["name"])
        return
    check_gpu_workers(
        provider, namespace, count=worker.get("replicas", 1), gpus=worker.get("gpus", 1)
    )
    status = wait_terminal(provider, namespace, example["metadata"]["name"])["status"]
    # No weights in this cluster (and offline: no hub, no object store): the job must say so.
    assert status["phase"] == "Failed", status
    if provider.offline:
        # The job looks for its models in order: the first one is missing first.
        model = (example["spec"].get("models") or [example["spec"].get("model", {})])[0]
        assert status["reason"] == "ModelNotFound", status
        assert model.get("name", "facebook/dinov2-large") in status["message"], status["message"]
        if model.get("download"):  # tried, and failed on the closed loopback hub endpoint
            assert "Downloading it from the Hugging Face hub failed" in status["message"]
    note(f"{path.name}: {status['reason']}: {status['message'].splitlines()[0]}")
    provider.cluster.kubectl("delete", "embeddingjob", "--all", "-n", namespace, "--wait=false")


@pytest.mark.loopback
def test_nothing_left_loopback(provider: Provider) -> None:
    """Cluster-wide (the scenarios check each job's pods and services while they exist), and
    KubeRay dialled nothing else."""
    addresses = assert_loopback(provider)
    assert addresses
    log = provider.kuberay_log()
    dialled = re.findall(r"dial tcp ([0-9.]+):", log)
    assert all(ipaddress.ip_address(a).is_loopback for a in dialled), dialled
    # A name missing from KubeRay's hosts file is looked up on its resolv.conf's 127.0.0.1.
    resolvers = re.findall(r"lookup \S+ on ([0-9.]+):53", log)
    assert all(ipaddress.ip_address(a).is_loopback for a in resolvers), resolvers
    direct = sorted(set(dialled)) or "no IP directly"
    note(f"{len(addresses)} cluster addresses, all loopback; KubeRay dialled {direct}")
