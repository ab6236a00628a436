"""Scenarios about the job's data in an object store and, where pods really start (the
``node`` provider), about the pods themselves: the images they run, the GPU they ask for, an
image that cannot be pulled, a worker killed mid-run."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedding_job.demo import make_sample_images
from tests.e2e.checks import check_gpu_workers, note, show
from tests.e2e.steps import (
    JOB_TIMEOUT,
    embedding_job,
    hidden_size,
    job_status,
    output_files,
    output_rows,
    ray_pods,
    share,
    store_output,
    wait_terminal,
)
from tests.support.jobs import read_output
from tests.support.providers import Provider
from tests.support.s3_server import Bucket
from tests.support.waiting import wait_for


@pytest.fixture
def bucket(provider: Provider, namespace: str) -> Bucket:
    """A fresh bucket on the provider's S3 server."""
    assert provider.s3 is not None, "this provider runs no S3 server"
    name = f"{namespace}-data"[:63]
    provider.s3.client().create_bucket(Bucket=name)
    return Bucket(provider.s3, name)


def stage_in_bucket(bucket: Bucket, folder: Path, count: int) -> list[str]:
    """Sample images uploaded under in/; returns their keys."""
    make_sample_images(folder, count=count, seed=count)
    return [bucket.put(f"in/{p.name}", p.read_bytes()) for p in sorted(folder.iterdir())]


def show_ray_pods(provider: Provider, namespace: str) -> list[dict[str, Any]]:
    """The job's Ray pods once each runs, with the image it runs and where."""

    def running() -> list[dict[str, Any]] | None:
        pods = ray_pods(provider, namespace, "head") + ray_pods(provider, namespace, "worker")
        ok = [p for p in pods if p["status"].get("phase") == "Running"]
        return ok if len(ok) == len(pods) >= 2 else None

    pods = wait_for(running, timeout=JOB_TIMEOUT, interval=1.0, message="Ray pods Running")
    lines = []
    for pod in pods:
        status = pod["status"]["containerStatuses"][0]
        lines.append(
            f"{pod['metadata']['name']} ({pod['metadata']['labels']['ray.io/node-type']}) "
            f"{pod['status']['phase']} on {pod['spec']['nodeName']} from {status['image']} "
            f"(started: {status.get('started')}, hostNetwork: {pod['spec'].get('hostNetwork')})"
        )
    show("Ray pods", lines)
    return pods


@pytest.mark.object_store
def test_object_store_in_and_out(
    provider: Provider, namespace: str, models: Path, bucket: Bucket
) -> None:
    """Images from an S3 API server, Parquet + manifest + _SUCCESS back to it; on real pods
    the head and worker run from the job image and the worker's (advertised) GPU is really
    absent, so the model runs on the CPU, and the job says so."""
    assert provider.s3 is not None
    keys = stage_in_bucket(bucket, share(provider, namespace, "staging"), count=10)
    out = f"{bucket.uri}/out/"
    # The cluster stays a minute after the job: its head holds the job's log read below.
    manifest = embedding_job(provider, namespace, "s3", f"{bucket.uri}/in/", models, ttl=60)
    manifest["spec"]["output"]["uri"] = out
    provider.cluster.apply(manifest)
    check_gpu_workers(provider, namespace, count=1, gpus=1)
    if provider.real_pods:
        pods = show_ray_pods(provider, namespace)
        images = {p["spec"]["containers"][0]["image"] for p in pods}
        assert images == {provider.job_image}, images

    status = wait_terminal(provider, namespace, "s3")["status"]
    assert status["phase"] == "Succeeded", status
    rows = read_output(out, io_config=provider.s3.io_config())
    assert sorted(rows["path"]) == sorted(keys)
    assert {len(v) for v in rows["embedding"]} == {hidden_size(models)}
    written = bucket.keys("out/")
    assert {"out/_SUCCESS", "out/_manifest.json"} <= set(written), written
    manifest_body = json.loads(bucket.get("out/_manifest.json"))
    assert (manifest_body["rowsIn"], manifest_body["rowsEmbedded"]) == (10, 10), manifest_body
    progress = status["progress"]
    assert progress["rowsDone"] == progress["rowsTotal"] == 10, progress
    note(f"s3: {len(rows['path'])} rows from {bucket.uri}/in/ to {out}: {sorted(written)}")
    if provider.real_pods:
        reporter = provider.status_reporter(namespace, "s3")
        assert reporter == f"system:serviceaccount:{namespace}:s3-embedding-job", reporter
        note(f"s3: progress and output reported by {reporter} (the apiserver's audit log)")
        assert "no CUDA GPU visible: embedding on CPU" in provider.job_log(namespace, "s3")
        note("s3: the worker asked for nvidia.com/gpu, found none and embedded on the CPU")


