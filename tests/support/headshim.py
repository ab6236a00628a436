"""Stand-ins for what a real cluster gives KubeRay about a Ray head pod (local e2e only).

kwok runs no containers, so a RayCluster's head pod is a fake. The local e2e runs one
real Ray head on 127.0.0.1 instead, and this loop makes KubeRay talk to it:

* DNS: every Ray head Service ``<svc>.<ns>.svc.cluster.local`` is written to a hosts file
  as 127.0.0.1. e2e_cluster.py bind-mounts that file over /etc/hosts in KubeRay's private
  mount namespace only, so no other process on the machine sees it.
* Token: KubeRay makes a random auth token Secret per RayCluster (authOptions mode token)
  and sends it to the head's dashboard; the real head was started with its own token, so
  the Secret's ``auth_token`` is set to that token. KubeRay never rewrites an existing one.

Usage: python tests/support/headshim.py --hosts FILE --token-file FILE [--interval 0.5]
(KUBECONFIG from the environment). Every change is logged, one line each.
"""

from __future__ import annotations

import argparse
import base64
import logging
import time
from pathlib import Path

from kubernetes import client, config

HEAD_SELECTOR = "ray.io/node-type=head"
MARKER = "# Ray head services (tests/support/headshim.py)"
CLUSTER_LABEL = "ray.io/cluster"
TOKEN_KEY = "auth_token"
log = logging.getLogger("headshim")


def host_names(service: client.V1Service) -> list[str]:
    name, ns = service.metadata.name, service.metadata.namespace
    return [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]


def render_hosts(base: str, services: list[client.V1Service]) -> str:
    lines = [base.rstrip("\n"), MARKER]
    for svc in sorted(services, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        lines.append("127.0.0.1 " + " ".join(host_names(svc)))
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Rewrite the file without replacing its inode: it is bind-mounted elsewhere."""
    with path.open("r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


def sync_hosts(core: client.CoreV1Api, hosts: Path, base: str, known: set[str]) -> None:
    services = core.list_service_for_all_namespaces(label_selector=HEAD_SELECTOR).items
    names = {host_names(s)[0] for s in services}
    if names == known:
        return
    for added in sorted(names - known):
        log.info("hosts: %s -> 127.0.0.1", added)
    for removed in sorted(known - names):
        log.info("hosts: %s removed", removed)
    write_in_place(hosts, render_hosts(base, services))
    known.clear()
    known.update(names)


def sync_tokens(core: client.CoreV1Api, token: str) -> None:
    encoded = base64.b64encode(token.encode()).decode()
    for secret in core.list_secret_for_all_namespaces(label_selector=CLUSTER_LABEL).items:
        data = secret.data or {}
        if TOKEN_KEY not in data or data[TOKEN_KEY] == encoded:
            continue
        core.patch_namespaced_secret(
            secret.metadata.name, secret.metadata.namespace, {"data": {TOKEN_KEY: encoded}}
        )
        log.info(
            "token: secret %s/%s now holds the local Ray head's token",
            secret.metadata.namespace,
            secret.metadata.name,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config.load_kube_config()
    core = client.CoreV1Api()
    base = args.hosts.read_text().split(MARKER)[0]
    token = args.token_file.read_text().strip()
    known: set[str] = set()
    log.info("watching Ray head services and auth secrets")
    while True:
        try:
            sync_hosts(core, args.hosts, base, known)
            sync_tokens(core, token)
        except Exception as e:  # noqa: BLE001 - apiserver briefly away: try again next round
            log.warning("cannot sync (%s): %s", type(e).__name__, str(e).splitlines()[0:1])
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
