"""A real, local Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-
manager, + kube-scheduler), all on 127.0.0.1, built from Go modules by hack/tools.sh. No Docker,
no kubelet, no network.

``<dir>`` gets: kubeconfig (admin, group system:masters), cluster.env (ports, token, URL;
``source``-able), pki/, components.json, logs/*.log, etcd-data/. Environment (all optional):
EMBOP_ETCD_PORT, EMBOP_ETCD_PEER_PORT, EMBOP_APISERVER_PORT, EMBOP_KCM_PORT,
EMBOP_SCHEDULER_PORT (default: free ports); EMBOP_SERVICE_CIDR (default 127.77.0.0/16, in
loopback); EMBOP_CLUSTER_KCM 1 (default: build if needed and start kube-controller-manager),
auto (only if built) or 0; EMBOP_CLUSTER_SCHEDULER 1 or 0 (default); EMBOP_CLUSTER_TIMEOUT
(seconds each component gets to be ready, default 180).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import tools
from tests.support.components import Components, bring_up

CORE = ("etcd", "kube-apiserver")
KCM, SCHEDULER = "kube-controller-manager", "kube-scheduler"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def log(line: str) -> None:
    print(f"[cluster] {line}", flush=True)


@dataclass(frozen=True)
class Settings:
    """How to start the control plane (see the module docstring for the variables)."""

    kcm: str = "1"
    scheduler: bool = False
    service_cidr: str = "127.77.0.0/16"
    timeout: float = 180.0
    ports: Mapping[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **override: Any) -> Settings:
        kcm = env.get("EMBOP_CLUSTER_KCM", "1").lower()
        kcm = {"true": "1", "yes": "1", "false": "0", "no": "0"}.get(kcm, kcm)
        if kcm not in ("1", "auto", "0"):
            raise ValueError("EMBOP_CLUSTER_KCM must be 1, auto or 0")
        scheduler = env.get("EMBOP_CLUSTER_SCHEDULER", "0").lower()
        if scheduler not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError("EMBOP_CLUSTER_SCHEDULER must be 1 or 0")
        names = ("ETCD", "ETCD_PEER", "APISERVER", "KCM", "SCHEDULER")
        ports = {n: int(env[f"EMBOP_{n}_PORT"]) for n in names if f"EMBOP_{n}_PORT" in env}
        values: dict[str, Any] = {
            "kcm": kcm,
            "scheduler": scheduler in ("1", "true", "yes"),
            "service_cidr": env.get("EMBOP_SERVICE_CIDR", cls.service_cidr),
            "timeout": float(env.get("EMBOP_CLUSTER_TIMEOUT", cls.timeout)),
            "ports": ports,
        }
        return cls(**{**values, **override})


def first_service_ip(cidr: str) -> str:
    """127.77.0.0/16 -> 127.77.0.1: the `kubernetes` Service's ClusterIP."""
    return str(next(ipaddress.ip_network(cidr, strict=False).hosts()))


# ---- PKI (openssl) -------------------------------------------------------------------------
CA_EXT = ["-addext", "basicConstraints=critical,CA:TRUE"]
CA_EXT += ["-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"]
LEAF_EXT = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
API_NAMES = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
API_NAMES += ["kubernetes.default.svc.cluster.local"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(pki: Path, name: str, cn: str) -> None:
    key, crt = str(pki / f"{name}.key"), str(pki / f"{name}.crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-sha256",
             "-keyout", key, "-out", crt, "-subj", f"/CN={cn}", *CA_EXT)  # fmt: skip


def issue_cert(pki: Path, name: str, ca: str, cn: str, ext: str, org: str = "") -> None:
    """<name>.key and <name>.crt in pki, signed by <ca>, for CN cn (and O org)."""
    key, csr = str(pki / f"{name}.key"), str(pki / f"{name}.csr")
    (pki / f"{name}.ext").write_text(LEAF_EXT + ext)
    subject = f"/O={org}/CN={cn}" if org else f"/CN={cn}"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", key, "-out", csr,
             "-subj", subject)  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", str(pki / f"{ca}.crt"), "-CAkey",
             str(pki / f"{ca}.key"), "-CAcreateserial", "-days", "3650", "-sha256", "-extfile",
             str(pki / f"{name}.ext"), "-out", str(pki / f"{name}.crt"))  # fmt: skip


