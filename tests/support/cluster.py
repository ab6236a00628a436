"""``python -m tests.support.cluster up|down|status DIR [--e2e] [--crds]``: the local clusters
from the command line (make cluster-up, cluster-down, e2e-up, e2e-down).

``up`` starts (or reuses) the control plane, or with ``--e2e`` the whole e2e cluster, and prints
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--e2e", action="store_true", help="the e2e cluster (kwok, KubeRay, Ray)")
    parser.add_argument("--crds", action="store_true", help="up: also install the CRDs")
    args = parser.parse_args(argv)
    cluster = E2ECluster(args.dir) if args.e2e else ControlPlane(args.dir)
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