@pytest.mark.real_pods
def test_bad_image_reference_fails_the_job_saying_why(
    provider: Provider, namespace: str, models: Path
) -> None:
    folder = share(provider, namespace, "in")
    make_sample_images(folder, count=2, seed=3)
    manifest = embedding_job(provider, namespace, "bad-image", str(folder) + "/", models)
    out = manifest["spec"]["output"]["uri"] = store_output(provider, namespace, "bad-image")
    missing = provider.job_image.rsplit(":", 1)[0] + ":does-not-exist"
    manifest["spec"]["cluster"]["image"] = missing
    provider.cluster.apply(manifest)

    def says_why() -> dict[str, Any] | None:
        status = job_status(provider, namespace, "bad-image")
        return status if status.get("reason") == "ImagePullBackOff" else None

    status = wait_for(says_why, timeout=120, interval=1.0, message="the pull error in status")
    assert status["phase"] == "Submitted" and missing in status["message"], status
    note(f"bad-image: {status['phase']}/{status['reason']}: {status['message']}")
    final = wait_terminal(provider, namespace, "bad-image")["status"]
    assert (final["phase"], final["reason"]) == ("Failed", "ImagePullFailed"), final
    assert missing in final["message"], final
    note(f"bad-image: {final['phase']}/{final['reason']}: {final['message']}")
    wait_for(
        lambda: (
            not provider.cluster.items("rayclusters", namespace)
            and not provider.cluster.items("pods", namespace)
        ),
        timeout=120,
        interval=1.0,
        message="the job's Ray cluster and pods to be torn down",
    )
    events = provider.cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=EmbeddingJob",
        "-o", "json",
    ).stdout  # fmt: skip
    reasons = {(e["type"], e["reason"]) for e in json.loads(events)["items"]}
    assert ("Warning", "PodsNotStarting") in reasons and ("Warning", "JobFailed") in reasons
    assert output_files(provider, out) == [], "a job that never ran wrote nothing"


@pytest.fixture
def held_table(provider: Provider, namespace: str) -> Iterator[tuple[Path, threading.Event]]:
    """A table of 6 images, one of them a FIFO: the job blocks on it until the test sets
    the event; from then on every reader gets a real JPEG from it."""
    folder = share(provider, namespace, "held")
    make_sample_images(folder, count=6, seed=9)
    images = sorted(p for p in folder.iterdir())
    jpeg = images[-1].read_bytes()
    fifo = folder / "held.jpg"
    os.mkfifo(fifo, 0o666)
    fifo.chmod(0o666)
    rows = [{"id": p.name, "image": str(p)} for p in [*images[:-1], fifo]]
    table = folder / "table.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table.chmod(0o666)
    release, stop = threading.Event(), threading.Event()

    def feed() -> None:
        release.wait()
        while not stop.is_set():
            try:  # blocks until a reader opens it; a non-blocking probe keeps stop responsive
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                stop.wait(0.2)
                continue
            os.set_blocking(fd, True)
            try:
                os.write(fd, jpeg)
            except OSError:
                pass
            finally:
                os.close(fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield table, release
    release.set()
    stop.set()
    feeder.join(timeout=10)


@pytest.mark.real_pods
def test_worker_killed_mid_run_retries_without_duplicates(
    provider: Provider,
    namespace: str,
    models: Path,
    held_table: tuple[Path, threading.Event],
) -> None:
    table, release = held_table
    spec = {"input": {"uri": str(table), "imageColumn": "image", "idColumn": "id"}}
    manifest = embedding_job(provider, namespace, "killed", str(table), models, spec=spec)
    out = manifest["spec"]["output"]["uri"] = store_output(provider, namespace, "killed")
    # A lost worker may fail the attempt: KubeRay then retries it on a new cluster.
    manifest["spec"]["cluster"]["lifecycle"]["backoffLimit"] = 2
    provider.cluster.apply(manifest)

    def running() -> dict[str, Any] | None:
        status = job_status(provider, namespace, "killed")
        return status if status.get("phase") == "Running" and status.get("progress") else None

    wait_for(running, timeout=JOB_TIMEOUT, interval=1.0, message="the job to run, held")
    (worker,) = ray_pods(provider, namespace, "worker")
    name = worker["metadata"]["name"]
    provider.cluster.kubectl(
        "delete", "pod", name, "-n", namespace, "--grace-period=0", "--force", "--wait=true"
    )
    note(f"killed: deleted worker pod {name} while the job was held mid-run")
    release.set()

    status = wait_terminal(provider, namespace, "killed")["status"]
    assert status["phase"] == "Succeeded", status
    assert status["output"]["uri"].rstrip("/") == out.rstrip("/")
    rows = output_rows(provider, out)
    assert {"_SUCCESS", "_manifest.json"} <= set(output_files(provider, out))
    ids = [json.loads(line)["id"] for line in table.read_text().splitlines()]
    assert sorted(rows["id"]) == sorted(ids), "one row per input row, none twice"
    assert all(e is None for e in rows["embedding_error"]), rows["embedding_error"]
    rayjob = provider.cluster.get("rayjob", "killed", namespace) or {}
    attempts = (rayjob.get("status") or {}).get("failed", 0)
    note(f"killed: Succeeded, {len(rows['id'])} rows, none twice ({attempts} failed attempts)")
