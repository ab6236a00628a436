"""What the real node's components are told (pure: paths and ports in, file contents out).

The node is one kubelet with containerd and runc on this machine, for the ``node`` e2e
provider (node_cluster.py starts it). Its rules, each for a reason:

* cgroup v1 (this machine is hybrid): kubelet 1.36 refuses v1 unless ``failCgroupV1: false``,
  and the cgroup driver is cgroupfs (no systemd here).
* Nothing leaves loopback. Pods run on the host network at 127.0.0.2 (the node IP), so the
  only CNI network is ``loopback``: containerd needs a network config to report
  NetworkReady, and a pod that is not on the host network gets no route anywhere. containerd
  pulls through a proxy on a closed loopback port, so a stray image reference fails at once.
  Cluster DNS (CoreDNS, kubernetes plugin) answers for ``cluster.local`` and refuses every
  other name: it never forwards. The apiserver refuses loopback addresses in Endpoints and
  EndpointSlices, so headless Services' names come from a hosts file (host_endpoints.py).
* The sandbox (pause) image is built here and pinned, so containerd never tries to pull it.
* Not even root may lower a process's oom_score_adj here: containerd keeps containers' at or
  above its own (``restrict_oom_score_adj``).
* Images are never garbage-collected by the kubelet: they are imported once per content key
  and kept across runs (containerd's root is outside the run's directory).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "embop-node"
#: Loopback, but not 127.0.0.1: Ray replaces a node IP of 127.0.0.1 or localhost with the
#: machine's outward address, which nothing here may use.
NODE_IP = "127.0.0.2"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "localhost/embop-pause:3.10"
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for the CRI's images and containers
CLOSED_PROXY = "http://127.0.0.1:1"  # tcpmux: nothing listens on port 1
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
RUNC = Path("/usr/sbin/runc")  # Debian's runc


@dataclass(frozen=True)
class ContainerdPaths:
    """Where one containerd keeps its data, its state and its socket."""

    root: Path  # images and snapshots: kept across runs
    state: Path  # per run (shim sockets, task state)
    socket: Path
    cni_conf_dir: Path


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML accepts)."""
    return json.dumps(value)


def containerd_config(paths: ContainerdPaths, runc: Path = RUNC) -> str:
    """containerd 2.x's config (version 3) for the kubelet's CRI, cgroupfs and runc."""
    q = toml_string
    cri_images = "plugins.'io.containerd.cri.v1.images'"
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    runc_table = f"{cri_runtime}.containerd.runtimes.runc"
    return "\n".join(
        [
            "version = 3",
            f"root = {q(str(paths.root))}",
            f"state = {q(str(paths.state))}",
            # Nothing here needs them, and they would write outside root/state.
            'disabled_plugins = ["io.containerd.tracing.processor.v1.otlp",'
            ' "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
            "",
            "[grpc]",
            f"  address = {q(str(paths.socket))}",
            "",
            "[ttrpc]",
            f"  address = {q(str(paths.socket) + '.ttrpc')}",
            "",
            f"[{cri_images}]",
            '  snapshotter = "overlayfs"',
            "",
            f"[{cri_images}.pinned_images]",
            f"  sandbox = {q(PAUSE_IMAGE)}",
            "",
            f"[{cri_runtime}]",
            "  enable_selinux = false",
            # This machine does not let even root lower a process's oom_score_adj (the kubelet
            # asks -998 for sandboxes): keep every container's at or above containerd's own.
            "  restrict_oom_score_adj = true",
            "",
            f"[{cri_runtime}.cni]",
            f"  bin_dirs = [{q(str(CNI_BIN_DIR))}]",
            f"  conf_dir = {q(str(paths.cni_conf_dir))}",
            "  max_conf_num = 1",
            "",
            f"[{runc_table}]",
            '  runtime_type = "io.containerd.runc.v2"',
            "",
            f"[{runc_table}.options]",
            f"  BinaryName = {q(str(runc))}",
            "  SystemdCgroup = false",
            "",
        ]
    )


def containerd_env(path: str) -> dict[str, str]:
    """containerd's environment: its shim on PATH, every pull through a closed proxy."""
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    return {"PATH": path, **dict.fromkeys(proxies, CLOSED_PROXY), "NO_PROXY": "", "no_proxy": ""}


def cni_conflist() -> dict[str, Any]:
    """The one network: loopback only (pods that matter run on the host network)."""
    return {
        "cniVersion": "1.0.0",
        "name": "embop-loopback",
        "plugins": [{"type": "loopback"}],
    }


