"""Cluster DNS names for Services whose pods are on the real node's host network.

The node's pods share its loopback address, and the apiserver refuses loopback addresses in
Endpoints and EndpointSlices ("may not be in the loopback range"), so the endpoint
controllers leave every Service empty and CoreDNS's kubernetes plugin cannot answer for a
headless Service (KubeRay's head Services are headless). This loop does the endpoint
controllers' part for headless Services: it writes ``<pod IP> <service>.<ns>.svc.cluster.local``
for each pod a Service selects (running, and ready unless the Service publishes pods that are
not), into a hosts file that CoreDNS serves ahead of its kubernetes plugin.

    python -m tests.support.host_endpoints --hosts FILE [--interval 0.5]   (KUBECONFIG)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config

log = logging.getLogger("host-endpoints")


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def host_lines(
    services: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[str]:
    """hosts-file lines for the headless Services' pods (pure: API objects as dicts)."""
    pods = list(pods)
    lines = []
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec") or {}
        if spec.get("clusterIP") != "None":
            continue
        everyone = bool(spec.get("publishNotReadyAddresses"))
        ips = sorted(
            {
                pod["status"]["podIP"]
                for pod in pods
                if pod["metadata"].get("namespace") == meta["namespace"]
                and _selects(spec.get("selector") or {}, pod["metadata"].get("labels") or {})
                and pod.get("status", {}).get("phase") == "Running"
                and pod["status"].get("podIP")
                and (everyone or _ready(pod))
            }
        )
        name = f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
        lines += [f"{ip} {name}" for ip in ips]
    return sorted(lines)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config.load_kube_config()
    api = client.ApiClient()
    core = client.CoreV1Api(api)
    known: list[str] = []
    write_atomically(args.hosts, "")
    log.info("publishing headless Services' host-network pods to %s", args.hosts)
    while True:
        try:
            services = api.sanitize_for_serialization(core.list_service_for_all_namespaces())
            pods = api.sanitize_for_serialization(core.list_pod_for_all_namespaces())
            lines = host_lines(services["items"], pods["items"])
            if lines != known:
                for line in sorted(set(lines) - set(known)):
                    log.info("+ %s", line)
                for line in sorted(set(known) - set(lines)):
                    log.info("- %s", line)
                write_atomically(args.hosts, "".join(f"{line}\n" for line in lines))
                known = lines
        except Exception as e:  # noqa: BLE001 - apiserver briefly away: try again next round
            log.warning("cannot sync (%s): %s", type(e).__name__, str(e).splitlines()[0:1])
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