def make_pki(pki: Path, service_ip: str) -> str:
    """CA + apiserver serving cert, front-proxy CA + client cert (so the apiserver publishes
    a requestheader CA, which delegated authn in kube-controller-manager needs), the service-
    account key pair and a static admin token (group system:masters); returns the token.
    Kept across restarts: only made when missing."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    needed = ("ca.crt", "apiserver.crt", "front-proxy-client.crt", "apiserver-kubelet-client.crt")
    needed += ("sa.key", "tokens.csv")
    if not all((pki / f).exists() for f in needed):
        log(f"generating certificates in {pki}")
        _ca(pki, "ca", "embop-local-ca")
        sans = ",".join([f"IP:127.0.0.1,IP:{service_ip}", *(f"DNS:{n}" for n in API_NAMES)])
        issue_cert(pki, "apiserver", "ca", "kube-apiserver",
              f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")  # fmt: skip
        _ca(pki, "front-proxy-ca", "embop-front-proxy-ca")
        issue_cert(pki, "front-proxy-client", "front-proxy-ca", "front-proxy-client",
                   "extendedKeyUsage=clientAuth\n")  # fmt: skip
        # The apiserver's identity towards kubelets (logs, exec), where a node runs.
        issue_cert(pki, "apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client",
                   "extendedKeyUsage=clientAuth\n", org="system:masters")  # fmt: skip
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        token = os.urandom(32).hex()
        (pki / "tokens.csv").write_text(f'{token},embop-admin,embop-admin,"system:masters"\n')
        for secret in [*pki.glob("*.key"), pki / "tokens.csv"]:
            secret.chmod(0o600)
    return (pki / "tokens.csv").read_text().split(",", 1)[0]


def kubeconfig(server: str, ca: Path, token: str) -> dict[str, Any]:
    """An admin kubeconfig for the static token."""
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    cluster = {"server": server, "certificate-authority-data": ca_data}
    context = {"cluster": "embop-local", "user": "embop-admin", "namespace": "default"}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "embop-local", "cluster": cluster}],
        "users": [{"name": "embop-admin", "user": {"token": token}}],
        "contexts": [{"name": "embop-local", "context": context}],
        "current-context": "embop-local",
    }


def write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def read_env(path: Path) -> dict[str, str]:
    """A KEY=VALUE file (cluster.env, e2e.env), or {} if there is none."""
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


# ---- probes --------------------------------------------------------------------------------
_NO_PROXY = urllib.request.ProxyHandler({})


def get(url: str, ca: Path | None = None, token: str | None = None) -> bytes:
    """GET on loopback, never through a proxy; raises OSError (HTTPError too) on failure.
    Without a CA an https URL is not verified (a component's own self-signed /healthz)."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if ca is None:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    opener = urllib.request.build_opener(_NO_PROXY, urllib.request.HTTPSHandler(context=context))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with opener.open(urllib.request.Request(url, headers=headers), timeout=3) as response:
        return response.read()  # type: ignore[no-any-return]


class ControlPlane:
    """The control plane in one directory: up (idempotent), down, status."""

    def __init__(self, directory: Path, settings: Settings | None = None):
        self.dir = directory.resolve()
        self.settings = settings or Settings.from_env(os.environ)
        self.components = Components(self.dir, log)
        self.kubeconfig = self.dir / "kubeconfig"
        self.pki = self.dir / "pki"

    @property
    def env(self) -> dict[str, str]:
        """cluster.env: KUBECONFIG, EMBOP_APISERVER_URL, ports, EMBOP_ADMIN_TOKEN..."""
        return read_env(self.dir / "cluster.env")

    def api(self, path: str) -> Any:
        """GET an apiserver path as the admin, parsed as JSON."""
        env = self.env
        url, token = env["EMBOP_APISERVER_URL"] + path, env["EMBOP_ADMIN_TOKEN"]
        return json.loads(get(url, self.pki / "ca.crt", token))

    def expected(self) -> list[str]:
        env = self.env
        return [
            *CORE,
            *([KCM] if env.get("EMBOP_KCM_ENABLED") == "1" else []),
            *([SCHEDULER] if env.get("EMBOP_SCHEDULER_ENABLED") == "1" else []),
        ]

    def running(self) -> bool:
        """Every component it started is alive and the apiserver is ready."""
        env = self.env
        if not env or not self.kubeconfig.exists() or not self.components.running(*self.expected()):
            return False
        try:
            url = f"{env['EMBOP_APISERVER_URL']}/readyz"
            return get(url, self.pki / "ca.crt", env["EMBOP_ADMIN_TOKEN"]) == b"ok"
        except OSError:
            return False

    def down(self) -> None:
        """Stop every component, delete etcd's data, kubeconfig and cluster.env (pki/ and logs/
        stay); a no-op for a directory with nothing running."""
        if not self.dir.exists():
            return
        self.components.stop_all()
        shutil.rmtree(self.dir / "etcd-data", ignore_errors=True)
        for name in ("cluster.env", "kubeconfig"):
            (self.dir / name).unlink(missing_ok=True)
        log(f"down: {self.dir}")

    def up(self) -> Path:
        """Start the control plane (or reuse a running one); returns the kubeconfig path. A
        half-dead one is stopped first; a failed start leaves no process behind."""
        bring_up(self.dir, self.running, self.down, self._start, log)
        return self.kubeconfig

    def _start(self) -> None:
        s, pki, d = self.settings, self.pki, self.dir
        kcm = s.kcm == "1" or (s.kcm == "auto" and tools.path(KCM) is not None)
        names = [*CORE, *([KCM] if kcm else []), *([SCHEDULER] if s.scheduler else [])]
        binary = dict(zip(names, tools.ensure(*names), strict=True))
        port = {n: (s.ports or {}).get(n) or tools.free_port() for n in PORTS}
        token = make_pki(pki, first_service_ip(s.service_cidr))
        etcd, api = f"http://127.0.0.1:{port['ETCD']}", f"https://127.0.0.1:{port['APISERVER']}"

        self._run("etcd", binary["etcd"], etcd_flags(d, port["ETCD"], port["ETCD_PEER"]))
        self._ready("etcd", f"etcd health on {etcd}", lambda: b'"true"' in get(f"{etcd}/health"))
        (d / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        flags = apiserver_flags(pki, etcd, port["APISERVER"], s.service_cidr)
        flags["audit-policy-file"] = d / "audit-policy.yaml"
        flags["audit-log-path"] = d / "logs" / "audit.log"
        self._run("kube-apiserver", binary["kube-apiserver"], flags)
        readyz = f"{api}/readyz"
        self._ready(
            "kube-apiserver",
            f"kube-apiserver /readyz on {api}",
            lambda: get(readyz, pki / "ca.crt", token) == b"ok",
        )
        config = kubeconfig(api, pki / "ca.crt", token)
        write_private(self.kubeconfig, yaml.safe_dump(config, sort_keys=False))
        env = {
            "KUBECONFIG": self.kubeconfig,
            "EMBOP_APISERVER_URL": api,
            **{f"EMBOP_{n}_PORT": p for n, p in port.items()},
            "EMBOP_KCM_ENABLED": int(kcm),
            "EMBOP_SCHEDULER_ENABLED": int(s.scheduler),
            "EMBOP_SERVICE_CIDR": s.service_cidr,
            "EMBOP_CA_FILE": pki / "ca.crt",
            "EMBOP_ADMIN_TOKEN": token,
        }
        write_private(d / "cluster.env", "".join(f"{k}={v}\n" for k, v in env.items()))
        if kcm:
            self._run(
                KCM, binary[KCM], kcm_flags(self.kubeconfig, pki, d, port["KCM"], s.service_cidr)
            )
            self._ready_healthz(KCM, port["KCM"])
            self._ready(
                KCM,
                "default ServiceAccount",
                lambda: self.api("/api/v1/namespaces/default/serviceaccounts/default"),
            )
        if s.scheduler:  # binds pods to nodes, e.g. kwok's fake GPU nodes
            flags = scheduler_flags(self.kubeconfig, pki, port["SCHEDULER"])
            self._run(SCHEDULER, binary[SCHEDULER], flags)
            self._ready_healthz(SCHEDULER, port["SCHEDULER"])
        log(f"up: KUBECONFIG={self.kubeconfig} (server {api})")

    def _run(self, name: str, binary: str, flags: Mapping[str, object]) -> None:
        self.components.start(name, [binary, *as_args(flags)], os.environ)

    def _ready(self, name: str, what: str, probe: Callable[[], object]) -> None:
        self.components.ready(name, what, probe, self.settings.timeout)

    def _ready_healthz(self, name: str, port: int) -> None:
        url = f"https://127.0.0.1:{port}/healthz"
        self._ready(name, f"{name} /healthz on 127.0.0.1:{port}", lambda: get(url) == b"ok")


# ---- flags (pure) --------------------------------------------------------------------------
#: Who writes an EmbeddingJob's status, recorded by the apiserver itself (logs/audit.log): the
#: node tests read it to show that a job reports with its own ServiceAccount.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["patch", "update"],
            "resources": [{"group": "embedding.dev", "resources": ["embeddingjobs/status"]}],
        },
        {"level": "None"},
    ],
}
PORTS = ("ETCD", "ETCD_PEER", "APISERVER", "KCM", "SCHEDULER")


