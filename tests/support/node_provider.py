"""The ``node`` e2e provider: real pods on a real kubelet (node_cluster.py), from the images
``make images`` built, with a real S3 API server (moto) on loopback.

* Our operator is a real pod: ``helm install`` of the chart with the local operator image,
  running on the host network with the chart's ServiceAccount and in-cluster config (the
  ``kubernetes`` Service's ClusterIP is forwarded to the apiserver).
* Every Ray pod starts from the local job image, on the host network (the operator's
  ``jobPods.hostNetwork``): one head and one GPU worker per job, the worker's GPU advertised by
  the node, the model run on the CPU (there is no GPU behind it), its status reported by the
  job's own ServiceAccount from inside the pod.
* KubeRay's operator is a process on the host resolving the head Services' names with the
  cluster's DNS.

The shared directory (``workdir``) is mounted into the pods as a hostPath, as on the other
providers; the tests' input and output can also live in the S3 server's buckets.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from typing import Any

from tests.support import image_build
from tests.support.helm import CHART, helm
from tests.support.kube import Cluster
from tests.support.node_cluster import NodeCluster
from tests.support.node_config import NODE_IP
from tests.support.providers import Provider

OPERATOR_NAMESPACE = "embedding-system"
RELEASE = "embedding-operator"
#: The operator pod's probe port on the host network (Ray's pods take 8080 there).
PROBE_PORT = 18080
#: How long a pod may fail to pull its image before the operator fails the job (seconds).
IMAGE_PULL_GRACE = 30


class NodeProvider(Provider):
    name = "node"
    sees_ray_head = False  # each job's head is its own pod, gone with its cluster
    fake_gpus = True  # the node advertises nvidia.com/gpu; the pods run on the CPU
    offline = True
    real_pods = True
    loopback = True
    object_store = True
    #: the examples ask for more than one 2-core node has: they wait, truthfully
    fits_examples = False

    def __init__(self) -> None:
        super().__init__()
        self.dir = self.workdir / "cluster"
        self.node = NodeCluster(self.dir)
        self.images: dict[str, str] = {}
        self.lines: list[str] = []

    def up(self) -> None:
        built = {b.name: b.ref for b in image_build.ensure("embedding-operator", "embedding-job")}
        self.images, self.job_image = built, built["embedding-job"]
        self.node.up()
        self.cluster = Cluster.at(self.dir)
        self.cluster.logs.update(KubeRay=self.kuberay_log, operator=self.operator_log)
        for ref in built.values():
            self.node.load_image(ref)
        s3 = self.start_s3()
        helm(
            "install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE,
            "--create-namespace", "--wait", "--timeout=5m", *self.chart_args(),
            kubeconfig=self.cluster.kubeconfig,
        )  # fmt: skip
        pod = self.operator_pod()
        container = pod["status"]["containerStatuses"][0]
        self.lines = [
            f"node {self.node.env['EMBOP_NODE_NAME']}: kubelet + containerd + runc, pods on "
            f"the host network at {NODE_IP}",
            f"operator pod {OPERATOR_NAMESPACE}/{pod['metadata']['name']} "
            f"{pod['status']['phase']} from {container['image']} (ServiceAccount "
            f"{pod['spec']['serviceAccountName']}, in-cluster config)",
            f"job image {built['embedding-job']}",
            f"S3 API server (moto) on {s3.endpoint}",
        ]

    def describe(self) -> list[str]:
        return self.lines

    def chart_args(self) -> list[str]:
        operator_repo, operator_tag = self.images["embedding-operator"].rsplit(":", 1)
        job_repo, job_tag = self.images["embedding-job"].rsplit(":", 1)
        values = {
            "image.repository": operator_repo,
            "image.tag": operator_tag,
            "image.pullPolicy": "Never",
            "jobImage.repository": job_repo,
            "jobImage.tag": job_tag,
            "hostNetwork": "true",
            "probePort": str(PROBE_PORT),
            "jobPods.hostNetwork": "true",
            "jobPods.imagePullGraceSeconds": str(IMAGE_PULL_GRACE),
            "resyncSeconds": "5",
            # The shared directory is mounted as a hostPath: the one the tenancy policy allows.
            "tenancy.allowedHostPaths": "{" + str(self.workdir) + "}",
            # Local images only (a scenario names one that does not exist).
            "tenancy.allowedImages": "{localhost/}",
            # The operator is small; on a 2-core node the Ray pods need the rest.
            "resources.requests.cpu": "10m",
        }
        return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]

    def operator_pod(self) -> dict[str, Any]:
        out = self.cluster.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
            "app.kubernetes.io/name=embedding-operator", "-o", "json",
        ).stdout  # fmt: skip
        pods = [p for p in json.loads(out)["items"] if p["status"].get("phase") == "Running"]
        assert len(pods) == 1, pods
        return pods[0]  # type: ignore[no-any-return]

    def down(self) -> None:
        self.node.down()
        self.stop_s3()
        shutil.rmtree(self.workdir, ignore_errors=True)
        # A leak (a container, a mount, a cgroup) fails the run rather than the next one.
        assert not self.node.left, f"the node left behind: {self.node.left}"

    def cluster_overrides(self) -> dict[str, Any]:
        # One 2-core node: a head and one worker asking for one (advertised) GPU, a core each
        # (a Ray head starts five processes: less than a core makes its agents time out).
        return {
            **super().cluster_overrides(),
            "imagePullPolicy": "IfNotPresent",
            "head": {"cpu": "1", "memory": "3Gi"},
            "worker": {"replicas": 1, "gpus": 1, "cpu": "950m", "memory": "5Gi"},
        }

    def kuberay_log(self) -> str:
        return (self.dir / "logs" / "ray-operator.log").read_text(errors="replace")

    def operator_log(self) -> str:
        return self.cluster.kubectl(
            "logs", "-n", OPERATOR_NAMESPACE, f"deploy/{RELEASE}", "--tail=-1", check=False
        ).stdout

    def status_reporter(self, namespace: str, name: str) -> str:
        """Who wrote the EmbeddingJob's status other than the operator, by the apiserver's
        audit log (the job's progress and output reports)."""
        operator = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"
        users = set()
        for line in (self.dir / "logs" / "audit.log").read_text().splitlines():
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            if (ref.get("namespace"), ref.get("name"), ref.get("subresource")) == (
                namespace,
                name,
                "status",
            ) and entry.get("responseStatus", {}).get("code", 0) < 300:
                users.add(entry["user"]["username"])
        others = users - {operator}
        assert len(others) == 1, users
        return others.pop()

    def job_log(self, namespace: str, name: str) -> str:
        """The Ray job's driver log (worker output included), from its head's dashboard on
        the host network, with the token KubeRay keeps for its cluster."""
        rayjob = self.cluster.get("rayjob", name, namespace) or {}
        status = rayjob.get("status") or {}
        secrets = self.cluster.kubectl(
            "get", "secrets", "-n", namespace, "-l", f"ray.io/cluster={status['rayClusterName']}",
            "-o", "json",
        ).stdout  # fmt: skip
        (secret,) = json.loads(secrets)["items"]
        token = base64.b64decode(secret["data"]["auth_token"]).decode()
        url = f"http://{NODE_IP}:8265/api/jobs/{status['jobId']}/logs"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return str(json.loads(response.read())["logs"])
