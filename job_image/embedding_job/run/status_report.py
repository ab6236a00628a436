"""Progress from a running job to its own EmbeddingJob's status.

The operator gives each job a ServiceAccount whose Role may only ``get``/``patch`` the status of
that one EmbeddingJob (``resourceNames``). The job patches ``status.progress`` every few seconds
and ``status.output`` (the manifest) at the end. Reporting is best effort: a job that cannot
report still embeds, and the operator never waits for a report.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from embedding_job.api import (
    GROUP,
    JOB_NAME_ENV,
    JOB_NAMESPACE_ENV,
    JOB_UID_ENV,
    PLURAL,
    VERSION,
    EmbeddingJobStatus,
    EmbeddingOutput,
    JobErrorReport,
    OutputStatus,
    Progress,
    timestamp,
)

log = logging.getLogger(__name__)

_RETRY_STATUSES = (429, 500, 502, 503, 504)


def output_status(manifest: dict[str, Any]) -> OutputStatus:
    """``status.output`` from a job manifest (``_manifest.json``)."""
    output = manifest.get("output") or {}
    fields = {
        "uri": output.get("uri"),
        "format": output.get("format"),
        "files": manifest.get("files"),
        "rows": manifest.get("rowsOut"),
        "rows_failed": manifest.get("rowsFailed"),
        "rows_skipped": manifest.get("rowsSkipped"),
        "embedding_dim": manifest.get("embeddingDim"),
        "model": manifest.get("model"),
        "device": manifest.get("device"),
        "dtype": manifest.get("dtype"),
        "pooling": manifest.get("pooling"),
        "embeddings": [_embedding_output(e) for e in manifest.get("embeddings") or []] or None,
    }
    # A key the manifest lacks is left out of the patch, not written as null (which deletes).
    return OutputStatus(**{name: value for name, value in fields.items() if value is not None})


def _embedding_output(entry: dict[str, Any]) -> EmbeddingOutput:
    """One model's entry of the manifest's ``embeddings``, as the status has it."""
    fields = {
        "column": entry.get("column"),
        "model": entry.get("model"),
        "embedding_dim": entry.get("embeddingDim"),
        "device": entry.get("device"),
        "dtype": entry.get("dtype"),
        "pooling": entry.get("pooling"),
    }
    return EmbeddingOutput(**{name: value for name, value in fields.items() if value is not None})


class StatusReporter:
    """Patches one EmbeddingJob's status subresource; never raises into the job."""

    def __init__(self, namespace: str, name: str, api: Any, uid: str | None = None):
        self.namespace, self.name, self.api, self.uid = namespace, name, api, uid
        self._warned = False
        self._detached = False
        self._finished = False
        # One write at a time: a progress patch still retrying never lands after the result.
        self._lock = threading.Lock()

    def detach(self) -> None:
        """The EmbeddingJob of that name is another job (deleted and re-created): write to it
        no more."""
        self._detached = True

    def is_other_job(self, resource: dict[str, Any]) -> bool:
        """Whether ``resource`` (this EmbeddingJob as read now) is another job of the same
        name: deleted and re-created since this run started (another uid)."""
        return bool(self.uid) and (resource.get("metadata") or {}).get("uid") != self.uid

    def patch(self, status: EmbeddingJobStatus, final: bool = False) -> bool:
        """Merge the fields set in ``status`` into the resource's status; False (logged once)
        on failure. After a ``final`` write (the result), progress is no longer written."""
        with self._lock:
            if self._detached or (self._finished and status.progress and not final):
                return False
            self._finished = self._finished or final
            return self._write(status)

    def _write(self, status: EmbeddingJobStatus) -> bool:
        try:
            if self.uid and self._other_job():
                log.warning(
                    "%s/%s is another EmbeddingJob now (not uid %s): no more reports",
                    self.namespace, self.name, self.uid,
                )  # fmt: skip
                self.detach()
                return False
            self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, {"status": status.to_patch()}
            )
        except Exception as exc:  # noqa: BLE001 - reporting must never fail the job
            if not self._warned:
                log.warning("cannot report progress to %s/%s: %s", self.namespace, self.name, exc)
                self._warned = True
            return False
        return True

    def _other_job(self) -> bool:
        """Whether the EmbeddingJob of this name is not this run's, read just before each
        write: the apiserver ignores a uid in a status patch. (A re-creation between the read
        and the write, one request's time, is not seen.) A read that fails (an identity that
        may only patch) says nothing: the write goes ahead."""
        try:
            current = self.api.get_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except Exception:  # noqa: BLE001 - unknown is not another job
            return False
        return self.is_other_job(current)

    def progress(
        self,
        done: int,
        failed: int | None,
        skipped: int,
        total: int | None,
        rate: float,
        remaining: int | None = None,
    ) -> bool:
        progress = Progress(
            rows_done=done,
            rows_skipped=skipped,
            images_per_second=round(rate, 1),
            updated_at=timestamp(),
        )
        if failed is not None:
            progress.rows_failed = failed
        if total is not None:
            progress.rows_total = total
        if remaining is not None:
            progress.remaining_seconds = remaining
        return self.patch(EmbeddingJobStatus(progress=progress))

    def result(self, manifest: dict[str, Any]) -> bool:
        done = manifest["rowsEmbedded"] + manifest["rowsFailed"]
        progress = Progress(
            rows_done=done,
            rows_failed=manifest["rowsFailed"],
            rows_skipped=manifest["rowsSkipped"],
            rows_total=manifest["rowsIn"],
            remaining_seconds=0,
            updated_at=timestamp(),
        )
        status = EmbeddingJobStatus(output=output_status(manifest), progress=progress)
        return self.patch(status, final=True)

    def started(self) -> bool:
        """A new attempt: forget the error an earlier attempt reported."""
        return self.patch(EmbeddingJobStatus(job_error=None))

    def failed(self, reason: str, message: str) -> bool:
        """The job's own account of why it fails, read by the operator once Ray says so."""
        report = JobErrorReport(reason=reason, message=message, time=timestamp())
        return self.patch(EmbeddingJobStatus(job_error=report))


