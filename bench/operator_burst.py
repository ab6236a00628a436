"""Operator burst benchmark: many EmbeddingJobs applied at once.

``python -m bench.operator_burst`` (``make bench-operator``) starts the local control plane
(etcd, kube-apiserver, kube-controller-manager, built from Go modules), runs the operator as a
real ``kopf run`` process against it, creates ``--jobs`` EmbeddingJobs from 16 client threads
at once, and measures for each job the time from its create call returning to its RayJob
appearing on a watch, the CPU each process used meanwhile, and, once the burst's writes have
stopped, the writes per job the apiserver served (its own request counter, by verb and
resource). Then it tops up to ``--rss-jobs`` jobs in all and reads the operator process's
resident memory (current and peak).

The baseline, in the same run: the floor (operator_floor.py), the same burst on a fresh
control plane with each job's writes, the operator's own, made directly by 32 threads with no
operator running. ``--rounds`` pairs (operator, then floor, back to back: the machine's speed
drifts) give the medians; ``vs_floor`` is their ratio. Prints one JSON object (and writes
``--out``).

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from bench.machine import git_commit
from bench.operator_floor import WRITER_THREADS, Writers, Writes, operators_writes
from embedding_job.api import GROUP, PLURAL, VERSION, quantity_value
from embedding_operator import kube
from tests.support.components import Components
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
        # Each new watch goes on from the last version seen: one without a version would start
        # by sending every RayJob so far again, work for the apiserver amid the burst it times.
        version: str | None = None
        while not self._stop.is_set():
            since = {"resource_version": version} if version else {}
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object,
                "ray.io", "v1", NAMESPACE, "rayjobs", timeout_seconds=30, **since,
            )  # fmt: skip
            try:
                for event in stream:
                    meta = event["object"]["metadata"]
                    version = meta["resourceVersion"]
                    self.seen.setdefault(meta["name"], time.monotonic())
            except Exception as exc:
                if self._stop.is_set():
                    return  # the control plane went down under a watch no longer needed
                if not (isinstance(exc, client.ApiException) and exc.status == 410):
                    raise
                version = None  # that version is gone: start afresh

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def burst_cpu(workdir: Path, operator: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by each process on the burst's two cores: the operator (if
    any), the control plane's components and this benchmark's own process (its client
    threads, and the floor's writers)."""
    components = Components(workdir)
    pids = {name: proc.pid for name in components.names() if (proc := components.process(name))}
    if operator is not None:
        pids = {"operator": operator, **pids}
    used = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return {**used, "bench": time.process_time(), "stolen": stolen_seconds()}


def stolen_seconds() -> float:
    """CPU time the hypervisor took from this machine so far (/proc/stat's steal): when it
    grows during a burst, the burst ran on less than two whole cores."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds - before[name], 2) for name, seconds in after.items()}


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


def burst(
    api: client.CustomObjectsApi,
    names: list[str],
    seen: RayJobWatch,
    created_one: Callable[[dict[str, Any]], None] | None = None,
    failures: list[Exception] | None = None,
) -> dict[str, Any]:
    """Create the jobs from 16 threads at once; each one's latency is from its create call
    returning to its RayJob appearing. ``created_one`` is given each job as created; the
    first of ``failures`` (of whoever makes the RayJobs, when it is not the operator) ends
    the wait."""
    submitted: dict[str, float] = {}

    def create(name: str) -> None:
        made = api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, job(name))
        submitted[name] = time.monotonic()
        if created_one is not None:
            created_one(made)

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, names))
    created = time.monotonic()

    def all_seen() -> bool:
        if failures:
            raise RuntimeError(f"the RayJobs' writer failed: {failures[0]!r}")
        return all(n in seen.seen for n in names)

    wait_for(
        all_seen,
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


#: The figures each round gives, of which the result has the medians.
TIMES = ("create_calls_s", "all_rayjobs_s", "latency_p50_s", "latency_p99_s", "latency_max_s")


def medians(bursts: list[dict[str, Any]]) -> dict[str, float]:
    return {key: round(statistics.median(b[key] for b in bursts), 2) for key in TIMES}


def run(jobs: int, rss_jobs: int, rounds: int = 3) -> dict[str, Any]:
    """``rounds`` of the operator's burst, each followed by the floor's burst with the
    operator's writes (the machine's speed drifts: each pair is run back to back); the
    operator's memory after the first. Latencies are the rounds' medians."""
    paired: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    for number in range(rounds):
        operator, writes, measured = run_operator(jobs, rss_jobs if number == 0 else jobs + 1)
        memory = memory or measured
        paired.append({"operator": operator, "floor": run_floor(jobs, writes)})
    ours, floor = (medians([r[side] for r in paired]) for side in ("operator", "floor"))
    return {
        "burst": {"jobs": jobs, **ours, **_writes_and_cpu(paired[0]["operator"])},
        "floor": {"jobs": jobs, **floor, **_writes_and_cpu(paired[0]["floor"])},
        "vs_floor": {key: round(ours[key] / max(floor[key], 0.01), 2) for key in TIMES[1:4]},
        "memory": memory,
        "goals": {
            "all_within_5s": ours["all_rayjobs_s"] <= 5.0,
            "p99_within_2s": ours["latency_p99_s"] <= 2.0,
            "rss_within_chart_limit": memory["peak_rss_mb"] <= memory["chart_limit_mb"],
            "floor_all_within_5s": floor["all_rayjobs_s"] <= 5.0,
            "floor_p99_within_2s": floor["latency_p99_s"] <= 2.0,
        },
        "rounds": paired,
    }


def _writes_and_cpu(burst: dict[str, Any]) -> dict[str, Any]:
    """What is not a time: the first round's writes, CPU and connections."""
    return {k: v for k, v in burst.items() if k not in TIMES and k != "jobs"}


