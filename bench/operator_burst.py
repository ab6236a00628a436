"""Operator burst benchmark: many EmbeddingJobs applied at once.

``python -m bench.operator_burst`` (``make bench-operator``) starts the local control plane
(etcd, kube-apiserver, kube-controller-manager, built from Go modules), runs the operator as a
real ``kopf run`` process against it, creates ``--jobs`` EmbeddingJobs from 16 client threads
at once, and measures for each job the time from its create call returning to its RayJob
appearing on a watch, and, once the burst's writes have stopped, the writes per job the
apiserver served (its own request counter, by verb and resource). Then it tops up to
``--rss-jobs`` jobs in all and reads the operator process's resident memory (current and
peak). Prints one JSON object (and writes ``--out``).

Goals (issue 13): 200 jobs → every RayJob within 5 s, p99 ≤ 2 s; RSS within the chart's
memory limit (``resources.limits.memory``) at 1,000 jobs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from bench.machine import git_commit
from embedding_job.api import GROUP, PLURAL, VERSION, quantity_value
from tests.support.helm import CHART
from tests.support.kube import Cluster, Operator, start_cluster, stop_cluster
from tests.support.scrape import parse
from tests.support.waiting import wait_for

NAMESPACE = "burst"


def chart_memory_limit_mb() -> float:
    """The operator's memory limit in the chart's default values (``resources.limits``)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return float(quantity_value(values["resources"]["limits"]["memory"])) / 2**20


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EmbeddingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"input": {"uri": "s3://b/in/"}, "output": {"uri": f"s3://b/out/{name}/"}},
    }


class RayJobWatch:
    """When each RayJob of the namespace was first seen (monotonic seconds)."""

    def __init__(self, api: client.CustomObjectsApi):
        self.api, self._stop = api, threading.Event()
        self.seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object,
                "ray.io", "v1", NAMESPACE, "rayjobs", timeout_seconds=5,
            )  # fmt: skip
            try:
                for event in stream:
                    name = event["object"]["metadata"]["name"]
                    self.seen.setdefault(name, time.monotonic())
            except Exception:
                if self._stop.is_set():
                    return  # the control plane went down under a watch no longer needed
                raise

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) memory of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


#: The request verbs that write (apiserver_request_total's ``verb`` label).
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})


def api_writes(cluster: Cluster) -> Counter[str]:
    """Writes the apiserver has served so far, by verb and resource (``PATCH embeddingjobs/
    status``), from its own request counter; without leases (the apiserver's own identity
    lease, renewed on a timer: no job's doing)."""
    _, samples = parse(cluster.kubectl("get", "--raw", "/metrics").stdout)
    writes: Counter[str] = Counter()
    for (name, pairs), count in samples.items():
        labels = dict(pairs)
        if name != "apiserver_request_total" or labels.get("verb") not in WRITE_VERBS:
            continue
        if labels["resource"] != "leases":
            resource = "/".join(filter(None, (labels["resource"], labels.get("subresource"))))
            writes[f"{labels['verb']} {resource}"] += int(count)
    return writes


def quiet_writes(cluster: Cluster) -> Counter[str]:
    """The apiserver's writes so far, once they have stopped (none new for 2 s)."""
    last: list[Counter[str] | None] = [None]

    def quiet() -> Counter[str] | None:
        now = api_writes(cluster)
        stopped, last[0] = now == last[0], now
        return now if stopped else None

    return wait_for(quiet, timeout=120, interval=2, message="the apiserver's writes stop")


def writes_per_job(writes: Counter[str], jobs: int) -> dict[str, Any]:
    """A burst's writes per job, in all and by kind: the benchmark's own create, then the
    operator's."""
    return {
        "api_writes_per_job": round(sum(writes.values()) / jobs, 2),
        "api_writes_by_kind": {k: round(v / jobs, 2) for k, v in sorted(writes.items())},
    }


def burst(api: client.CustomObjectsApi, names: list[str], seen: RayJobWatch) -> dict[str, Any]:
    submitted: dict[str, float] = {}

    def create(name: str) -> None:
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, job(name))
        submitted[name] = time.monotonic()

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, names))
    created = time.monotonic()
    wait_for(
        lambda: all(n in seen.seen for n in names),
        timeout=600,
        interval=0.1,
        message=lambda: f"RayJobs: {sum(n in seen.seen for n in names)} of {len(names)}",
    )
    latencies = sorted(max(0.0, seen.seen[n] - submitted[n]) for n in names)
    return {
        "jobs": len(names),
        "create_calls_s": round(created - started, 2),
        "all_rayjobs_s": round(max(seen.seen[n] for n in names) - started, 2),
        "latency_p50_s": round(statistics.median(latencies), 2),
        "latency_p99_s": round(latencies[math.ceil(0.99 * len(latencies)) - 1], 2),
        "latency_max_s": round(latencies[-1], 2),
    }


def run(jobs: int, rss_jobs: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="embop-burst-"))
    cluster: Cluster = start_cluster(workdir)
    # At the chart's default log level (INFO): kopf's --verbose logs every API response.
    operator = Operator(cluster, workdir / "operator.log", verbose=False)
    operator.env["EMBEDDING_OPERATOR_RESYNC_SECONDS"] = "30"
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator.start()
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.CustomObjectsApi()
        seen = RayJobWatch(api)
        burst(api, ["warm-up"], seen)  # the operator is up and watching
        assert operator.process is not None
        # The warm-up job's last writes (its status, kopf's record, its Event) land first.
        writes_before = quiet_writes(cluster)
        cpu_before = cpu_seconds(operator.process.pid)
        result: dict[str, Any] = {"burst": burst(api, [f"j{i:04d}" for i in range(jobs)], seen)}
        # How much of the burst the operator itself computed (the rest: apiserver, etcd).
        result["burst"]["operator_cpu_s"] = round(cpu_seconds(operator.process.pid) - cpu_before, 2)
        burst_writes = quiet_writes(cluster) - writes_before
        result["burst"].update(writes_per_job(burst_writes, jobs))
        # urllib3 warns for each connection it closes because its pool is full: each costs a
        # new TLS connection for the next call (0 when every handler thread keeps its own).
        log = operator.log.read_text(errors="replace")
        result["burst"]["connections_discarded"] = log.count("Connection pool is full")
        rest = [f"r{i:04d}" for i in range(max(0, rss_jobs - jobs - 1))]
        if rest:
            burst(api, rest, seen)
        rss, peak = memory_mb(operator.process.pid)
        limit = chart_memory_limit_mb()
        seen.stop()
        result["memory"] = {
            "jobs": 1 + jobs + len(rest),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(peak, 1),
            "chart_limit_mb": limit,
        }
        result["goals"] = {
            "all_within_5s": result["burst"]["all_rayjobs_s"] <= 5.0,
            "p99_within_2s": result["burst"]["latency_p99_s"] <= 2.0,
            "rss_within_chart_limit": peak <= limit,
        }
        return result
    finally:
        operator.stop()
        stop_cluster(workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_burst", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200, help="EmbeddingJobs in the burst")
    parser.add_argument("--rss-jobs", type=int, default=1000, help="jobs in all for the RSS")
    parser.add_argument("--out", type=Path, default=Path("bench-operator.json"))
    args = parser.parse_args(argv)
    result = {"commit": git_commit(), **run(args.jobs, args.rss_jobs)}
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
