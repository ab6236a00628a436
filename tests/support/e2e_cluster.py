"""The local end-to-end cluster, from real parts, all on loopback: the control plane with
kube-controller-manager and kube-scheduler (control_plane.py), kwok managing fake nodes
(kwok-nodes.yaml: two advertise nvidia.com/gpu), KubeRay's ray-operator out of cluster, a real
Ray head (ray from this Python's environment) on 127.0.0.1:8265 standing in for every head
pod's dashboard, and headshim.py pointing KubeRay at it (head Service names -> 127.0.0.1 in a
hosts file that only KubeRay sees, through a private mount namespace; the head's auth token).

``<dir>`` also gets e2e.env (KUBECONFIG, RAY_ADDRESS, EMBOP_RAY_TOKEN_FILE, EMBOP_E2E_POD_CIDR,
EMBOP_E2E_LOGS) and logs/{kwok,ray,headshim,ray-operator}.log. Nothing dials outside loopback:
services get 127.77.0.0/16, pods 127.78.0.0/16, nodes 127.0.0.1; the Ray head (and every job
it runs) gets HTTP(S)_PROXY and HF_ENDPOINT on a closed loopback port, so a stray download
fails at once instead of leaving the machine; KubeRay and the Ray head resolve names with a
resolv.conf naming only 127.0.0.1.

Environment: EMBOP_PYTHON (default: this Python; needs ray[default] + kubernetes),
EMBOP_E2E_RAY_CPUS (default: the cores, at least 4, so that concurrent jobs never wait on each
other), EMBOP_RAY_DASHBOARD_PORT (default 8265, the port KubeRay puts on head Services), plus
everything control_plane.py and hack/tools.sh read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.support import tools
from tests.support.components import Components, bring_up
from tests.support.control_plane import ControlPlane, Settings, get, read_env

POD_CIDR = "127.78.0.0/16"
CLOSED = "http://127.0.0.1:1"  # tcpmux: nothing listens on port 1
NODES = Path(__file__).with_name("kwok-nodes.yaml")
HEADSHIM = Path(__file__).with_name("headshim.py")
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
# In a private mount namespace: bind-mount the files given first over /etc, then exec the rest.
PRIVATE_MOUNTS = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
E2E = ("kwok", "ray", "headshim", "ray-operator")
RAY_TEMP_PREFIX = "/tmp/embop-ray-"  # short: Ray's socket paths are length-limited


def log(line: str) -> None:
    print(f"[e2e] {line}", flush=True)


def offline_env(token: str, kubeconfig: Path, python: Path) -> dict[str, str]:
    """What the Ray head and every job it runs get: token auth, and proxies and a model hub
    on a closed loopback port, so that nothing they fetch can leave the machine."""
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    return {
        "KUBECONFIG": str(kubeconfig),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        **dict.fromkeys(proxies, CLOSED),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "HF_ENDPOINT": CLOSED,
        "RAY_USAGE_STATS_ENABLED": "0",
        "DO_NOT_TRACK": "1",
        "DAFT_ANALYTICS_ENABLED": "0",
        "PATH": f"{python.parent}:{os.environ.get('PATH', '')}",
    }


def ray_cpus(env: dict[str, str] | os._Environ[str]) -> int:
    return int(env.get("EMBOP_E2E_RAY_CPUS") or max(os.cpu_count() or 1, 4))


def private_mounts(binds: Mapping[str, Path]) -> list[str]:
    """argv prefix: run the rest in a private mount namespace where each file of the host
    (key) is replaced by another (value), e.g. /etc/resolv.conf."""
    script = " && ".join(f'mount --bind "${i}" {target}' for i, target in enumerate(binds, 1))
    shift = f"shift {len(binds)}"
    return [*PRIVATE_MOUNTS, f'{script} && {shift} && exec "$@"', "sh", *map(str, binds.values())]


def apply_crds(kubectl: str, kubeconfig: Path) -> None:
    """Ours and all of KubeRay's (its operator watches every kind it defines), established."""
    crds = ["-f", str(tools.ROOT / "crds"), "-f", str(tools.kuberay_crds())]
    base = [kubectl, f"--kubeconfig={kubeconfig}"]
    subprocess.run([*base, "apply", "--server-side", *crds], check=True, capture_output=True)
    subprocess.run(
        [*base, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        check=True,
        capture_output=True,
    )


def start_kuberay(
    components: Components,
    kuberay: str,
    kubeconfig: Path,
    binds: Mapping[str, Path],
    timeout: float,
) -> None:
    """KubeRay's ray-operator out of cluster, seeing the given files over the host's."""
    health = tools.free_port()
    components.start("ray-operator", [
        *private_mounts(binds),
        kuberay, f"--kubeconfig={kubeconfig}", "--enable-leader-election=false",
        "--metrics-addr=127.0.0.1:0", f"--health-probe-bind-address=127.0.0.1:{health}",
        "--log-stdout-encoder=console",
    ], os.environ)  # fmt: skip
    components.ready(
        "ray-operator",
        f"ray-operator /healthz on 127.0.0.1:{health}",
        lambda: get(f"http://127.0.0.1:{health}/healthz"),
        timeout,
    )


class E2ECluster:
    """The e2e cluster in one directory: up (idempotent), down, status."""

    def __init__(self, directory: Path):
        settings = Settings.from_env(os.environ, kcm="1", scheduler=True)
        self.plane = ControlPlane(directory, settings)
        self.dir = self.plane.dir
        self.components = self.plane.components
        self.kubeconfig = self.plane.kubeconfig
        self.python = Path(os.environ.get("EMBOP_PYTHON") or sys.executable)
        self.dashboard_port = int(os.environ.get("EMBOP_RAY_DASHBOARD_PORT", "8265"))
        #: more environment for the Ray head (and so every job it runs)
        self.extra_env: dict[str, str] = {}

    @property
    def env(self) -> dict[str, str]:
        return read_env(self.dir / "e2e.env")

    def running(self) -> bool:
        return bool(self.env) and self.plane.running() and self.components.running(*E2E)

    def down(self) -> None:
        """Stop everything (the Ray head with every process it started, drivers included:
        not `ray stop`, which stops every Ray on the machine) and delete the cluster's data."""
        if not self.dir.exists():
            return
        for name in reversed(E2E):
            self.components.stop(name)
        raytmp = self.dir / "ray-temp-dir"
        if raytmp.exists():
            path = raytmp.read_text().strip()
            if path.startswith(RAY_TEMP_PREFIX):  # only what up made, never anything else
                shutil.rmtree(path, ignore_errors=True)
            raytmp.unlink()
        (self.dir / "e2e.env").unlink(missing_ok=True)
        self.plane.down()

    def up(self) -> Path:
        """Start (or reuse) the e2e cluster; returns the kubeconfig path."""
        bring_up(self.dir, self.running, self.down, self._start, log)
        return self.kubeconfig

    def kubectl(self, kubectl: str, *args: str) -> str:
        cmd = [kubectl, f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def _start(self) -> None:
        if not (self.python.parent / "ray").exists():
            raise RuntimeError(f"no ray next to {self.python}: run make install or EMBOP_PYTHON")
        if tools.port_open(self.dashboard_port):
            raise RuntimeError(
                f"127.0.0.1:{self.dashboard_port} is taken: KubeRay sends every head's dashboard "
                "traffic there (set EMBOP_RAY_DASHBOARD_PORT only together with the head's)"
            )
        kubectl, kwok, kuberay = tools.ensure("kubectl", "kwok", "ray-operator")
        self.plane.up()
        timeout, d, components = self.plane.settings.timeout, self.dir, self.components

        apply_crds(kubectl, self.kubeconfig)
        log("CRDs established")

        # kwok: fake nodes, pod lifecycle, pod IPs from a loopback range
        self.kubectl(kubectl, "apply", "-f", str(NODES))
        stages = [arg for stage in tools.kwok_stages() for arg in ("-c", stage)]
        components.start("kwok", [
            kwok, f"--kubeconfig={self.kubeconfig}", "--manage-nodes-with-label-selector=type=kwok",
            f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{tools.free_port()}", *stages,
        ], os.environ)  # fmt: skip
        components.ready("kwok", "kwok nodes Ready", self._nodes_ready, timeout)

        # the real Ray head, seeing a resolv.conf naming only 127.0.0.1 (no DNS server there):
        # a name that is not in its hosts file fails on loopback, never reaching a real resolver
        token = os.urandom(32).hex()
        (d / "ray-token").write_text(token + "\n")
        (d / "ray-token").chmod(0o600)
        raytmp = tempfile.mkdtemp(prefix=Path(RAY_TEMP_PREFIX).name, dir="/tmp")
        (d / "ray-temp-dir").write_text(raytmp)
        (d / "resolv.conf").write_text(RESOLV_CONF)
        # Node IP 127.0.0.2: Ray replaces 127.0.0.1 with the machine's outward address.
        offline = offline_env(token, self.kubeconfig, self.python)
        ray_env = {**os.environ, **self.extra_env, **offline}
        components.start("ray", [
            *private_mounts({"/etc/resolv.conf": d / "resolv.conf"}),
            str(self.python.parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.2", f"--port={tools.free_port()}", f"--temp-dir={raytmp}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--num-cpus={ray_cpus(os.environ)}", "--num-gpus=0",
            f"--object-store-memory={1024**3}",
        ], ray_env)  # fmt: skip
        dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        components.ready(
            "ray",
            f"Ray dashboard on {dashboard}",
            lambda: get(f"{dashboard}/api/version", token=token),
            timeout,
        )

        # head shim: hosts file + auth token
        shutil.copyfile("/etc/hosts", d / "hosts")
        shim = [str(self.python), str(HEADSHIM), "--hosts", str(d / "hosts")]
        shim += ["--token-file", str(d / "ray-token")]
        components.start("headshim", shim, {**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        components.ready(
            "headshim",
            "head shim watching",
            lambda: "watching Ray head services" in components.tail("headshim"),
            timeout,
        )

        # KubeRay, seeing <dir>/hosts as /etc/hosts
        binds = {"/etc/hosts": d / "hosts", "/etc/resolv.conf": d / "resolv.conf"}
        start_kuberay(components, kuberay, self.kubeconfig, binds, timeout)

        env = {
            "KUBECONFIG": self.kubeconfig,
            "RAY_ADDRESS": dashboard,
            "EMBOP_RAY_TOKEN_FILE": d / "ray-token",
            "EMBOP_E2E_POD_CIDR": POD_CIDR,
            "EMBOP_E2E_LOGS": d / "logs",
        }
        (d / "e2e.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        (d / "e2e.env").chmod(0o600)
        log(f"up: KUBECONFIG={self.kubeconfig}")

    def _nodes_ready(self) -> bool:
        nodes = self.plane.api("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
        ready = [
            c.get("status") == "True"
            for n in nodes
            for c in n.get("status", {}).get("conditions", [])
            if c.get("type") == "Ready"
        ]
        return bool(nodes) and len(ready) == len(nodes) and all(ready)