def error_reason(exc: BaseException) -> str:
    """CamelCase reason for an exception: ModelNotFoundError → ModelNotFound."""
    name = type(exc).__name__
    if name == "JobError":
        return "JobFailed"
    if name == "ConfigError":
        return "InvalidConfig"
    return name.removesuffix("Error") if name.endswith("Error") else name


def api_retries(retry: Any) -> Any:
    """A busy or restarting apiserver (429, 5xx, a refused connection) is waited out, with
    backoff, rather than costing the job its config or a report. Every method: urllib3 retries
    only idempotent ones by default, and a status merge patch is idempotent."""
    return retry(total=4, backoff_factor=1, status_forcelist=_RETRY_STATUSES, allowed_methods=None)


def from_env(env: dict[str, str] | None = None) -> StatusReporter | None:
    """The reporter for the EmbeddingJob named in the environment (set by the operator)."""
    env = dict(os.environ) if env is None else env
    name, namespace = env.get(JOB_NAME_ENV), env.get(JOB_NAMESPACE_ENV)
    if not name or not namespace:
        return None
    try:
        from kubernetes import client, config
        from urllib3.util.retry import Retry

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    except Exception as exc:  # noqa: BLE001 - no credentials: run without reporting
        log.warning("no Kubernetes credentials, progress is not reported: %s", exc)
        return None
    settings = client.Configuration.get_default_copy()
    settings.retries = api_retries(Retry)
    api = client.CustomObjectsApi(client.ApiClient(settings))
    return StatusReporter(namespace, name, api, env.get(JOB_UID_ENV) or None)


class Throughput:
    """Rows per second over the last ``window`` seconds of progress samples: the speed a user
    watching the job sees now, not an average that still counts the model's loading."""

    def __init__(self, window: float = 60.0):
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, when: float, done: int) -> None:
        """A sample: ``done`` rows at monotonic time ``when``."""
        self._samples.append((when, done))
        # Keep one sample at or before the window's start, so the window is always full.
        while len(self._samples) > 2 and self._samples[1][0] <= when - self.window:
            self._samples.popleft()

    def rate(self) -> float:
        """Rows per second between the window's oldest and newest sample (0 with one)."""
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        return (last - first) / (end - start) if end > start else 0.0


def remaining_seconds(done: int, skipped: int, total: int | None, rate: float) -> int | None:
    """Seconds until every input row is done at ``rate``; None without a total or a rate."""
    if total is None or rate <= 0:
        return None
    return math.ceil(max(0, total - skipped - done) / rate)


class ProgressLoop:
    """Reports ``snapshot()`` every ``interval`` seconds on a daemon thread."""

    def __init__(
        self,
        reporter: StatusReporter,
        snapshot: Callable[[], tuple[int, int | None]],
        skipped: int = 0,
        total: int | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.reporter, self.snapshot = reporter, snapshot
        self.skipped, self.total, self.interval = skipped, total, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._throughput, self._clock = Throughput(), clock

    def __enter__(self) -> ProgressLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def report(self) -> None:
        done, failed = self.snapshot()
        self._throughput.add(self._clock(), done)
        rate = self._throughput.rate()
        remaining = remaining_seconds(done, self.skipped, self.total, rate)
        self.reporter.progress(done, failed, self.skipped, self.total, rate, remaining)

    def _run(self) -> None:
        self.report()
        while not self._stop.wait(self.interval):
            self.report()
