"""What the e2e scenarios do to a cluster: stage data, apply jobs, watch them, read results."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from embedding_job.demo import make_sample_images
from tests.support.jobs import read_output
from tests.support.providers import Provider
from tests.support.waiting import wait_for

#: The tiny random-init model every e2e job embeds with (made by conftest's models fixture).
MODEL = "google/vit-base-patch16-224-in21k"
JOB_TIMEOUT = 420.0
TERMINAL = ("Succeeded", "Failed")


def share(provider: Provider, *parts: str) -> Path:
    """A directory under the shared workdir that the job's pods can write too."""
    path = provider.workdir.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    for p in [path, *path.parents]:
        if p == provider.workdir.parent:
            break
        p.chmod(0o777)
    return path


def stage_images(
    provider: Provider, namespace: str, count: int, extra: dict[str, bytes] | None = None
) -> Path:
    folder = share(provider, namespace, "in")
    make_sample_images(folder, count=count, seed=len(namespace))
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    for path in folder.iterdir():
        path.chmod(0o666)
    return folder


def embedding_job(
    provider: Provider,
    namespace: str,
    name: str,
    input_uri: str,
    models: Path,
    *,
    model: str = MODEL,
    spec: dict[str, Any] | None = None,
    ttl: int = 5,
) -> dict[str, Any]:
    provider.prepare_namespace(namespace)
    cluster = {**provider.cluster_overrides(), "lifecycle": {"ttlSecondsAfterFinished": ttl}}
    body: dict[str, Any] = {
        "input": {"uri": input_uri},
        "model": {"name": model, "path": str(models), "dtype": "float32"},
        "output": {"uri": str(share(provider, namespace, "out", name)) + "/"},
        "inference": {"batchSize": 8},
        **(spec or {}),
        "cluster": cluster,
    }
    return {
        "apiVersion": "embedding.dev/v1alpha1",
        "kind": "EmbeddingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def store_output(provider: Provider, namespace: str, name: str) -> str:
    """Where a scenario's job writes: a prefix in a fresh bucket of the provider's S3 server,
    or, on a provider without one, the shared directory."""
    if provider.s3 is None:
        return str(share(provider, namespace, "out", name)) + "/"
    bucket = f"{namespace}-{name}"[:63].rstrip("-")
    provider.s3.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/out/"


def output_rows(provider: Provider, uri: str) -> dict[str, list[Any]]:
    """A job's output read back from wherever store_output put it."""
    io_config = provider.s3.io_config() if uri.startswith("s3://") and provider.s3 else None
    return read_output(uri, io_config=io_config)


def output_files(provider: Provider, uri: str) -> list[str]:
    """The names of the files at a job's output location (none if it is not there)."""
    if uri.startswith("s3://"):
        assert provider.s3 is not None
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        pages = provider.s3.client().get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return sorted(k.removeprefix(prefix) for k in keys if k != prefix)
    path = Path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def job_status(provider: Provider, namespace: str, name: str) -> dict[str, Any]:
    """An EmbeddingJob's status ({} while it has none or is gone)."""
    job = provider.cluster.get("embeddingjob", name, namespace)
    return (job or {}).get("status") or {}


def wait_terminal(provider: Provider, namespace: str, name: str) -> dict[str, Any]:
    """The EmbeddingJob once its phase is Succeeded or Failed."""

    def done() -> dict[str, Any] | None:
        job = provider.cluster.get("embeddingjob", name, namespace)
        phase = ((job or {}).get("status") or {}).get("phase")
        return job if phase in TERMINAL else None

    return wait_for(
        done,
        timeout=JOB_TIMEOUT,
        interval=1.0,
        message=lambda: (
            f"EmbeddingJob {namespace}/{name} to finish; now "
            f"{json.dumps(job_status(provider, namespace, name))}"
        ),
    )


def ray_pods(provider: Provider, namespace: str, node_type: str) -> list[dict[str, Any]]:
    out = provider.cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"ray.io/node-type={node_type}", "-o", "json"
    )
    return json.loads(out.stdout)["items"]  # type: ignore[no-any-return]


def wait_scheduled_workers(provider: Provider, namespace: str, count: int) -> list[dict[str, Any]]:
    """Worker pods once the scheduler bound them and kwok (or a kubelet) runs them."""

    def running() -> list[dict[str, Any]] | None:
        pods = ray_pods(provider, namespace, "worker")
        ok = [
            p for p in pods if p["spec"].get("nodeName") and p["status"].get("phase") == "Running"
        ]
        return ok if len(ok) >= count else None

    return wait_for(
        running,
        timeout=JOB_TIMEOUT,
        interval=1.0,
        message=f"{count} running workers in {namespace}",
    )


def scheduled_events(provider: Provider, namespace: str) -> list[str]:
    out = provider.cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Scheduled", "-o", "json"
    )
    return [e["message"] for e in json.loads(out.stdout)["items"]]


def deployment_transitions(provider: Provider, namespace: str, name: str) -> list[str]:
    """KubeRay's own RayJob jobDeploymentStatus changes for one RayJob, from its log."""
    ident = re.compile(
        r'"name":\s*"' + re.escape(name) + r'",\s*"namespace":\s*"' + re.escape(namespace) + '"'
    )
    new = re.compile(r'"new JobDeploymentStatus":\s*"(\w+)"')
    seen: list[str] = []
    for line in provider.kuberay_log().splitlines():
        match = new.search(line)
        if match and ident.search(line) and (not seen or seen[-1] != match.group(1)):
            seen.append(match.group(1))
    return seen


def hidden_size(models: Path, model: str = MODEL) -> int:
    return int(json.loads((models / model / "config.json").read_text())["hidden_size"])


def gone(provider: Provider, namespace: str) -> bool:
    """No RayJob, RayCluster or pod left in the namespace."""
    out = provider.cluster.kubectl("get", "rayjobs,rayclusters,pods", "-n", namespace, "-o", "name")
    return out.stdout.strip() == ""
