"""What the operator burst benchmark measures, and how: the burst itself (EmbeddingJobs created
from 16 threads at once, each one's time from its create call returning to its RayJob
appearing on a watch), the CPU each process used, the writes the apiserver served (its own
request counter) and a process's memory. Used by operator_burst.py for both the operator's
bursts and the floor's."""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from embedding_job.api import GROUP, PLURAL, VERSION
from tests.support.components import Components
from tests.support.kube import Cluster
from tests.support.scrape import parse
from tests.support.waiting import wait_for

NAMESPACE = "burst"


def job(name: str) -> dict[str, Any]:
    """One EmbeddingJob of the burst: a spec with defaults for all but its input and output."""
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


def burst_cpu(workdir: Path, processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each process on the burst's cores: ``processes`` (the
    operator, or the floor's writers), the control plane's components and this benchmark's
    own process (its client threads and its watch)."""
    components = Components(workdir)
    pids = {name: proc.pid for name in components.names() if (proc := components.process(name))}
    used = {name: cpu_seconds(pid) for name, pid in {**processes, **pids}.items()}
    return {**used, "bench": time.process_time(), "stolen": stolen_seconds()}


def stolen_seconds() -> float:
    """CPU time the hypervisor took from this machine so far, over all its CPUs (/proc/stat's
    steal): when it grows during a burst, the burst ran on less than whole cores."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two ``burst_cpu`` readings."""
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
    operator's (or the floor's writers')."""
    return {
        "api_writes_per_job": round(sum(writes.values()) / jobs, 2),
        "api_writes_by_kind": {k: round(v / jobs, 2) for k, v in sorted(writes.items())},
    }


def burst(
    api: client.CustomObjectsApi,
    names: list[str],
    seen: RayJobWatch,
    created_one: Callable[[dict[str, Any]], None] | None = None,
    failed: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Create the jobs from 16 threads at once; each one's latency is from its create call
    returning to its RayJob appearing. ``created_one`` is given each job as created; a
    failure ``failed`` tells of (of whoever makes the RayJobs, when it is not the operator)
    ends the wait."""
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
        if failed is not None and (failure := failed()):
            raise RuntimeError(f"the RayJobs' writers failed: {failure}")
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