def as_args(flags: Mapping[str, object]) -> list[str]:
    return [f"--{name}={value}" for name, value in flags.items()]


def etcd_flags(d: Path, port: int, peer: int) -> dict[str, object]:
    return {
        "name": "embop",
        "data-dir": d / "etcd-data",
        "listen-client-urls": f"http://127.0.0.1:{port}",
        "advertise-client-urls": f"http://127.0.0.1:{port}",
        "listen-peer-urls": f"http://127.0.0.1:{peer}",
        "initial-advertise-peer-urls": f"http://127.0.0.1:{peer}",
        "initial-cluster": f"embop=http://127.0.0.1:{peer}",
        "unsafe-no-fsync": "true",
        "log-level": "warn",
    }


def apiserver_flags(pki: Path, etcd: str, port: int, service_cidr: str) -> dict[str, object]:
    return {
        "bind-address": "127.0.0.1",
        "advertise-address": "127.0.0.1",
        "secure-port": port,
        "etcd-servers": etcd,
        "cert-dir": pki / "apiserver-generated",
        "tls-cert-file": pki / "apiserver.crt",
        "tls-private-key-file": pki / "apiserver.key",
        "client-ca-file": pki / "ca.crt",
        "token-auth-file": pki / "tokens.csv",
        "requestheader-client-ca-file": pki / "front-proxy-ca.crt",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-username-headers": "X-Remote-User",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "proxy-client-cert-file": pki / "front-proxy-client.crt",
        "proxy-client-key-file": pki / "front-proxy-client.key",
        # Node: what a kubelet may read and write (node_cluster.py's real node), as on any
        # production cluster; RBAC for everyone else.
        "authorization-mode": "Node,RBAC",
        # OwnerReferencesPermissionEnforcement is on by default in OpenShift: setting
        # blockOwnerDeletion on an owner reference needs `update` on the owner's finalizers.
        # Every tier runs with it, so the chart's RBAC (tests/chart/test_install.py runs the
        # operator with exactly it) is proven under it.
        "enable-admission-plugins": "OwnerReferencesPermissionEnforcement,NodeRestriction",
        "kubelet-client-certificate": pki / "apiserver-kubelet-client.crt",
        "kubelet-client-key": pki / "apiserver-kubelet-client.key",
        "kubelet-certificate-authority": pki / "ca.crt",
        "kubelet-preferred-address-types": "InternalIP",
        "service-account-issuer": SERVICE_ACCOUNT_ISSUER,
        "service-account-key-file": pki / "sa.pub",
        "service-account-signing-key-file": pki / "sa.key",
        "service-cluster-ip-range": service_cidr,
        "endpoint-reconciler-type": "none",
        "allow-privileged": "true",
        "profiling": "false",
        "v": 1,
    }


