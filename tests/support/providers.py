"""Cluster providers for the e2e suite: the same tests run on each.

* ``local`` (CI): e2e_cluster.py's cluster from real parts on loopback — kube-apiserver,
  kube-controller-manager, kube-scheduler, kwok's fake GPU nodes, KubeRay's ray-operator —
  with one real Ray head on 127.0.0.1 standing in for every head pod, and our operator as
  a `kopf run` process.
* ``node`` (CI; node_provider.py): real pods on a real kubelet and containerd, from the
  images ``make images`` built, our operator installed by its chart as a pod.
* ``kind`` (users with Docker; cannot run on machines without a Docker engine): a kind
  cluster with both images built and loaded, KubeRay's Helm chart and ours installed, and
  a CPU worker group.

All share a host directory with the job at the same absolute path (``workdir``: mounted
into every pod as a hostPath volume by the EmbeddingJob itself, bind-mounted into the kind
node), so the tests stage input, the tiny model and read output in the same way. ``local``
and ``node`` also run an S3 API server (moto) on loopback, whose credentials every test
namespace gets as a Secret that the jobs reference (``spec.cluster.storageSecretRef``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.e2e_cluster import E2ECluster
from tests.support.kube import Cluster, Operator
from tests.support.s3_server import S3Server, running_s3_server
from tests.support.tools import ROOT, tool

KUBERAY_CHART_VERSION = os.environ.get("EMBOP_E2E_KUBERAY_CHART_VERSION", "1.6.1")
#: The S3 server's credentials as a Secret in each test namespace.
STORAGE_SECRET = "s3-test-credentials"


class Provider:
    """What the e2e tests need from a cluster."""

    name = "abstract"
    #: whether the tests can see the Ray head's own job list (the local provider's is real
    #: and outlives every RayCluster; kind's head pods are gone after each job)
    sees_ray_head = False
    #: whether worker pods request nvidia.com/gpu from nodes that advertise it (kwok's fakes)
    fake_gpus = False
    #: whether the job can reach nothing beyond the machine (no hub, no object store)
    offline = False
    #: whether pods really start (from the images), so image pulls and pod kills are real
    real_pods = False
    #: whether every address the cluster hands out is on loopback (tested)
    loopback = False
    #: whether the provider runs an S3 API server that the job reaches (see start_s3)
    object_store = False
    #: whether the examples' clusters fit the nodes (else they wait, truthfully)
    fits_examples = True
    #: the job image the pods run (providers whose pods really start)
    job_image = ""

    def __init__(self) -> None:
        # Short and identical on host, kind node and pods; world-writable for the ray user.
        self.workdir = Path(tempfile.mkdtemp(prefix="embop-e2e-", dir="/tmp"))
        self.workdir.chmod(0o777)
        self.cluster: Cluster
        self.s3: S3Server | None = None
        self._s3_server = contextlib.ExitStack()

    def up(self) -> None:
        raise NotImplementedError

    def describe(self) -> list[str]:
        """What the provider runs, for the e2e log."""
        return []

    def start_s3(self) -> S3Server:
        self.s3 = self._s3_server.enter_context(running_s3_server())
        return self.s3

    def stop_s3(self) -> None:
        self._s3_server.close()

    def prepare_namespace(self, namespace: str) -> None:
        """What every job of a namespace refers to: the S3 server's credentials."""
        if self.s3 is not None:
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": STORAGE_SECRET, "namespace": namespace},
                "stringData": self.s3.env,
            }
            self.cluster.apply(secret)

    def down(self) -> None:
        raise NotImplementedError

    def cluster_overrides(self) -> dict[str, Any]:
        """spec.cluster fields every e2e job gets: the shared directory, mounted at its path,
        and the S3 server's credentials where there is one."""
        overrides: dict[str, Any] = {
            "volumes": [
                {"name": "e2e", "mountPath": str(self.workdir), "hostPath": str(self.workdir)}
            ]
        }
        if self.s3 is not None:
            overrides["storageSecretRef"] = {"name": STORAGE_SECRET}
        return overrides

    def kuberay_log(self) -> str:
        raise NotImplementedError

    def status_reporter(self, namespace: str, name: str) -> str:
        """The user that reported a job's progress to its EmbeddingJob (real pods)."""
        raise NotImplementedError

    def job_log(self, namespace: str, name: str) -> str:
        """The Ray job's driver log, workers' output included (real pods)."""
        raise NotImplementedError

    def operator_log(self) -> str:
        raise NotImplementedError

    def ray_job(self, submission_id: str) -> dict[str, Any] | None:
        """Ray's own record of a submitted job (only where ``sees_ray_head``)."""
        raise NotImplementedError


