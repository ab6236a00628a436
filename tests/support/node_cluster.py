"""A real node for the ``node`` e2e provider: the control plane (control_plane.py, with
kube-controller-manager and kube-scheduler) plus, on this machine and on loopback only:

* containerd 2.x and its runc shim (built from Go modules), with Debian's runc and a
  loopback-only CNI network (node_config.py says why each setting is what it is);
* the kubelet (built from the same Kubernetes modules as the apiserver), registered as node
  ``embop-node`` at 127.0.0.2 with its own client certificate (Node authorizer,
  NodeRestriction), and advertising ``nvidia.com/gpu`` through a node status patch;
* CoreDNS (kubernetes plugin) on the ``kube-dns`` Service's ClusterIP, answering
  ``cluster.local`` only; pods on the host network use it (ClusterFirstWithHostNet);
* a forwarder from the ``kubernetes`` Service's ClusterIP:443 to the apiserver, so that
  in-cluster clients in pods (our operator, the job's status reports) reach it;
* KubeRay's ray-operator as a process that resolves names with the cluster's DNS.

Pods run on the host network: nothing here gives them any other address. containerd's root
(its images) is kept across runs in ``$EMBEDDING_OPERATOR_CACHE/node/containerd``; every
other byte lives in ``<dir>`` and goes with ``down``, which deletes every pod first so that
no container, mount or cgroup outlives the node.

Needs root, Debian's runc and containernetworking-plugins, and Go for the first build.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support import tools
from tests.support.components import Components, bring_up
from tests.support.control_plane import ControlPlane, Settings, get, issue_cert, read_env
from tests.support.e2e_cluster import apply_crds, start_kuberay
from tests.support.node_config import (
    CNI_BIN_DIR,
    K8S_NAMESPACE,
    NODE_IP,
    NODE_NAME,
    PAUSE_IMAGE,
    RUNC,
    ContainerdPaths,
    KubeletPaths,
    KubeletPorts,
    cni_conflist,
    containerd_config,
    containerd_env,
    corefile,
    dead_resolv_conf,
    dns_service,
    kubelet_config,
    node_addresses,
    node_kubeconfig,
    resolv_conf,
    service_ip,
)
from tests.support.node_host import (
    kill_shims,
    leftovers,
    make_cgroups,
    remove_cgroups,
    unmount_below,
)
from tests.support.oci import Containerd
from tests.support.waiting import wait_for

CACHE = Path(
    os.environ.get("EMBEDDING_OPERATOR_CACHE", Path.home() / ".cache" / "embedding-operator")
)
CONTAINERD_ROOT = CACHE / "node" / "containerd"
#: Which node directory uses containerd's root now (one containerd per root).
OWNER_FILE = CACHE / "node" / "owner"
NODE = ("service-proxy", "host-endpoints", "coredns", "containerd", "kubelet", "ray-operator")
GPUS = int(os.environ.get("EMBOP_NODE_GPUS", "2"))
GPU_RESOURCE = "nvidia.com/gpu"
# What NVIDIA's GPU operator labels a GPU node with (the examples select on them).
GPU_LABELS = {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
POD_DELETE_TIMEOUT = 120.0
#: The kubelet's cgroup root in every cgroup v1 hierarchy: its pods live below it, and down
#: removes it.
CGROUP_ROOT = "embop"


def log(line: str) -> None:
    print(f"[node] {line}", flush=True)


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node, as instructions (empty when nothing)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (the kubelet and containerd manage mounts and cgroups)")
    if not RUNC.exists():
        problems.append(f"{RUNC} missing: apt-get install runc")
    if not (CNI_BIN_DIR / "loopback").exists():
        plugins = "containernetworking-plugins"
        problems.append(f"{CNI_BIN_DIR}/loopback missing: apt-get install {plugins}")
    if shutil.which("skopeo") is None:
        problems.append("skopeo missing (it copies images into containerd): apt-get install skopeo")
    return problems


class NodeCluster:
    """The control plane and one real node in one directory: up (idempotent), down."""

    def __init__(self, directory: Path):
        settings = Settings.from_env(os.environ, kcm="1", scheduler=True)
        self.plane = ControlPlane(directory, settings)
        self.dir = self.plane.dir
        self.node = self.dir / "node"
        self.components = self.plane.components
        self.kubeconfig = self.plane.kubeconfig
        self.python = Path(os.environ.get("EMBOP_PYTHON") or sys.executable)
        self.paths = ContainerdPaths(
            root=CONTAINERD_ROOT,
            state=self.node / "containerd-state",
            socket=self.node / "containerd.sock",
            cni_conf_dir=self.node / "cni",
        )
        self.dns_ip = service_ip(settings.service_cidr, 10)
        #: what the last down could not remove (see node_host.leftovers)
        self.left: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        return read_env(self.dir / "node.env")

    def containerd(self) -> Containerd:
        ctr = str(Path(tools.tool("containerd")).with_name("ctr"))
        return Containerd(ctr, self.paths.socket, K8S_NAMESPACE)

    def running(self) -> bool:
        return bool(self.env) and self.plane.running() and self.components.running(*NODE)

    def up(self) -> Path:
        """Start (or reuse) the node cluster; returns the kubeconfig path."""
        problems = missing_prerequisites()
        if problems:
            raise RuntimeError("a real node cannot run here: " + "; ".join(problems))
        other = self._other_owner()
        if other is not None:
            raise RuntimeError(
                f"another node runs from {other} (one containerd per image store): stop it "
                f"with python -m tests.support.cluster down {other} --node"
            )
        bring_up(self.dir, self.running, self.down, self._start, log)
        return self.kubeconfig

    def _other_owner(self) -> Path | None:
        """The directory of another node whose containerd still runs on our image store."""
        try:
            owner = Path(OWNER_FILE.read_text().strip())
        except OSError:
            return None
        if owner == self.dir or not Components(owner, log).running("containerd"):
            return None
        return owner

    def load_image(self, ref: str) -> None:
        """Make an image built by make images (containers-storage) present on the node."""
        if self.containerd().ensure_from_storage(ref, CACHE / "node" / "scratch"):
            log(f"imported {ref} into containerd")
        else:
            log(f"{ref}: already in containerd")

    # ---- down -----------------------------------------------------------------------------
    def down(self) -> None:
        """Delete every pod (the kubelet stops their containers), stop every component, then
        remove what containers, mounts and cgroups might be left, and the directory's data."""
        if not self.dir.exists():
            return
        if self.plane.running() and self.components.running("kubelet"):
            self._delete_pods()
        for name in ("ray-operator", "kubelet"):
            self.components.stop(name)
        if self.components.running("containerd"):
            self._remove_containers()
        for name in ("containerd", "coredns", "host-endpoints", "service-proxy"):
            self.components.stop(name)
        kill_shims(self.paths.socket)
        unmount_below(self.node)
        remove_cgroups(CGROUP_ROOT)
        self.left = leftovers(self.paths.socket, self.node, CGROUP_ROOT)
        if self.left:
            log(f"left behind: {', '.join(self.left)}")
        shutil.rmtree(self.node, ignore_errors=True)
        (self.dir / "node.env").unlink(missing_ok=True)
        if self._other_owner() is None:
            OWNER_FILE.unlink(missing_ok=True)
        self.plane.down()

    def _delete_pods(self) -> None:
        kubectl = [tools.tool("kubectl"), f"--kubeconfig={self.kubeconfig}"]
        # Owners first, so that nothing re-creates the pods being deleted.
        for kinds in ("embeddingjobs,rayjobs,rayclusters,deployments,replicasets", "pods"):
            subprocess.run(
                [*kubectl, "delete", kinds, "--all", "-A", "--wait=false", "--grace-period=5"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        try:
            wait_for(
                lambda: not self.plane.api("/api/v1/pods")["items"],
                timeout=POD_DELETE_TIMEOUT,
                interval=1.0,
                message="every pod to be deleted",
            )
        except (TimeoutError, OSError) as e:
            log(f"pods not all deleted ({e}); removing their containers directly")

    def _remove_containers(self) -> None:
        ctr = self.containerd()
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            for task in ctr.run("tasks", "list", "--quiet").split():
                with contextlib.suppress(RuntimeError):
                    ctr.run("tasks", "kill", "--signal", "SIGKILL", task)
                with contextlib.suppress(RuntimeError):
                    ctr.run("tasks", "delete", "--force", task)
            containers = ctr.run("containers", "list", "--quiet").split()
            if containers:
                ctr.run("containers", "delete", *containers)

    # ---- up -------------------------------------------------------------------------------
    def _start(self) -> None:
        kubectl, kubelet, containerd, coredns, pause, kuberay = tools.ensure(
            "kubectl", "kubelet", "containerd", "coredns", "pause", "ray-operator"
        )
        self.plane.up()
        timeout, components, env = self.plane.settings.timeout, self.components, self.plane.env
        self.node.mkdir(parents=True, exist_ok=True)
        api_port = int(env["EMBOP_APISERVER_PORT"])
        apply_crds(kubectl, self.kubeconfig)
        log("CRDs established")

        # the kubernetes Service for pods: ClusterIP:443 -> the apiserver
        kubernetes_ip = service_ip(self.plane.settings.service_cidr, 1)
        components.start("service-proxy", [
            str(self.python), "-m", "tests.support.service_proxy",
            f"{kubernetes_ip}:443", f"127.0.0.1:{api_port}",
        ], {**os.environ, "PYTHONPATH": str(tools.ROOT)})  # fmt: skip
        readyz = f"https://{kubernetes_ip}/readyz"
        ca, token = self.plane.pki / "ca.crt", env["EMBOP_ADMIN_TOKEN"]
        components.ready(
            "service-proxy",
            f"the kubernetes Service on {kubernetes_ip}:443",
            lambda: get(readyz, ca, token) == b"ok",
            timeout,
        )

        # cluster DNS on the kube-dns Service's ClusterIP (the Service holds the address), with
        # headless Services' host-network pods from host-endpoints
        self._apply(kubectl, dns_service(self.dns_ip))
        hosts = self.node / "service-hosts"
        endpoints_env = {
            **os.environ,
            "PYTHONPATH": str(tools.ROOT),
            "KUBECONFIG": str(self.kubeconfig),
        }
        components.start("host-endpoints", [
            str(self.python), "-m", "tests.support.host_endpoints", "--hosts", str(hosts),
        ], endpoints_env)  # fmt: skip
        components.ready("host-endpoints", f"{hosts} written", hosts.exists, timeout)
        health, ready = tools.free_port(), tools.free_port()
        coredns_config = corefile(self.dns_ip, self.kubeconfig, hosts, health, ready)
        (self.node / "Corefile").write_text(coredns_config)
        components.start("coredns", [coredns, "-conf", str(self.node / "Corefile")], os.environ)
        components.ready(
            "coredns",
            f"CoreDNS on {self.dns_ip}:53",
            lambda: get(f"http://{NODE_IP}:{ready}/ready") == b"OK",
            timeout,
        )

        # containerd
        for path in (self.paths.root, self.paths.state, self.paths.cni_conf_dir):
            path.mkdir(parents=True, exist_ok=True)
        OWNER_FILE.write_text(f"{self.dir}\n")
        (self.paths.cni_conf_dir / "10-loopback.conflist").write_text(json.dumps(cni_conflist()))
        (self.node / "containerd.toml").write_text(containerd_config(self.paths))
        bin_dir = str(Path(containerd).parent)
        path = f"{bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        components.start(
            "containerd",
            [containerd, "--config", str(self.node / "containerd.toml")],
            {**os.environ, **containerd_env(path)},
        )
        ctr = self.containerd()
        components.ready(
            "containerd", f"containerd on {self.paths.socket}", self._containerd_up, timeout
        )
        ctr.ensure_pause(PAUSE_IMAGE, Path(pause))

        # the kubelet, as node embop-node with its own certificate
        pki = self.plane.pki
        make_node_pki(pki)
        ports = KubeletPorts(port=tools.free_port(), healthz=tools.free_port())
        (self.node / "resolv.conf").write_text(dead_resolv_conf())
        kubelet_paths = KubeletPaths(
            pki, self.paths.socket, self.node / "resolv.conf", self.node / "pod-logs", CGROUP_ROOT
        )
        config = kubelet_config(ports, kubelet_paths, self.dns_ip)
        make_cgroups(CGROUP_ROOT)
        (self.node / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (self.node / "kubelet.kubeconfig").write_text(
            yaml.safe_dump(node_kubeconfig(env["EMBOP_APISERVER_URL"], pki), sort_keys=False)
        )
        components.start("kubelet", [
            kubelet, f"--config={self.node / 'kubelet.yaml'}",
            f"--kubeconfig={self.node / 'kubelet.kubeconfig'}",
            f"--root-dir={self.node / 'kubelet'}", f"--cert-dir={self.node / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
            f"--volume-plugin-dir={self.node / 'volume-plugins'}",
        ], os.environ)  # fmt: skip
        components.ready("kubelet", f"node {NODE_NAME} registered", self._node_exists, timeout)
        self._patch_status(kubectl, {"addresses": node_addresses()})
        components.ready("kubelet", f"node {NODE_NAME} Ready", self._node_ready, timeout)
        self._advertise_gpus(kubectl)

        # KubeRay, resolving the head Services' names with the cluster's DNS
        (self.node / "kuberay-resolv.conf").write_text(resolv_conf(self.dns_ip))
        binds = {"/etc/resolv.conf": self.node / "kuberay-resolv.conf"}
        start_kuberay(components, kuberay, self.kubeconfig, binds, timeout)

        node_env = {
            "KUBECONFIG": self.kubeconfig,
            "EMBOP_NODE_NAME": NODE_NAME,
            "EMBOP_NODE_DNS": self.dns_ip,
            "EMBOP_E2E_LOGS": self.dir / "logs",
        }
        (self.dir / "node.env").write_text("".join(f"{k}={v}\n" for k, v in node_env.items()))
        log(f"up: KUBECONFIG={self.kubeconfig}")

    def _apply(self, kubectl: str, manifest: Mapping[str, Any]) -> None:
        subprocess.run(
            [kubectl, f"--kubeconfig={self.kubeconfig}", "apply", "-f", "-"],
            input=json.dumps(manifest),
            text=True,
            capture_output=True,
            check=True,
            timeout=60,
        )

    def _containerd_up(self) -> bool:
        try:
            self.containerd().run("version", timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def _node_exists(self) -> bool:
        try:
            return bool(self.plane.api(f"/api/v1/nodes/{NODE_NAME}"))
        except OSError:
            return False

    def _patch_status(self, kubectl: str, status: Mapping[str, Any]) -> None:
        subprocess.run(
            [kubectl, f"--kubeconfig={self.kubeconfig}", "patch", "node", NODE_NAME,
             "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def _node_ready(self) -> bool:
        try:
            node = self.plane.api(f"/api/v1/nodes/{NODE_NAME}")
        except OSError:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _advertise_gpus(self, kubectl: str) -> None:
        """Extended resources a device plugin would report, patched into the node's status
        (the kubelet keeps them), and the labels NVIDIA's GPU operator would set."""
        base = [kubectl, f"--kubeconfig={self.kubeconfig}"]
        self._patch_status(kubectl, {"capacity": {GPU_RESOURCE: str(GPUS)}})
        labels = [f"{k}={v}" for k, v in GPU_LABELS.items()]
        subprocess.run(
            [*base, "label", "node", NODE_NAME, "--overwrite", *labels],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        def allocatable() -> bool:
            node = self.plane.api(f"/api/v1/nodes/{NODE_NAME}")
            return node["status"].get("allocatable", {}).get(GPU_RESOURCE) == str(GPUS)

        message = f"{GPUS} {GPU_RESOURCE} allocatable"
        wait_for(allocatable, timeout=60, interval=0.5, message=message)
        log(f"node {NODE_NAME} advertises {GPUS} {GPU_RESOURCE}")


def make_node_pki(pki: Path) -> None:
    """The kubelet's client certificate (system:node:<name> in system:nodes, what the Node
    authorizer knows) and its serving certificate for the node address, from the cluster's CA."""
    if not (pki / "kubelet-client.crt").exists():
        issue_cert(pki, "kubelet-client", "ca", f"system:node:{NODE_NAME}",
                   "extendedKeyUsage=clientAuth\n", org="system:nodes")  # fmt: skip
    if not (pki / "kubelet.crt").exists():
        names = f"subjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\n"
        issue_cert(pki, "kubelet", "ca", NODE_NAME, "extendedKeyUsage=serverAuth\n" + names)
