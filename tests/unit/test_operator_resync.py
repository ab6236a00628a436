"""The resync loop (operator/embedding_operator/resync.py): which jobs it follows, its pace,
and that one job's failure never stops it."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from embedding_operator.resync import (
    RECKON_SECONDS,
    Followed,
    Resync,
    essentials,
    pause_between,
)
from tests.support.waiting import wait_for


def job(uid: str, phase: str | None = "Running", ray_job: str | None = "rj") -> dict[str, Any]:
    status = {"phase": phase, "rayJobName": ray_job} if phase else {}
    return {
        "apiVersion": "embedding.dev/v1alpha1",
        "kind": "EmbeddingJob",
        "metadata": {"uid": uid, "name": uid, "namespace": "ns", "resourceVersion": "7"},
        "spec": {"suspend": False, "models": [{"name": "a/b"}]},
        "status": status,
    }


def test_only_jobs_in_flight_are_followed_each_as_last_seen() -> None:
    followed = Followed()
    followed.seen(job("new", phase=None))  # not submitted yet: nothing to resync
    followed.seen(job("a"))
    followed.seen(job("b", phase="Submitted"))
    followed.seen(job("c", phase="Submitted", ray_job=None))  # waiting for a namesake
    going = job("d")
    going["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"  # its RayJob may be gone
    followed.seen(going)
    assert sorted(followed.uids()) == ["a", "b"] and followed.count() == 2
    later = job("b")
    followed.seen(later)
    later["status"]["phase"] = "changed after the event"  # a copy is kept, not the event's
    assert followed.current("b") == job("b")
    followed.seen(job("a", phase="Succeeded"))  # finished: let go
    followed.gone("b")  # deleted
    assert followed.uids() == [] and followed.current("a") is None


def test_what_is_kept_of_a_job_is_what_its_resync_reads() -> None:
    body = job("big")
    body["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    body["spec"] |= {"input": {"uri": "s3://b/" + "x" * 2000}, "model": {"name": "c/d"}}
    kept = essentials(body)
    assert kept["spec"] == {"suspend": False, "model": {"name": "c/d"}, "models": [{"name": "a/b"}]}
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == "7" and kept["status"] == body["status"]
    assert (kept["apiVersion"], kept["kind"]) == (body["apiVersion"], body["kind"])


def test_a_pass_takes_one_interval_whatever_the_number_of_jobs() -> None:
    assert pause_between(0, 30.0) == 30.0
    assert pause_between(1, 30.0) == 30.0
    assert pause_between(1000, 30.0) == 0.03


def test_every_job_is_visited_each_pass_and_a_failing_one_stops_nothing() -> None:
    followed = Followed()
    for uid in ("ok-1", "broken", "ok-2"):
        followed.seen(job(uid))
    visits: Counter[str] = Counter()
    lock = threading.Lock()

    def reconcile(body: dict[str, Any]) -> None:
        with lock:
            visits[body["metadata"]["uid"]] += 1
        if body["metadata"]["uid"] == "broken":
            raise RuntimeError("the apiserver said 500")

    loop = Resync(followed, interval=0.06, reconcile=reconcile)
    loop.start_once()
    loop.start_once()  # idempotent: one loop
    try:
        wait_for(lambda: min(visits.values(), default=0) >= 3, timeout=10, message="3 passes")
        followed.seen(job("ok-1", phase="Failed"))  # finished: no longer visited
        seen = visits["ok-1"]
        wait_for(lambda: visits["ok-2"] >= seen + 3, timeout=10, message="3 more passes")
        assert visits["ok-1"] <= seen + 1  # at most the visit already under way
    finally:
        loop.stop()
    assert not any(t.name == "resync" for t in threading.enumerate())  # stopped


def test_jobs_that_arrive_after_the_loop_starts_are_paced_as_they_come() -> None:
    # A restart: the loop starts with the first job's event, the others arrive just after.
    # Paced by the one job it had at first, it would wait a whole interval before the next
    # (8 s here for all ten); reckoned again as they come, each is seen within the first
    # interval and a reckoning (5 s).
    interval = 4.0
    followed = Followed()
    followed.seen(job("first"))
    visited: set[str] = set()
    loop = Resync(followed, interval, reconcile=lambda b: visited.add(b["metadata"]["uid"]))
    loop.start_once()
    try:
        for i in range(9):
            followed.seen(job(f"later-{i}"))
        bound = interval + RECKON_SECONDS + 1.5
        wait_for(lambda: len(visited) == 10, timeout=bound, message="every job visited")
    finally:
        loop.stop()
