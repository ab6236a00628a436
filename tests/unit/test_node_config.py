"""The real node's configuration (pure): what containerd, the kubelet and CoreDNS are told,
the pause image's OCI layout, and what is unmounted when the node goes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

from tests.support.host_endpoints import host_lines
from tests.support.node_config import (
    PAUSE_IMAGE,
    ContainerdPaths,
    KubeletPaths,
    KubeletPorts,
    cni_conflist,
    containerd_config,
    containerd_env,
    corefile,
    kubelet_config,
    service_ip,
)
from tests.support.node_host import mounts_below
from tests.support.oci import single_binary_layout

PATHS = ContainerdPaths(
    root=Path("/cache/containerd"),
    state=Path("/run/n/state"),
    socket=Path("/run/n/containerd.sock"),
    cni_conf_dir=Path("/run/n/cni"),
)


def test_containerd_runs_runc_with_cgroupfs_and_a_pinned_local_sandbox_image() -> None:
    config = tomllib.loads(containerd_config(PATHS))
    assert config["version"] == 3
    assert (config["root"], config["state"]) == ("/cache/containerd", "/run/n/state")
    assert config["grpc"]["address"] == "/run/n/containerd.sock"
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == PAUSE_IMAGE
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False}
    assert runtime["cni"]["conf_dir"] == "/run/n/cni"


def test_containerd_pulls_only_through_a_closed_loopback_proxy() -> None:
    env = containerd_env("/bin")
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == "http://127.0.0.1:1"
    assert env["NO_PROXY"] == ""


def test_the_only_cni_network_is_loopback() -> None:
    assert [p["type"] for p in cni_conflist()["plugins"]] == ["loopback"]


def test_kubelet_accepts_cgroup_v1_and_listens_on_loopback_only() -> None:
    paths = KubeletPaths(Path("/pki"), PATHS.socket, Path("/n/resolv.conf"), Path("/n/logs"), "e")
    config = kubelet_config(KubeletPorts(port=10250, healthz=10248), paths, "127.77.0.10")
    assert (config["cgroupRoot"], config["podLogsDir"]) == ("/e", "/n/logs")
    assert (config["failCgroupV1"], config["cgroupDriver"]) == (False, "cgroupfs")
    assert config["address"] == config["healthzBindAddress"] == "127.0.0.2"
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["clusterDNS"] == ["127.77.0.10"]
    assert config["containerRuntimeEndpoint"] == "unix:///run/n/containerd.sock"
    assert config["imageGCHighThresholdPercent"] == 100  # imported images are never collected


def test_cluster_dns_answers_cluster_names_and_never_forwards() -> None:
    text = corefile("127.77.0.10", Path("/k/kubeconfig"), Path("/n/hosts"), 9001, 9002)
    assert "forward" not in text
    assert "kubernetes cluster.local" in text and "kubeconfig /k/kubeconfig" in text
    assert text.count("bind 127.77.0.10") == 2
    assert "rcode REFUSED" in text
    assert "hosts /n/hosts cluster.local" in text and "fallthrough" in text


def test_service_addresses_come_from_the_service_range() -> None:
    assert service_ip("127.77.0.0/16", 1) == "127.77.0.1"
    assert service_ip("127.77.0.0/16", 10) == "127.77.0.10"


def test_the_pause_layout_is_a_valid_oci_image_of_one_binary() -> None:
    files = single_binary_layout(PAUSE_IMAGE, b"\x7fELF pause")
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == PAUSE_IMAGE

    def blob(digest: str) -> bytes:
        data = files[f"blobs/sha256/{digest.split(':', 1)[1]}"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/pause"]
    (layer,) = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]
    with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as tar:
        member = tar.getmember("pause")
        assert member.mode == 0o755
        assert tar.extractfile(member).read() == b"\x7fELF pause"  # type: ignore[union-attr]
    assert single_binary_layout(PAUSE_IMAGE, b"\x7fELF pause") == files  # reproducible


def test_what_is_unmounted_when_the_node_goes_deepest_first() -> None:
    mountinfo = "\n".join(
        [
            "22 1 0:21 / / rw - ext4 /dev/vda rw",
            "30 22 0:40 / /tmp/n/kubelet/pods/a/volumes/x rw - tmpfs tmpfs rw",
            "31 22 0:41 / /tmp/n/kubelet rw - tmpfs tmpfs rw",
            "32 22 0:42 / /tmp/n-other rw - tmpfs tmpfs rw",
            "33 22 0:43 / /tmp/n/with\\040space rw - tmpfs tmpfs rw",
        ]
    )
    assert mounts_below(mountinfo, Path("/tmp/n")) == [
        "/tmp/n/kubelet/pods/a/volumes/x",
        "/tmp/n/kubelet",
        "/tmp/n/with space",
    ]


def _pod(name: str, labels: dict[str, str], ready: bool, phase: str = "Running") -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "status": {
            "phase": phase,
            "podIP": "127.0.0.2",
            "conditions": [{"type": "Ready", "status": str(ready)}],
        },
    }


def test_headless_services_name_their_host_network_pods() -> None:
    head = {"ray.io/node-type": "head", "ray.io/cluster": "c"}
    services = [
        {
            "metadata": {"name": "c-head-svc", "namespace": "ns"},
            "spec": {"clusterIP": "None", "selector": head, "publishNotReadyAddresses": True},
        },
        {
            "metadata": {"name": "strict", "namespace": "ns"},
            "spec": {"clusterIP": "None", "selector": head},
        },
        {"metadata": {"name": "api", "namespace": "ns"}, "spec": {"clusterIP": "127.77.0.5"}},
        {"metadata": {"name": "other", "namespace": "ns"}, "spec": {"clusterIP": "None",
                                                                     "selector": {"x": "y"}}},
    ]  # fmt: skip
    starting = [_pod("c-head", head, ready=False)]
    assert host_lines(services, starting) == ["127.0.0.2 c-head-svc.ns.svc.cluster.local"]
    ready = [_pod("c-head", head, ready=True), _pod("gone", head, True, phase="Succeeded")]
    assert host_lines(services, ready) == [
        "127.0.0.2 c-head-svc.ns.svc.cluster.local",
        "127.0.0.2 strict.ns.svc.cluster.local",
    ]
