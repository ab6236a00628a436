"""The repository's paths and the Go tools hack/tools.sh builds (once, cached outside the repo)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS_SH = ROOT / "hack" / "tools.sh"


def _tools_sh(*args: str) -> list[str]:
    out = subprocess.run([str(TOOLS_SH), *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"hack/tools.sh {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return out.stdout.strip().splitlines()


def ensure(*names: str) -> list[str]:
    """Paths of cached tools, in order, building what is missing (built ones are only looked
    up: no wait on the build lock while another checkout builds other tools)."""
    paths = [path(n) for n in names]
    if all(paths):
        return [p for p in paths if p]
    return _tools_sh("ensure", *names)[-len(names) :]


def path(name: str) -> str | None:
    """A tool's path if it is built (never builds)."""
    out = subprocess.run([str(TOOLS_SH), "path", name], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def tool(name: str) -> str:
    """Path of one cached tool, building it on first use."""
    return ensure(name)[0]


def kuberay_crds() -> Path:
    """KubeRay's CRD directory (config/crd/bases of the pinned ray-operator module)."""
    return Path(_tools_sh("kuberay-crds")[-1])


def kwok_stages() -> list[str]:
    """kwok's fast node and pod lifecycle stage files (kwok takes each as -c)."""
    return _tools_sh("kwok-stages")


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
