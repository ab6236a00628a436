"""The floor under the operator burst: every job's writes made directly, without an operator.

For each EmbeddingJob the burst creates, 32 threads (as many as the operator's handler
threads) make the writes the operator makes for it: its ServiceAccount, Role, RoleBinding and
RayJob, built by the operator's builders and created through its ``kube`` module, then its
status and one Event, copied from those the operator wrote for a job of its own burst. No
watch, no kopf, no operator process: the jobs go straight from their create call to these
threads. On a fresh control plane, with the same burst and the same watch timing each RayJob,
its latencies are the least that any operator making these writes could get on this machine.
"""

from __future__ import annotations

import copy
import queue
import threading
from typing import Any

from kubernetes import client

from embedding_job.api import parse_spec
from embedding_operator import kube
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import Owner, build_job_identity
from tests.support.kube import Cluster

#: As many as the operator's handler threads (settings.HANDLER_THREADS' default).
WRITER_THREADS = 32


class Writes:
    """What the operator wrote for one job of its burst, as templates for every job here."""

    def __init__(self, status: dict[str, Any], event: dict[str, Any], job_image: str):
        self.status, self.event, self.job_image = status, event, job_image

    def event_for(self, owner: Owner) -> dict[str, Any]:
        event = copy.deepcopy(self.event)
        event["metadata"] = {"generateName": f"{owner.name}.", "namespace": owner.namespace}
        event["involvedObject"].update(name=owner.name, uid=owner.uid, namespace=owner.namespace)
        return event


def operators_writes(cluster: Cluster, namespace: str, name: str, job_image: str) -> Writes:
    """The status and the Event the operator wrote for the job ``name`` of its burst."""
    ej = cluster.get("embeddingjob", name, namespace)
    assert ej is not None, f"EmbeddingJob {name} is gone"
    events = client.CoreV1Api().list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={ej['metadata']['uid']}"
    )
    assert len(events.items) == 1, f"{name}: {len(events.items)} Events, not one"
    event = client.ApiClient().sanitize_for_serialization(events.items[0])
    kept = ("type", "reason", "message", "source", "reportingComponent", "involvedObject")
    return Writes(ej["status"], {k: event[k] for k in kept if k in event}, job_image)


class Writers:
    """The threads that make each created job's writes, as the operator's handlers would."""

    def __init__(self, writes: Writes):
        self.writes = writes
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.failures: list[Exception] = []
        self.events = client.CoreV1Api()
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(WRITER_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (ej := self.jobs.get()) is not None:
            try:
                self._write(ej)
            except Exception as exc:  # noqa: BLE001 - the burst's wait raises it
                self.failures.append(exc)

    def _write(self, ej: dict[str, Any]) -> None:
        meta = ej["metadata"]
        owner = Owner(meta["name"], meta["namespace"], meta["uid"])
        spec = parse_spec(ej["spec"])
        for item in build_job_identity(owner, spec):
            kube.ensure_object(item)
        kube.create_or_get_rayjob(build_rayjob(owner, spec, Defaults(self.writes.job_image)))
        status = {**self.writes.status, "rayJobName": owner.name}
        kube.patch_embeddingjob_status(owner.namespace, owner.name, status)
        self.events.create_namespaced_event(owner.namespace, self.writes.event_for(owner))

    def close(self) -> None:
        for _ in self._threads:
            self.jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
