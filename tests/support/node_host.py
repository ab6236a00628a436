"""What the real node leaves on this machine outside its directory, and its removal:
runc shims (they daemonize out of containerd's process family), mounts under the node's
directory, and the kubelet's cgroup tree in every cgroup v1 hierarchy."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from tests.support.waiting import wait_for


def kill_shims(socket: Path) -> None:
    """runc shims daemonize out of containerd's process family: find ours by the socket."""
    for pid in _shims(socket):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 9)


def mounts_below(mountinfo: str, root: Path) -> list[str]:
    """Mount points at or below root, deepest first (pure: /proc/self/mountinfo's text)."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(prefix):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def unmount_below(root: Path) -> None:
    for point in mounts_below(Path("/proc/self/mountinfo").read_text(), root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def v1_hierarchies() -> list[Path]:
    return [h for h in Path("/sys/fs/cgroup").iterdir() if h.is_dir() and h.name != "unified"]


def make_cgroups(name: str) -> None:
    """The kubelet's cgroup root must exist in every hierarchy; a new cpuset cgroup has no
    CPUs or memory nodes until given its parent's."""
    for hierarchy in v1_hierarchies():
        top = hierarchy / name
        top.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and not (top / knob).read_text().strip():
                (top / knob).write_text((hierarchy / knob).read_text())


def _shims(socket: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in argv:
            found.append(int(proc.name))
    return found


def _cgroup_procs(name: str) -> list[int]:
    pids: set[int] = set()
    for hierarchy in v1_hierarchies():
        for procs in (hierarchy / name).rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(p) for p in procs.read_text().split()}
    return sorted(pids)


def leftovers(socket: Path, root: Path, cgroup: str) -> list[str]:
    """What the node left behind: shims, processes in its cgroups, mounts, cgroups."""
    mounts = mounts_below(Path("/proc/self/mountinfo").read_text(), root)
    cgroups = [str(h / cgroup) for h in v1_hierarchies() if (h / cgroup).exists()]
    return [
        *(f"shim pid {pid}" for pid in _shims(socket)),
        *(f"pid {pid} in cgroup {cgroup}" for pid in _cgroup_procs(cgroup)),
        *(f"mount {point}" for point in mounts),
        *(f"cgroup {path}" for path in cgroups),
    ]


def remove_cgroups(name: str) -> None:
    """The kubelet's cgroup tree (cgroupRoot /embop) in every v1 hierarchy, deepest first,
    after killing what still runs in it (a container whose shim is gone)."""
    for pid in _cgroup_procs(name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 9)
    # A killed process leaves its cgroup only once it has exited (freeing its memory takes a
    # while): until then rmdir fails. What is still there at the deadline is a leftover.
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not _cgroup_procs(name), timeout=30, message="killed pods to exit")
    for hierarchy in v1_hierarchies():
        top = hierarchy / name
        if top.is_dir():
            for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if directory.is_dir():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
