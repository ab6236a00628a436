"""A running cluster as the tests see it (kubectl bound to its kubeconfig), the control plane
started for a test session, and the operator run as a real `kopf run` process against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support import tools
from tests.support.control_plane import ControlPlane
from tests.support.waiting import wait_for

KUBERAY_CRDS = ("ray.io_rayjobs.yaml", "ray.io_rayclusters.yaml")
LOG_TAIL = 6000


@dataclass
class Cluster:
    """A running cluster and a kubectl bound to it."""

    workdir: Path
    kubeconfig: Path
    kubectl_path: str
    #: logs a failing test prints after the cluster's objects (title -> reader)
    logs: dict[str, Callable[[], str]] = field(default_factory=dict)

    @classmethod
    def at(cls, workdir: Path) -> Cluster:
        """The cluster whose kubeconfig is in workdir (control_plane.py's layout)."""
        return cls(workdir, workdir / "kubeconfig", tools.tool("kubectl"))

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

    def apply(self, *manifests: dict[str, Any] | str, namespace: str | None = None) -> None:
        """kubectl apply manifests (dicts or YAML text), into namespace if given."""
        text = "\n---\n".join(m if isinstance(m, str) else yaml.safe_dump(m) for m in manifests)
        scope = ["-n", namespace] if namespace else []
        self.kubectl("apply", *scope, "-f", "-", stdin=text)

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

    def drive(self, namespace: str, rayjob: str, status: dict[str, Any]) -> None:
        """Play KubeRay: write a RayJob's status subresource."""
        patch = json.dumps({"status": status})
        self.kubectl(
            "patch", "rayjob", rayjob, "-n", namespace, "--subresource=status", "--type", "merge",
            "-p", patch,
        )  # fmt: skip

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
        """Everything a failing test needs to see: the objects, then the logs' tails."""
        out = self.kubectl("get", "all,ej,rayjob,events", "-A", "-o", "wide", check=False).stdout
        for title, read in self.logs.items():
            out += f"\n---- {title} ----\n{read()[-LOG_TAIL:]}"
        return out


def install_crds(cluster: Cluster) -> None:
    """Ours and KubeRay's RayJob and RayCluster CRDs, established."""
    crds = tools.kuberay_crds()
    for path in (
        tools.ROOT / "crds" / "embeddingjobs.embedding.dev.yaml",
        *(crds / n for n in KUBERAY_CRDS),
    ):
        # The RayJob CRD is too large for client-side apply's annotation: apply server-side.
        cluster.kubectl("apply", "--server-side", "-f", str(path))
    for name in ("embeddingjobs.embedding.dev", "rayjobs.ray.io", "rayclusters.ray.io"):
        wait_for(lambda n=name: established(cluster, n), message=f"CRD {name} Established")


def established(cluster: Cluster, crd: str) -> bool:
    """Whether a CRD is served (`kubectl wait` fails on one that has no status yet)."""
    conditions = ((cluster.get("crd", crd, "default") or {}).get("status") or {}).get("conditions")
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions or [])


def start_cluster(workdir: Path) -> Cluster:
    """Start (or reuse) the control plane in workdir, with our and KubeRay's CRDs."""
    ControlPlane(workdir).up()
    cluster = Cluster.at(workdir)
    install_crds(cluster)
    return cluster


def stop_cluster(workdir: Path) -> None:
    ControlPlane(workdir).down()


class Operator:
    """`kopf run -m embedding_operator.main` as a separate process, restartable."""

    def __init__(
        self,
        cluster: Cluster,
        log: Path,
        job_image: str = "example.invalid/embedding-job:test",
        kubeconfig: Path | None = None,
        command: list[str] | None = None,
        verbose: bool = True,
    ):
        """``verbose``: kopf's DEBUG log (every API call), for a failing test's diagnosis; the
        chart's default (``logLevel: info``) runs without it."""
        self.cluster, self.log = cluster, log
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
            "EMBEDDING_OPERATOR_JOB_IMAGE": job_image,
            # Reconcile running jobs every 2 s (30 s by default), so tests see repairs soon.
            "EMBEDDING_OPERATOR_RESYNC_SECONDS": "2",
        }
        self.metrics_port = tools.free_port()
        self.env["EMBEDDING_OPERATOR_METRICS_PORT"] = str(self.metrics_port)
        # The venv's kopf by default; the image's as a container (tests/images) otherwise.
        self.command = command or [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "-m",
            "embedding_operator.main",
            "--standalone",
            "--all-namespaces",
            *(["--verbose"] if verbose else []),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command,
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

    @property
    def metrics_url(self) -> str:
        """Its Prometheus endpoint (the chart's metrics.port)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"
