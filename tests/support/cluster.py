"""``python -m tests.support.cluster up|down|status DIR [--e2e|--node] [--crds]``: the local
clusters from the command line (make cluster-up, cluster-down, e2e-up, e2e-down).

``up`` starts (or reuses) the control plane, with ``--e2e`` the whole e2e cluster (kwok nodes),
with ``--node`` the control plane and a real node (node_cluster.py; as root), and prints
the kubeconfig path as its only stdout line (progress goes to stderr); ``--crds`` also installs
our and KubeRay's RayJob and RayCluster CRDs. ``down`` stops it and deletes its data
(idempotent; works from any process). ``status`` prints the kubeconfig path and exits 0 if it
runs, else exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from tests.support.control_plane import ControlPlane
from tests.support.e2e_cluster import E2ECluster
from tests.support.kube import Cluster, install_crds
from tests.support.node_cluster import NodeCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("dir", type=Path)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--e2e", action="store_true", help="the e2e cluster (kwok, KubeRay, Ray)")
    kind.add_argument("--node", action="store_true", help="a real node (kubelet, containerd)")
    parser.add_argument("--crds", action="store_true", help="up: also install the CRDs")
    args = parser.parse_args(argv)
    cluster: ControlPlane | E2ECluster | NodeCluster = ControlPlane(args.dir)
    if args.e2e:
        cluster = E2ECluster(args.dir)
    elif args.node:
        cluster = NodeCluster(args.dir)
    with contextlib.redirect_stdout(sys.stderr):  # stdout: the kubeconfig path alone
        if args.command == "down":
            cluster.down()
            return 0
        if args.command == "status" and not cluster.running():
            print(f"not running: {cluster.dir}")
            return 1
        if args.command == "up":
            cluster.up()
            if args.crds:
                install_crds(Cluster.at(cluster.dir))
    print(cluster.kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
