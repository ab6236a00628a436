"""The resync loop (operator/embedding_operator/resync.py): which jobs it follows, its pace,
and that one job's failure never stops it."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from embedding_operator.resync import Followed, Resync, pause_between
from tests.support.waiting import wait_for


def job(uid: str, phase: str | None = "Running", ray_job: str | None = "rj") -> dict[str, Any]:
    status = {"phase": phase, "rayJobName": ray_job} if phase else {}
    return {"metadata": {"uid": uid, "name": uid, "namespace": "ns"}, "status": status}


def test_only_jobs_in_flight_are_followed_each_as_last_seen() -> None:
    followed = Followed()
    followed.seen(job("new", phase=None))  # not submitted yet: nothing to resync
    followed.seen(job("a"))
    followed.seen(job("b", phase="Submitted"))
    followed.seen(job("c", phase="Submitted", ray_job=None))  # waiting for a namesake
    assert sorted(followed.uids()) == ["a", "b"]
    later = job("b")
    followed.seen(later)
    later["status"]["phase"] = "changed after the event"  # a copy is kept, not the event's
    assert followed.current("b") == job("b")
    followed.seen(job("a", phase="Succeeded"))  # finished: let go
    followed.gone("b")  # deleted
    assert followed.uids() == [] and followed.current("a") is None


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
