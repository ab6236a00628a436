"""A real control plane (etcd + kube-apiserver + kube-controller-manager from hack/) for tests,
and the operator run as a real `kopf run` process against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack"
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


def tool(name: str) -> str:
    """Path of a cached tool, building it on first use (hack/tools.sh)."""
    out = subprocess.run(
        [str(HACK / "tools.sh"), "ensure", name], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Cluster:
    """A running control plane and a kubectl bound to it."""

    workdir: Path
    kubeconfig: Path
    kubectl_path: str
    env: dict[str, str] = field(default_factory=dict)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def items(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", kind, "-n", namespace, "-o", "json")
        return json.loads(out.stdout)["items"]  # type: ignore[no-any-return]

    def kubeconfig_for(self, account: str, namespace: str, path: Path) -> Path:
        """A kubeconfig authenticating as a ServiceAccount (a TokenRequest token)."""
        token = self.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": account, "user": {"token": token.strip()}}]
        for context in config["contexts"]:
            context["context"]["user"] = account
        path.write_text(yaml.safe_dump(config))
        return path

    def dump(self) -> str:
        """Everything a failing test needs to see."""
        return self.kubectl("get", "all,ej,rayjob,events", "-A", "-o", "wide", check=False).stdout


def start_cluster(workdir: Path) -> Cluster:
    """Start (or reuse) the control plane in workdir and install our and KubeRay's CRDs."""
    for name in TOOLS:
        tool(name)
    subprocess.run(
        [str(HACK / "cluster.sh"), "up", str(workdir)], check=True, capture_output=True, text=True
    )
    cluster = Cluster(workdir, workdir / "kubeconfig", tool("kubectl"))
    crds = (
        subprocess.run(
            [str(HACK / "tools.sh"), "kuberay-crds"], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    for path in (
        ROOT / "crds" / "embeddingjobs.embedding.dev.yaml",
        Path(crds) / "ray.io_rayjobs.yaml",
        Path(crds) / "ray.io_rayclusters.yaml",
    ):
        # The RayJob CRD is too large for client-side apply's annotation: apply server-side.
        cluster.kubectl("apply", "--server-side", "-f", str(path))
    for name in ("embeddingjobs.embedding.dev", "rayjobs.ray.io", "rayclusters.ray.io"):
        cluster.kubectl("wait", "--for", "condition=established", f"crd/{name}", "--timeout=60s")
    return cluster


def stop_cluster(workdir: Path) -> None:
    subprocess.run(
        [str(HACK / "cluster.sh"), "down", str(workdir)], check=False, capture_output=True
    )


class Operator:
    """`kopf run -m embedding_operator.main` as a separate process, restartable."""

    def __init__(
        self,
        cluster: Cluster,
        log: Path,
        job_image: str = "example.invalid/embedding-job:test",
        kubeconfig: Path | None = None,
    ):
        self.cluster, self.log = cluster, log
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
            "EMBEDDING_OPERATOR_JOB_IMAGE": job_image,
            # Reconcile running jobs every 2 s (30 s by default), so tests see repairs soon.
            "EMBEDDING_OPERATOR_RESYNC_SECONDS": "2",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "-m",
                "embedding_operator.main",
                "--standalone",
                "--all-namespaces",
                "--verbose",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-20000:]
