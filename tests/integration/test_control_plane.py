"""The local control plane itself (tests/support/control_plane.py): what every other test here
takes for granted — a real versioned apiserver, loopback service IPs, status subresources, an
idempotent up, a down that leaves nothing running — checked once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import tools
from tests.support.components import read_proc
from tests.support.control_plane import CORE, ControlPlane, Settings
from tests.support.kube import Cluster


def test_the_apiserver_reports_its_real_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"].startswith("v1.") and version["gitVersion"] != "v0.0.0"


def test_service_cluster_ips_are_in_loopback(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "create", "service", "clusterip", "smoke", "--tcp=80:8080")
    ip = cluster.kubectl("-n", namespace, "get", "svc", "smoke", "-o", "jsonpath={.spec.clusterIP}")
    assert ip.stdout.startswith("127.77."), ip.stdout


def test_status_is_written_only_through_the_status_subresource(
    cluster: Cluster, namespace: str
) -> None:
    job = {
        "apiVersion": "embedding.dev/v1alpha1",
        "kind": "EmbeddingJob",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"input": {"uri": "s3://b/in/"}, "output": {"uri": "s3://b/out/"}},
    }
    cluster.apply(job)
    patch = ["patch", "ej", "w1", "-n", namespace, "--type=merge", "-p"]
    cluster.kubectl(*patch, '{"status":{"phase":"Running"}}', "--subresource=status")
    cluster.kubectl(*patch, '{"status":{"phase":"Failed"},"spec":{"suspend":true}}')
    stored = cluster.get("ej", "w1", namespace)
    assert stored is not None
    assert (stored["status"]["phase"], stored["spec"]["suspend"]) == ("Running", True)


def test_up_is_idempotent_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "cp", Settings(kcm="0"))
    kubeconfig = plane.up()
    assert ControlPlane(plane.dir, Settings(kcm="0")).running()  # seen from another instance
    pids = {n: plane.components.process(n) for n in CORE}
    assert plane.up() == kubeconfig  # reused, not restarted
    assert {n: plane.components.process(n) for n in CORE} == pids
    kubectl = Cluster.at(plane.dir).kubectl("get", "ns", "default", "-o", "name")
    assert kubectl.stdout.strip() == "namespace/default"

    plane.down()
    plane.down()  # idempotent
    assert not plane.running()
    assert all(p is not None and read_proc(p.pid) is None for p in pids.values())
    left = {p.name for p in plane.dir.iterdir()}
    assert left <= {"pki", "logs", "flexvolume", "audit-policy.yaml"}, left  # no state, etcd data


def test_up_restarts_a_half_dead_control_plane(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "cp", Settings(kcm="0"))
    plane.up()
    try:
        plane.components.stop("kube-apiserver")  # as if it had crashed
        assert not plane.running()
        plane.up()
        assert plane.running()
        assert tools.port_open(int(plane.env["EMBOP_APISERVER_PORT"]))
    finally:
        plane.down()