def run_operator(jobs: int, rss_jobs: int) -> tuple[dict[str, Any], Writes, dict[str, Any]]:
    """The burst of ``jobs`` through the operator; what it wrote for the burst's first job;
    its memory once ``rss_jobs`` jobs in all exist."""
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
        cpu_before = burst_cpu(workdir, operator.process.pid)
        result = burst(api, [f"j{i:04d}" for i in range(jobs)], seen)
        # Who computed what while the burst ran: the operator, the apiserver...
        used = cpu_used(cpu_before, burst_cpu(workdir, operator.process.pid))
        burst_writes = quiet_writes(cluster) - writes_before
        result["operator_cpu_s"] = used["operator"]
        result["cpu_s_by_process"] = used
        result.update(writes_per_job(burst_writes, jobs))
        # urllib3 warns for each connection it closes because its pool is full: each costs a
        # new TLS connection for the next call (0 when every handler thread keeps its own).
        log = operator.log.read_text(errors="replace")
        result["connections_discarded"] = log.count("Connection pool is full")
        writes = operators_writes(
            cluster, NAMESPACE, "j0000", operator.env["EMBEDDING_OPERATOR_JOB_IMAGE"]
        )
        rest = [f"r{i:04d}" for i in range(max(0, rss_jobs - jobs - 1))]
        if rest:
            burst(api, rest, seen)
        rss, peak = memory_mb(operator.process.pid)
        limit = chart_memory_limit_mb()
        seen.stop()
        memory = {
            "jobs": 1 + jobs + len(rest),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(peak, 1),
            "chart_limit_mb": limit,
        }
        return result, writes, memory
    finally:
        operator.stop()
        stop_cluster(workdir)


def run_floor(jobs: int, writes: Writes) -> dict[str, Any]:
    """The burst of ``jobs`` on a fresh control plane, each job's writes made directly by
    ``Writers`` (operator_floor.py), no operator running."""
    workdir = Path(tempfile.mkdtemp(prefix="embop-floor-"))
    cluster = start_cluster(workdir)
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        kube.login(WRITER_THREADS, str(cluster.kubeconfig))
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.CustomObjectsApi()
        seen = RayJobWatch(api)
        writers = Writers(writes)
        try:
            burst(api, ["warm-up"], seen, writers.jobs.put, writers.failures)
            writes_before = quiet_writes(cluster)
            cpu_before = burst_cpu(workdir)
            names = [f"j{i:04d}" for i in range(jobs)]
            result = burst(api, names, seen, writers.jobs.put, writers.failures)
            used = cpu_used(cpu_before, burst_cpu(workdir))
            burst_writes = quiet_writes(cluster) - writes_before
        finally:
            seen.stop()
            writers.close()
        result["cpu_s_by_process"] = used
        return {**result, **writes_per_job(burst_writes, jobs)}
    finally:
        stop_cluster(workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_burst", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200, help="EmbeddingJobs in the burst")
    parser.add_argument("--rss-jobs", type=int, default=1000, help="jobs in all for the RSS")
    parser.add_argument("--rounds", type=int, default=3, help="operator and floor bursts")
    parser.add_argument("--out", type=Path, default=Path("bench-operator.json"))
    args = parser.parse_args(argv)
    result = {"commit": git_commit(), **run(args.jobs, args.rss_jobs, args.rounds)}
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