class LocalProvider(Provider):
    name = "local"
    sees_ray_head = True
    fake_gpus = True
    offline = True
    loopback = True
    object_store = True

    def __init__(self) -> None:
        super().__init__()
        self.dir = self.workdir / "cluster"
        self.e2e = E2ECluster(self.dir)
        self.operator: Operator | None = None

    def up(self) -> None:
        # The one Ray head stands in for every head pod: it gets the S3 credentials that the
        # pods would get from the namespace's Secret.
        self.e2e.extra_env = self.start_s3().env
        self.e2e.up()
        self.env = self.e2e.env
        self.cluster = Cluster.at(self.dir)
        self.cluster.logs.update(KubeRay=self.kuberay_log, operator=self.operator_log)
        self.operator = Operator(self.cluster, self.dir / "logs" / "operator.log")
        # The shared directory is mounted as a hostPath: the one the tenancy policy allows.
        self.operator.env["EMBEDDING_OPERATOR_ALLOWED_HOST_PATHS"] = str(self.workdir)
        self.operator.start()

    def down(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.e2e.down()
        self.stop_s3()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kuberay_log(self) -> str:
        return (self.dir / "logs" / "ray-operator.log").read_text(errors="replace")

    def operator_log(self) -> str:
        return self.operator.output() if self.operator else ""

    def ray_job(self, submission_id: str) -> dict[str, Any] | None:
        token = Path(self.env["EMBOP_RAY_TOKEN_FILE"]).read_text().strip()
        request = urllib.request.Request(
            f"{self.env['RAY_ADDRESS']}/api/jobs/{submission_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise


class KindProvider(Provider):
    """kind + both images + KubeRay's chart + ours. Needs docker, kind and network access."""

    name = "kind"
    real_pods = True
    fits_examples = False  # a CPU worker group: the examples' GPU workers wait
    cluster_name = os.environ.get("EMBOP_E2E_KIND_CLUSTER", "embop-e2e")
    job_image = "embedding-job:e2e"
    operator_image = "embedding-operator:e2e"

    def __init__(self) -> None:
        super().__init__()
        self.created = False

    def _run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), check=True, text=True, **kwargs)

    def up(self) -> None:
        kind_config = self.workdir / "kind.yaml"
        kind_config.write_text(
            json.dumps(
                {
                    "kind": "Cluster",
                    "apiVersion": "kind.x-k8s.io/v1alpha4",
                    "nodes": [
                        {
                            "role": "control-plane",
                            "extraMounts": [
                                {"hostPath": str(self.workdir), "containerPath": str(self.workdir)}
                            ],
                        }
                    ],
                }
            )
        )
        kubeconfig = self.workdir / "kubeconfig"
        self._run(
            "kind",
            "create",
            "cluster",
            "--name",
            self.cluster_name,
            "--config",
            str(kind_config),
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "180s",
        )
        self.created = True  # from here on, down() deletes the cluster this run made
        kubectl = shutil.which("kubectl") or tool("kubectl")
        self.cluster = Cluster(self.workdir, kubeconfig, kubectl)
        self.cluster.logs.update(KubeRay=self.kuberay_log, operator=self.operator_log)
        self._run(
            "docker",
            "build",
            "-f",
            "job_image/Dockerfile",
            "--build-arg",
            "RAY_IMAGE=rayproject/ray:2.59.0-py311-cpu",
            "-t",
            self.job_image,
            ".",
            cwd=ROOT,
        )
        self._run(
            "docker", "build", "-f", "operator/Dockerfile", "-t", self.operator_image, ".", cwd=ROOT
        )
        for image in (self.job_image, self.operator_image):
            self._run("kind", "load", "docker-image", image, "--name", self.cluster_name)
        helm = shutil.which("helm") or tool("helm")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self._run(  # --repo: nothing is added to the user's helm repositories
            helm,
            "upgrade",
            "--install",
            "kuberay-operator",
            "kuberay-operator",
            "--repo",
            "https://ray-project.github.io/kuberay-helm/",
            "--version",
            KUBERAY_CHART_VERSION,
            "--namespace",
            "kuberay-system",
            "--create-namespace",
            "--wait",
            env=env,
        )
        chart = str(ROOT / "charts" / "embedding-operator")
        self._run(
            helm,
            "upgrade",
            "--install",
            "embedding-operator",
            chart,
            "--namespace",
            "embedding-system",
            "--create-namespace",
            "--wait",
            *self.chart_args(),
            env=env,
        )

    def chart_args(self) -> list[str]:
        """Our chart's values on kind: the images just built and loaded, never pulled."""
        operator_repo, operator_tag = self.operator_image.split(":")
        job_repo, job_tag = self.job_image.split(":")
        values = {
            "image.repository": operator_repo,
            "image.tag": operator_tag,
            "image.pullPolicy": "Never",
            "jobImage.repository": job_repo,
            "jobImage.tag": job_tag,
            # The shared directory is mounted as a hostPath: the one the tenancy policy allows.
            "tenancy.allowedHostPaths": "{" + str(self.workdir) + "}",
        }
        return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]

    def down(self) -> None:
        # Never a cluster this run did not create (e.g. one of that name that already existed).
        if self.created:
            subprocess.run(["kind", "delete", "cluster", "--name", self.cluster_name], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def cluster_overrides(self) -> dict[str, Any]:
        # No GPUs on kind: a CPU worker group, small enough for a laptop.
        return {
            **super().cluster_overrides(),
            "image": self.job_image,
            "imagePullPolicy": "Never",
            "head": {"cpu": "1", "memory": "2Gi"},
            "worker": {"replicas": 1, "gpus": 0, "cpu": "1", "memory": "3Gi"},
        }

    def kuberay_log(self) -> str:
        return self.cluster.kubectl(
            "logs", "-n", "kuberay-system", "deploy/kuberay-operator", "--tail=-1", check=False
        ).stdout

    def operator_log(self) -> str:
        return self.cluster.kubectl(
            "logs", "-n", "embedding-system", "deploy/embedding-operator", "--tail=-1", check=False
        ).stdout


def provider_class(name: str) -> type[Provider]:
    from tests.support.node_provider import NodeProvider

    providers: dict[str, type[Provider]] = {
        "local": LocalProvider,
        "node": NodeProvider,
        "kind": KindProvider,
    }
    if name not in providers:
        raise ValueError(f"unknown e2e provider {name!r}: use one of {sorted(providers)}")
    return providers[name]


def make_provider(name: str) -> Provider:
    return provider_class(name)()
