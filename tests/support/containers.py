"""Run an image as a real container (podman with runc) with what a pod spec gives it.

``run_args`` reads the pod and container objects the operator's builder or the chart
produce and turns them into podman flags: the user, a read-only root filesystem with only
the declared volumes writable, dropped capabilities, no privilege escalation, the env, the
mounts and the resource limits. The smoke tests run the images exactly as the pods would.
"""

from __future__ import annotations

import re
import resource
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# runc, not crun (crun refuses this machine's hybrid cgroups); cgroupfs (no systemd).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
_BINARY = {"Ki": "k", "Mi": "m", "Gi": "g", "Ti": "t"}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class PodSpecError(ValueError):
    """The pod asks for something a container here cannot be given."""


def memory_flag(quantity: str) -> str:
    """A Kubernetes memory quantity as podman's --memory value."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity)
    if match is None:
        raise PodSpecError(f"memory quantity {quantity!r} not understood")
    number, unit = int(match.group(1)), match.group(2)
    if unit in _BINARY:
        return f"{number}{_BINARY[unit]}"
    return str(number * _DECIMAL.get(unit or "", 1))


def cpu_flag(quantity: str) -> str:
    if quantity.endswith("m"):
        return str(int(quantity[:-1]) / 1000)
    return str(float(quantity))


def security(pod: dict[str, Any], container: dict[str, Any], image_user: str) -> list[str]:
    """The pod and container securityContext (the container's wins), checked as the kubelet
    checks runAsNonRoot: the user must be numeric and not 0."""
    merged = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    image_uid, _, image_gid = image_user.partition(":")
    uid = str(merged.get("runAsUser", image_uid))
    gid = str(merged.get("runAsGroup", image_gid))
    if merged.get("runAsNonRoot") and (not uid.isdigit() or int(uid) == 0):
        raise PodSpecError(f"runAsNonRoot, but the container would run as user {uid!r}")
    flags = ["--user", f"{uid}:{gid}" if gid else uid]
    if merged.get("readOnlyRootFilesystem"):
        # podman would add writable tmpfs at /tmp, /run and /var/tmp: a pod has none of them.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    caps = merged.get("capabilities", {})
    flags += [f"--cap-drop={c}" for c in caps.get("drop", [])]
    flags += [f"--cap-add={c}" for c in caps.get("add", [])]
    if merged.get("privileged"):
        raise PodSpecError("privileged containers are not run here")
    return flags


def mounts(
    pod: dict[str, Any], container: dict[str, Any], host_paths: Mapping[str, Path]
) -> list[str]:
    """emptyDir volumes become fresh tmpfs (world-writable, as the kubelet makes them); every
    other volume needs a host directory standing in for it, from host_paths by volume name."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    flags: list[str] = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        read_only = bool(mount.get("readOnly"))
        if "emptyDir" in volume:
            flags += ["--mount", f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=1777"]
            continue
        if mount["name"] not in host_paths:
            raise PodSpecError(f"volume {mount['name']!r} needs a host directory to stand in")
        suffix = ":ro" if read_only else ""
        flags += ["--volume", f"{host_paths[mount['name']]}:{mount['mountPath']}{suffix}"]
    return flags


def environment(container: dict[str, Any], extra: Mapping[str, str]) -> list[str]:
    flags: list[str] = []
    for item in container.get("env", []):
        if "valueFrom" in item:
            raise PodSpecError(f"env {item['name']} comes from elsewhere (valueFrom)")
        # The apiserver drops an empty value: the variable is set, to "".
        flags += ["--env", f"{item['name']}={item.get('value', '')}"]
    for key, value in extra.items():
        flags += ["--env", f"{key}={value}"]
    return flags


def limits(container: dict[str, Any]) -> list[str]:
    amounts = container.get("resources", {}).get("limits", {})
    flags: list[str] = []
    if "memory" in amounts:
        flags += ["--memory", memory_flag(str(amounts["memory"]))]
    if "cpu" in amounts:
        flags += ["--cpus", cpu_flag(str(amounts["cpu"]))]
    return flags


def ulimits() -> list[str]:
    """podman raises nofile and nproc above what this sandbox lets runc set: ask for the
    open-files limit the host has, and a bounded process count."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return ["--ulimit", f"nofile={soft}:{hard}", "--ulimit", "nproc=8192:8192"]


def run_args(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    image_user: str,
    host_paths: Mapping[str, Path] | None = None,
    extra_env: Mapping[str, str] | None = None,
    network: str = "none",
) -> list[str]:
    """`podman run` flags (before the image) for container of pod."""
    return [
        "--rm",
        f"--network={network}",
        *ulimits(),
        *security(pod, container, image_user),
        *mounts(pod, container, host_paths or {}),
        *environment(container, extra_env or {}),
        *limits(container),
    ]


def image_user(image: str) -> str:
    """The image's USER, as the kubelet sees it."""
    out = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", "{{.Config.User}}", image],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip() or "0"
