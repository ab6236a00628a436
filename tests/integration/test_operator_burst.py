"""``make bench-operator``'s plumbing at a tiny size, and the write budget of a new job: what
the operator asks of the apiserver for each EmbeddingJob is what the burst figures rest on,
and what the floor (the same writes with no operator) makes too."""

from __future__ import annotations

from bench.operator_burst import run

#: Per new job, once its writes have settled: the benchmark's own create, then the operator's
#: (the job's identity, its RayJob, the status with kopf's record of the handled spec in it,
#: and the phase change's Event). No finalizer: the resync is one loop, not a kopf timer per
#: job; no PATCH of the object: kopf keeps its record in the status.
WRITE_BUDGET = {
    "POST embeddingjobs": 1.0,
    "POST serviceaccounts": 1.0,
    "POST roles": 1.0,
    "POST rolebindings": 1.0,
    "POST rayjobs": 1.0,
    "PATCH embeddingjobs/status": 1.0,
    "POST events": 1.0,
}


def test_a_small_burst_reports_latencies_writes_and_memory() -> None:
    result = run(jobs=3, rss_jobs=5, rounds=1)
    burst, floor = result["burst"], result["floor"]
    assert burst["jobs"] == floor["jobs"] == 3
    for figures in (burst, floor):
        assert 0 < figures["latency_p50_s"] <= figures["latency_p99_s"] <= figures["all_rayjobs_s"]
        assert figures["api_writes_by_kind"] == WRITE_BUDGET
        assert figures["api_writes_per_job"] == sum(WRITE_BUDGET.values())
        assert figures["cpu_s_by_process"]["kube-apiserver"] > 0
    assert burst["operator_cpu_s"] > 0 and burst["connections_discarded"] == 0
    # The floor made the operator's writes with no operator running, in a process of its own.
    assert "operator" not in floor["cpu_s_by_process"]
    assert floor["cpu_s_by_process"]["writers"] > 0
    assert result["vs_floor"] == {
        key: round(burst[key] / max(floor[key], 0.01), 2)
        for key in ("all_rayjobs_s", "latency_p50_s", "latency_p99_s")
    }
    assert [sorted(r) for r in result["rounds"]] == [["floor", "operator"]]
    memory = result["memory"]
    assert memory["jobs"] == 5 and 0 < memory["rss_mb"] <= memory["chart_limit_mb"]
    assert result["goals"]["rss_within_chart_limit"] is True
