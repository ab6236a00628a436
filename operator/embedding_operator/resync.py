"""The resync: every in-flight job reconciled again from its RayJob's current state, at a
steady pace, by one loop for the whole operator.

Why not kopf's ``@kopf.timer``: kopf puts a finalizer on every object a timer may run for, so
that it can stop the timer before the object goes. That is one more write (and one more watch
round trip) on every new job's way to its RayJob, and another write to take the finalizer off
when the job ends, while a resync needs nothing done before a job goes. One loop over the
jobs the watch has shown (``Followed``) needs no finalizer and no task per job.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from embedding_operator.status import in_flight

log = logging.getLogger(__name__)


class Followed:
    """The in-flight jobs, by uid, each as the watch last showed it; fed by every
    EmbeddingJob event, read by the loop."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def seen(self, body: Mapping[str, Any]) -> None:
        """The job as an event shows it: followed while in flight and not being deleted (its
        RayJob may already be gone: that is no failure), then let go."""
        uid = str(body["metadata"]["uid"])
        followed = in_flight(dict(body.get("status") or {}))
        followed = followed and not body["metadata"].get("deletionTimestamp")
        with self._lock:
            if followed:
                self._jobs[uid] = essentials(body)
            else:
                self._jobs.pop(uid, None)

    def gone(self, uid: str) -> None:
        with self._lock:
            self._jobs.pop(uid, None)

    def current(self, uid: str) -> dict[str, Any] | None:
        """The job as last seen, if it is still followed."""
        with self._lock:
            return self._jobs.get(uid)

    def uids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def count(self) -> int:
        with self._lock:
            return len(self._jobs)


def essentials(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a job's resync reads of it, copied: its identity and status, and of its spec the
    one field that changes and the models' names (not a copy of a spec of up to 320 KB per
    event)."""
    spec = body.get("spec") or {}
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    kept: dict[str, Any] = {"suspend": spec.get("suspend", False)}
    for field in ("model", "models"):
        if field in spec:
            kept[field] = copy.deepcopy(spec[field])
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": copy.deepcopy(metadata),
        "spec": kept,
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def pause_between(jobs: int, interval: float) -> float:
    """Seconds between two jobs' visits, so that a pass over all of them takes ``interval``:
    a restart or a burst of new jobs reads their RayJobs spread out, not all at once."""
    return interval / max(jobs, 1)


#: Seconds the loop waits at most before it reckons its pace again, or looks for jobs.
RECKON_SECONDS = 1.0


class Resync:
    """The loop: each pass visits every followed job once, ``pause_between`` apart, and hands
    it to ``reconcile``. A failure is logged and the job is tried again next pass."""

    def __init__(
        self,
        followed: Followed,
        interval: float,
        reconcile: Callable[[dict[str, Any]], None],
    ) -> None:
        self.followed = followed
        self.interval = interval
        self.reconcile = reconcile
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def start_once(self) -> None:
        """Start the loop, unless it runs, in the caller's context. Called from a kopf handler
        (the first EmbeddingJob event), the loop then posts Events (``kopf.event``) the way
        kopf's own handlers do: kopf gives that context to handlers only."""
        with self._starting:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            context = contextvars.copy_context()
            self._thread = threading.Thread(
                target=context.run, args=(self._run,), name="resync", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _wait_turn(self, since: float) -> bool:
        """Wait for the next visit: ``pause_between`` after the last one, reckoned again every
        second from the jobs followed now (a restart's jobs arrive one event at a time).
        True when the loop is stopped."""
        while True:
            due = since + pause_between(self.followed.count(), self.interval)
            left = due - time.monotonic()
            if left <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(left, RECKON_SECONDS)):
                return True

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            uids = self.followed.uids()  # a pass; a job that comes meanwhile is in the next
            if not uids and self._stop.wait(RECKON_SECONDS):
                return
            for uid in uids:
                if self._wait_turn(last):
                    return
                last = time.monotonic()
                body = self.followed.current(uid)  # None: finished or deleted meanwhile
                if body is None:
                    continue
                try:
                    self.reconcile(body)
                except Exception:  # one job's failure must not stop the loop
                    name = f"{body['metadata'].get('namespace')}/{body['metadata'].get('name')}"
                    log.warning("resync of %s failed; next pass retries", name, exc_info=True)