def _delegated(kubeconfig: Path, port: int) -> dict[str, object]:
    return {
        "kubeconfig": kubeconfig,
        "authentication-kubeconfig": kubeconfig,
        "authorization-kubeconfig": kubeconfig,
        "bind-address": "127.0.0.1",
        "secure-port": port,
        "leader-elect": "false",
        "profiling": "false",
    }


def kcm_flags(
    kubeconfig: Path, pki: Path, d: Path, port: int, service_cidr: str
) -> dict[str, object]:
    # 1.36's kube-controller-manager has no cloud controllers left, so only node-ipam is
    # turned off (no pod CIDRs to hand out). --flex-volume-plugin-dir keeps it from
    # creating /usr/libexec/kubernetes/... on the host.
    return {
        **_delegated(kubeconfig, port),
        "cert-dir": pki / "kcm-generated",
        "controllers": "*,-node-ipam-controller",
        "flex-volume-plugin-dir": d / "flexvolume",
        "allocate-node-cidrs": "false",
        "service-cluster-ip-range": service_cidr,
        "service-account-private-key-file": pki / "sa.key",
        "root-ca-file": pki / "ca.crt",
        "cluster-signing-cert-file": pki / "ca.crt",
        "cluster-signing-key-file": pki / "ca.key",
        "use-service-account-credentials": "false",
        "v": 1,
    }


def scheduler_flags(kubeconfig: Path, pki: Path, port: int) -> dict[str, object]:
    return {**_delegated(kubeconfig, port), "cert-dir": pki / "scheduler-generated", "v": 2}
