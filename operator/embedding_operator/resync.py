"""The resync: every in-flight job reconciled again from its RayJob's current state, at a
steady pace, by one loop for the whole operator.

Why not kopf's ``@kopf.timer``: kopf puts a finalizer on every object a timer may run for, so
that it can stop the timer before the object goes. That is one more write (and one more watch
round trip) on every new job's way to its RayJob, and another write to take the finalizer off
when the job ends, while a resync has nothing to stop: it only reads. One loop over the jobs
the watch has shown (``Followed``) needs no finalizer and no task per job.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
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
        """The job as an event shows it: followed while in flight, then let go."""
        uid = str(body["metadata"]["uid"])
        with self._lock:
            if in_flight(dict(body.get("status") or {})):
                self._jobs[uid] = copy.deepcopy(dict(body))
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


def pause_between(jobs: int, interval: float) -> float:
    """Seconds between two jobs of a pass, so that a pass takes ``interval``: a restart or a
    burst of new jobs reads their RayJobs spread out, not all at once."""
    return interval / max(jobs, 1)


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
            if self._thread is not None:
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

    def _run(self) -> None:
        while not self._stop.is_set():
            uids = self.followed.uids()
            pause = pause_between(len(uids), self.interval)
            if not uids and self._stop.wait(pause):
                return
            for uid in uids:
                if self._stop.wait(pause):
                    return
                body = self.followed.current(uid)  # None: finished or deleted meanwhile
                if body is None:
                    continue
                try:
                    self.reconcile(body)
                except Exception:  # one job's failure must not stop the loop
                    name = f"{body['metadata'].get('namespace')}/{body['metadata'].get('name')}"
                    log.warning("resync of %s failed; next pass retries", name, exc_info=True)
