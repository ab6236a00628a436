"""The floor under the operator burst: every job's writes made directly, without an operator.

One process for all the jobs (not the benchmark's, which times the burst) makes, for each
EmbeddingJob the burst creates, the writes the operator makes for it, with as many threads as
the operator's handler threads: its ServiceAccount, Role, RoleBinding and RayJob, built by
the operator's builders from the operator's own settings and created through its ``kube``
module; then, off that path as kopf does them (from its event loop, on connections of its
own), the status and the Event the operator wrote for a job of its own burst. No watch, no
kopf: the jobs go straight from their create call to these threads. On a fresh control plane,
with the same burst and the same watch timing each RayJob, its latencies are what an operator
making these writes would get on this machine if it learnt of each job for free and spent
nothing of its own.

A write the apiserver refuses ends the floor (``failed``); the operator would retry it.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import queue
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from embedding_job.api import GROUP, PLURAL, VERSION, parse_spec
from embedding_operator import kube
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import Owner, build_job_identity
from embedding_operator.settings import HANDLER_THREADS
from tests.support.kube import Cluster

#: The Event's fields that say what it is (the rest the apiserver fills in).
EVENT_FIELDS = ("type", "reason", "message", "source", "reportingComponent", "involvedObject")


@dataclass(frozen=True)
class Writes:
    """What the operator wrote for one job of its burst, as templates for every job here,
    and the settings it built the job's objects with."""

    status: dict[str, Any]
    event: dict[str, Any]
    defaults: Defaults

    def status_for(self, owner: Owner) -> dict[str, Any]:
        """The status, naming this job's RayJob."""
        return {**self.status, "rayJobName": owner.name}

    def event_for(self, owner: Owner) -> dict[str, Any]:
        """The Event, about this job."""
        event = copy.deepcopy(self.event)
        event["metadata"] = {"generateName": f"{owner.name}.", "namespace": owner.namespace}
        event["involvedObject"].update(name=owner.name, uid=owner.uid, namespace=owner.namespace)
        return event


def operators_writes(cluster: Cluster, namespace: str, name: str, defaults: Defaults) -> Writes:
    """The status and the Event the operator wrote for the job ``name`` of its burst."""
    ej = cluster.get("embeddingjob", name, namespace)
    assert ej is not None, f"EmbeddingJob {name} is gone"
    config.load_kube_config(str(cluster.kubeconfig))
    events = client.CoreV1Api().list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={ej['metadata']['uid']}"
    )
    assert len(events.items) == 1, f"{name}: {len(events.items)} Events, not one"
    event = client.ApiClient().sanitize_for_serialization(events.items[0])
    return Writes(ej["status"], {k: event[k] for k in EVENT_FIELDS if k in event}, defaults)


class Writers:
    """The process that makes each created job's writes; ``put`` each job as created."""

    def __init__(self, kubeconfig: str, writes: Writes):
        context = multiprocessing.get_context("spawn")  # not a fork of a threaded process
        self.jobs: multiprocessing.Queue[dict[str, Any] | None] = context.Queue()
        # Jobs left unread after a failure must not hold this process at its exit.
        self.jobs.cancel_join_thread()
        self._failures: multiprocessing.Queue[str] = context.Queue()
        self._failed: str | None = None
        self.process = context.Process(
            target=_write_jobs,
            args=(kubeconfig, writes, self.jobs, self._failures),
            name="floor-writers",
            daemon=True,
        )
        self.process.start()

    def put(self, ej: dict[str, Any]) -> None:
        """A job as created, to write for (none after a failure: nobody reads them)."""
        if self.failed() is None:
            self.jobs.put(ej)

    def failed(self) -> str | None:
        """The first write that failed, if one has."""
        if self._failed is None:
            alive = self.process.is_alive()
            with contextlib.suppress(queue.Empty):
                self._failed = self._failures.get_nowait()
            if self._failed is None and not alive:
                self._failed = f"the writers' process exited ({self.process.exitcode})"
        return self._failed

    def close(self) -> None:
        """Stop the process: at once after a failure, else once it has written every job."""
        if self._failed is None:
            self.jobs.put(None)
            self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)


def _write_jobs(
    kubeconfig: str,
    writes: Writes,
    jobs: multiprocessing.Queue[dict[str, Any] | None],
    failures: multiprocessing.Queue[str],
) -> None:
    """The writers' process: ``HANDLER_THREADS`` threads make each job's objects, as many
    again its status and Event; a None job stops them."""
    failures.cancel_join_thread()  # the parent reads the first only
    kube.login(HANDLER_THREADS, kubeconfig)
    # The status and Event's own connections, as kopf's session is the operator's.
    settings = client.Configuration.get_default_copy()
    settings.connection_pool_maxsize = HANDLER_THREADS
    reporting = client.ApiClient(settings)
    statuses, events = client.CustomObjectsApi(reporting), client.CoreV1Api(reporting)
    after: queue.Queue[Owner | None] = queue.Queue()

    def guarded(work: Any, *args: Any) -> bool:
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - reported, the benchmark stops
            failures.put(repr(exc))
            return False
        return True

    def objects(ej: dict[str, Any]) -> None:
        meta = ej["metadata"]
        owner = Owner(meta["name"], meta["namespace"], meta["uid"])
        spec = parse_spec(ej["spec"])
        for item in build_job_identity(owner, spec):
            kube.ensure_object(item)
        kube.create_or_get_rayjob(build_rayjob(owner, spec, writes.defaults))
        after.put(owner)

    def status_and_event(owner: Owner) -> None:
        statuses.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            owner.namespace,
            PLURAL,
            owner.name,
            {"status": writes.status_for(owner)},
        )
        events.create_namespaced_event(owner.namespace, writes.event_for(owner))

    def handler() -> None:
        while (ej := jobs.get()) is not None and guarded(objects, ej):
            pass
        jobs.put(None)  # the next thread stops too

    def reporter() -> None:
        while (owner := after.get()) is not None and guarded(status_and_event, owner):
            pass

    handlers = [threading.Thread(target=handler) for _ in range(HANDLER_THREADS)]
    reporters = [threading.Thread(target=reporter) for _ in range(HANDLER_THREADS)]
    for thread in (*handlers, *reporters):
        thread.start()
    for thread in handlers:
        thread.join()
    for _ in reporters:
        after.put(None)
    for thread in reporters:
        thread.join()
