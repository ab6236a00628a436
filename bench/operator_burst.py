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
control plane with each job's writes, the operator's own, made directly by a process of
threads with no operator running. ``--rounds`` pairs of bursts (operator and floor, back to
back: the machine's speed drifts) give the medians, and ``vs_floor`` the median of the pairs'
ratios. Prints one JSON object (and writes ``--out``). The measures: burst_probes.py.

Goals (issue 13): 200 jobs → every RayJob within 5 s, p99 ≤ 2 s; RSS within the chart's
memory limit (``resources.limits.memory``) at 1,000 jobs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from bench.burst_probes import (
    NAMESPACE,
    RayJobWatch,
    burst,
    burst_cpu,
    cpu_used,
    memory_mb,
    quiet_writes,
    writes_per_job,
)
from bench.machine import git_commit
from bench.operator_floor import Writers, Writes, operators_writes
from embedding_job.api import quantity_value
from embedding_operator.settings import operator_defaults
from tests.support.helm import CHART
from tests.support.kube import Cluster, Operator, start_cluster, stop_cluster


def chart_memory_limit_mb() -> float:
    """The operator's memory limit in the chart's default values (``resources.limits``)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return float(quantity_value(values["resources"]["limits"]["memory"])) / 2**20


#: The figures each round gives, of which the result has the medians.
TIMES = ("create_calls_s", "all_rayjobs_s", "latency_p50_s", "latency_p99_s", "latency_max_s")
#: Those compared with the floor's.
COMPARED = ("all_rayjobs_s", "latency_p50_s", "latency_p99_s")


def medians(figures: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    """Each key's median over the rounds."""
    return {key: round(statistics.median(f[key] for f in figures), 2) for key in keys}


def run(jobs: int, rss_jobs: int, rounds: int = 3) -> dict[str, Any]:
    """``rounds`` pairs of bursts, the operator's and the floor's (with the operator's
    writes), back to back (the machine's speed drifts), which of the two goes first
    alternating; the operator's memory in the first. Times are the rounds' medians,
    ``vs_floor`` the median of each round's ratio."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    paired: list[dict[str, Any]] = []
    operator, writes, memory = run_operator(jobs, rss_jobs)
    paired.append({"operator": operator, "floor": run_floor(jobs, writes)})
    for number in range(1, rounds):
        if number % 2:  # the floor first
            floor = run_floor(jobs, writes)
            operator = run_operator(jobs, jobs + 1)[0]
        else:
            operator = run_operator(jobs, jobs + 1)[0]
            floor = run_floor(jobs, writes)
        paired.append({"operator": operator, "floor": floor})
    ours, floor = (medians([r[side] for r in paired], TIMES) for side in ("operator", "floor"))
    ratios = [
        {key: r["operator"][key] / max(r["floor"][key], 0.01) for key in COMPARED} for r in paired
    ]
    return {
        "burst": {"jobs": jobs, **ours, **_writes_and_cpu(paired[0]["operator"])},
        "floor": {"jobs": jobs, **floor, **_writes_and_cpu(paired[0]["floor"])},
        "vs_floor": medians(ratios, COMPARED),
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
    seen: RayJobWatch | None = None
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator.start()
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.CustomObjectsApi()
        seen = RayJobWatch(api)
        burst(api, ["warm-up"], seen)  # the operator is up and watching
        assert operator.process is not None
        processes = {"operator": operator.process.pid}
        # The warm-up job's last writes (its status, kopf's record, its Event) land first.
        writes_before = quiet_writes(cluster)
        cpu_before = burst_cpu(workdir, processes)
        result = burst(api, [f"j{i:04d}" for i in range(jobs)], seen)
        # Who computed what while the burst ran: the operator, the apiserver...
        used = cpu_used(cpu_before, burst_cpu(workdir, processes))
        burst_writes = quiet_writes(cluster) - writes_before
        result["operator_cpu_s"] = used["operator"]
        result["cpu_s_by_process"] = used
        result.update(writes_per_job(burst_writes, jobs))
        # urllib3 warns for each connection it closes because its pool is full: each costs a
        # new TLS connection for the next call (0 when every handler thread keeps its own).
        log = operator.log.read_text(errors="replace")
        result["connections_discarded"] = log.count("Connection pool is full")
        writes = operators_writes(cluster, NAMESPACE, "j0000", operator_defaults(operator.env))
        rest = [f"r{i:04d}" for i in range(max(0, rss_jobs - jobs - 1))]
        if rest:
            burst(api, rest, seen)
        rss, peak = memory_mb(operator.process.pid)
        limit = chart_memory_limit_mb()
        memory = {
            "jobs": 1 + jobs + len(rest),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(peak, 1),
            "chart_limit_mb": limit,
        }
        return result, writes, memory
    finally:
        if seen is not None:
            seen.stop()
        operator.stop()
        stop_cluster(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def run_floor(jobs: int, writes: Writes) -> dict[str, Any]:
    """The burst of ``jobs`` on a fresh control plane, each job's writes made directly by
    ``Writers`` (operator_floor.py), no operator running."""
    workdir = Path(tempfile.mkdtemp(prefix="embop-floor-"))
    cluster = start_cluster(workdir)
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.CustomObjectsApi()
        writers = Writers(str(cluster.kubeconfig), writes)
        assert writers.process.pid is not None
        processes = {"writers": writers.process.pid}
        seen = RayJobWatch(api)
        try:
            burst(api, ["warm-up"], seen, writers.put, writers.failed)
            writes_before = quiet_writes(cluster)
            cpu_before = burst_cpu(workdir, processes)
            names = [f"j{i:04d}" for i in range(jobs)]
            result = burst(api, names, seen, writers.put, writers.failed)
            used = cpu_used(cpu_before, burst_cpu(workdir, processes))
            burst_writes = quiet_writes(cluster) - writes_before
            if failure := writers.failed():  # a status or Event after the last RayJob
                raise RuntimeError(f"the floor's writers failed: {failure}")
        finally:
            seen.stop()
            writers.close()
        result["cpu_s_by_process"] = used
        return {**result, **writes_per_job(burst_writes, jobs)}
    finally:
        stop_cluster(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def rounds_count(text: str) -> int:
    """--rounds: a whole number, at least 1."""
    rounds = int(text)
    if rounds < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_burst", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200, help="EmbeddingJobs in the burst")
    parser.add_argument("--rss-jobs", type=int, default=1000, help="jobs in all for the RSS")
    parser.add_argument("--rounds", type=rounds_count, default=3, help="operator/floor pairs")
    parser.add_argument("--out", type=Path, default=Path("bench-operator.json"))
    args = parser.parse_args(argv)
    result = {"commit": git_commit(), **run(args.jobs, args.rss_jobs, args.rounds)}
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
