"""The operator image, built here by `make images`, run as a real container (podman + runc)
with the pod and container settings of the chart's Deployment as helm installs it, against
the local control plane as the chart's ServiceAccount: it answers its liveness probe and
turns an EmbeddingJob into a RayJob."""

from __future__ import annotations

import base64
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import image_build
from tests.support.containers import PODMAN, image_user, run_args
from tests.support.helm import helm, install
from tests.support.kube import Cluster, Operator
from tests.support.waiting import wait_for

RELEASE, RELEASE_NS = "smoke", "smoke-system"
SA = f"{RELEASE}-embedding-operator"
JOB_IMAGE = "registry.example/team/embedding-job:smoke"
KUBECONFIG_IN_CONTAINER = "/var/run/embedding-operator/kubeconfig"
JOB = """
apiVersion: embedding.dev/v1alpha1
kind: EmbeddingJob
metadata: {name: from-the-image}
spec:
  input: {uri: "s3://bucket/images/"}
  output: {uri: "s3://bucket/out/"}
"""


@pytest.fixture(scope="module")
def operator_image() -> str:
    (built,) = image_build.ensure(image_build.OPERATOR_IMAGE)
    return built.ref


@pytest.fixture(scope="module")
def release(cluster: Cluster, operator_image: str) -> Iterator[dict[str, Any]]:
    """The chart installed with the locally built image; yields its Deployment."""
    repository, _, tag = operator_image.rpartition(":")
    job_repository, _, job_tag = JOB_IMAGE.rpartition(":")
    values = [
        f"image.repository={repository}",
        f"image.tag={tag}",
        f"jobImage.repository={job_repository}",
        f"jobImage.tag={job_tag}",
    ]
    install(
        RELEASE,
        RELEASE_NS,
        cluster.kubeconfig,
        *[arg for value in values for arg in ("--set", value)],
    )
    try:
        deployment = cluster.get("deployment", SA, RELEASE_NS)
        assert deployment is not None
        yield deployment
    finally:
        helm(
            "uninstall",
            RELEASE,
            "--namespace",
            RELEASE_NS,
            check=False,
            kubeconfig=cluster.kubeconfig,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_contained(kubeconfig: Path) -> Path:
    """The kubeconfig with the CA inline, readable by the container's user."""
    config = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        ca = entry["cluster"].pop("certificate-authority", None)
        if ca is not None:
            entry["cluster"]["certificate-authority-data"] = base64.b64encode(
                Path(ca).read_bytes()
            ).decode()
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o644)
    return kubeconfig


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_operator_image_runs_as_the_charts_pod_and_creates_a_rayjob(
    cluster: Cluster, release: dict[str, Any], operator_image: str, namespace: str, tmp_path: Path
) -> None:
    pod = release["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == operator_image
    config_dir = tmp_path / "kube"
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)
    self_contained(cluster.kubeconfig_for(SA, RELEASE_NS, config_dir / "kubeconfig"))
    port, name = free_port(), f"smoke-operator-{uuid.uuid4().hex[:8]}"
    args = run_args(
        pod,
        container,
        image_user=image_user(operator_image),
        extra_env={"KUBECONFIG": KUBECONFIG_IN_CONTAINER},
        # The apiserver is on the host's loopback; the pod's port 8080 would be the host's.
        network="host",
    )
    # Not in-cluster here: the chart ServiceAccount's token comes as a mounted kubeconfig.
    args += ["--name", name, "--volume", f"{config_dir}:{Path(KUBECONFIG_IN_CONTAINER).parent}:ro"]
    # The chart's args, then a liveness address on a free loopback port (kopf takes the last).
    command = [*PODMAN, "run", *args, operator_image, *container["args"]]
    command.append(f"--liveness=http://127.0.0.1:{port}/healthz")
    operator = Operator(cluster, tmp_path / "operator.log", command=command)
    operator.start()
    try:
        wait_for(lambda: healthy(port), message=lambda: f"liveness; log:\n{operator.output()}")
        cluster.apply(JOB, namespace=namespace)
        rayjob = wait_for(
            lambda: cluster.get("rayjob", "from-the-image", namespace),
            message=lambda: f"RayJob; operator log:\n{operator.output()}",
        )
        head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        assert head["containers"][0]["image"] == JOB_IMAGE
        inspect = subprocess.run(
            [
                *PODMAN,
                "inspect",
                "--format",
                "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
                name,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert inspect.stdout.split() == ["10001:10001", "true"]
        assert "forbidden" not in operator.output().lower()
    finally:
        operator.stop()
        subprocess.run(
            [*PODMAN, "rm", "--force", "--ignore", name], capture_output=True, timeout=60
        )