@dataclass(frozen=True)
class KubeletPorts:
    port: int  # the kubelet API (logs, exec), on the node address only
    healthz: int


@dataclass(frozen=True)
class KubeletPaths:
    pki: Path  # the cluster's CA and the kubelet's serving certificate
    socket: Path  # containerd's
    resolv_conf: Path  # for pods with dnsPolicy Default
    pod_logs: Path
    cgroup_root: str  # below which every pod's cgroup is, in every hierarchy


def kubelet_config(ports: KubeletPorts, paths: KubeletPaths, cluster_dns: str) -> dict[str, Any]:
    """KubeletConfiguration for one node on loopback, cgroup v1, cgroupfs."""
    pki, socket, resolv_conf = paths.pki, paths.socket, paths.resolv_conf
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{paths.cgroup_root}",
        "podLogsDir": str(paths.pod_logs),
        "containerRuntimeEndpoint": f"unix://{socket}",
        "address": NODE_IP,
        "port": ports.port,
        "readOnlyPort": 0,
        "healthzBindAddress": NODE_IP,
        "healthzPort": ports.healthz,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        # Only holders of a certificate from the cluster's CA reach it (the apiserver).
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [cluster_dns],
        # Pods with dnsPolicy Default get this: a resolver on a closed loopback port.
        "resolvConf": str(resolv_conf),
        "failSwapOn": False,
        "serializeImagePulls": False,
        # The imported images are the only copies: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
        "fileCheckFrequency": "20s",
        "shutdownGracePeriod": "0s",
        "enableDebuggingHandlers": True,
        "logging": {"format": "text", "verbosity": 2},
    }


def dead_resolv_conf() -> str:
    """For pods that do not use cluster DNS: a resolver where nothing answers."""
    return "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def resolv_conf(nameserver: str) -> str:
    """For host processes that must resolve cluster names (KubeRay): cluster DNS only."""
    return f"nameserver {nameserver}\noptions timeout:1 attempts:2\n"


def corefile(bind: str, kubeconfig: Path, hosts: Path, health_port: int, ready_port: int) -> str:
    """CoreDNS: cluster.local from the apiserver, headless Services from the hosts file that
    host_endpoints.py writes (the apiserver refuses loopback endpoints), every other name
    refused. Never forwards."""
    return "\n".join(
        [
            f"{CLUSTER_DOMAIN}:53 {{",
            f"  bind {bind}",
            "  errors",
            f"  health {NODE_IP}:{health_port}",
            f"  ready {NODE_IP}:{ready_port}",
            f"  hosts {hosts} {CLUSTER_DOMAIN} {{",
            "    reload 1s",
            "    fallthrough",
            "  }",
            f"  kubernetes {CLUSTER_DOMAIN} {{",
            f"    kubeconfig {kubeconfig}",
            "    pods insecure",
            "    ttl 5",
            "  }",
            "}",
            ".:53 {",
            f"  bind {bind}",
            "  errors",
            "  template ANY ANY {",
            "    rcode REFUSED",
            "  }",
            "}",
            "",
        ]
    )


def service_ip(cidr: str, index: int) -> str:
    """The index-th address of the Service CIDR (1: the kubernetes Service, 10: kube-dns)."""
    return str(ipaddress.ip_network(cidr, strict=False)[index])


def node_addresses() -> list[dict[str, str]]:
    """The node's addresses, which the kubelet will not set itself: it refuses a loopback node
    IP ("nodeIP can't be loopback address") and then leaves the addresses alone, so the node
    keeps these. Pods on the host network take the InternalIP as their pod IP."""
    return [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}]


def dns_service(ip: str) -> dict[str, Any]:
    """The kube-dns Service: it reserves the address CoreDNS listens on (no selector: CoreDNS
    runs on the host, not as a pod)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {
            "clusterIP": ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
    }


def node_kubeconfig(server: str, pki: Path) -> dict[str, Any]:
    cluster = {"server": server, "certificate-authority": str(pki / "ca.crt")}
    user = {
        "client-certificate": str(pki / "kubelet-client.crt"),
        "client-key": str(pki / "kubelet-client.key"),
    }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "embop", "cluster": cluster}],
        "users": [{"name": NODE_NAME, "user": user}],
        "contexts": [{"name": "embop", "context": {"cluster": "embop", "user": NODE_NAME}}],
        "current-context": "embop",
    }
