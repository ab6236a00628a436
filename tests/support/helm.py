"""Render the chart with the real helm binary (built from Go modules) into Python dicts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import ROOT, tool

CHART = ROOT / "charts" / "embedding-operator"
KUBE_VERSION = "1.36.5"


def helm(
    *args: str, check: bool = True, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env_args = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    result = subprocess.run(
        [tool("helm"), *args, *env_args], capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def install(release: str, namespace: str, kubeconfig: Path, *args: str) -> None:
    """`helm install` of the chart into namespace (created), not waiting for the Deployment:
    the control plane without a kubelet never runs its pod."""
    helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait=false",
        *args,
        kubeconfig=kubeconfig,
    )


def render(
    *values: Path, namespace: str = "embedding-system", extra: list[str] | None = None
) -> list[dict[str, Any]]:
    args = ["template", "eo", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["-f", str(path)]
    out = helm(*args, *(extra or [])).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]
