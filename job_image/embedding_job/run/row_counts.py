"""Counting embedded rows while the Daft query runs, on either runner.

Native runner: Daft's query subscriber reports the UDF operator's ``rows.out`` and the counters
the embedding workers add with ``daft.udf.metrics`` (failed rows, and each model's rows per
device and dtype), from threads or worker processes alike. Ray runner: the subscriber sees
nothing, so the workers add their batch counts to a small named Ray actor that the driver reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import daft
from daft.subscribers import Subscriber

RAY_NAMESPACE = "embedding-job"
UDF_NAME = "EmbedImages"
#: Daft UDF counters (native runner): failed rows, and rows done per "model/device/dtype".
FAILED_STAT = "embedding.rows_failed"
PRECISION_STAT = "embedding.precision."


def precision(model: int, device: str, dtype: str) -> str:
    """How a worker computed the job's model number ``model``, as counted: ``0/cuda/float16``."""
    return f"{model}/{device}/{dtype}"


def precision_used(
    rows_by_precision: dict[str, int], models: int
) -> list[tuple[str | None, str | None]]:
    """(device, dtype) the workers actually used, per model of the job; several (a mixed
    cluster) are joined with ", "; (None, None) for a model no worker ran."""
    used: list[tuple[str | None, str | None]] = []
    for model in range(models):
        prefix = f"{model}/"
        pairs = [
            key.removeprefix(prefix).split("/", 1)
            for key, rows in sorted(rows_by_precision.items())
            if rows and key.startswith(prefix)
        ]
        if not pairs:
            used.append((None, None))
            continue
        devices = ", ".join(dict.fromkeys(device for device, _ in pairs))
        dtypes = ", ".join(dict.fromkeys(dtype for _, dtype in pairs))
        used.append((devices, dtypes))
    return used


class NativeTracker(Subscriber):
    """Rows out of the embedding UDF, from Daft's live operator stats."""

    def __init__(self) -> None:
        self.alias = f"embedding-progress-{uuid.uuid4().hex[:8]}"
        self._nodes: set[int] = set()
        self._rows: dict[int, int] = {}
        self._failed: dict[int, int] = {}
        self._precision: dict[tuple[int, str], int] = {}
        daft.attach_subscriber(self.alias, self)

    def on_operator_start(self, event: Any) -> None:
        if UDF_NAME in event.name:
            self._nodes.add(event.node_id)

    def on_stats(self, event: Any) -> None:
        for node, stats in event.stats.items():
            if node not in self._nodes:
                continue
            if "rows.out" in stats:
                self._rows[node] = int(stats["rows.out"][1])
            if FAILED_STAT in stats:
                self._failed[node] = int(stats[FAILED_STAT][1])
            for name, (_, count) in stats.items():
                if name.startswith(PRECISION_STAT):
                    self._precision[(node, name.removeprefix(PRECISION_STAT))] = int(count)

    def on_query_start(self, query_id: str, metadata: Any) -> None:
        pass

    def on_query_end(self, query_id: str, result: Any) -> None:
        pass

    def snapshot(self) -> tuple[int, int | None]:
        return sum(self._rows.values()), sum(self._failed.values())

    def rows_by_precision(self) -> dict[str, int]:
        """Rows done per ``model/device/dtype`` (precision())."""
        totals: dict[str, int] = {}
        for (_, key), count in self._precision.items():
            totals[key] = totals.get(key, 0) + count
        return totals

    @property
    def actor_name(self) -> str | None:
        return None

    def close(self) -> None:
        daft.detach_subscriber(self.alias)


class RayTracker:
    """A named actor that embedding workers report (rows, failed) to."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self.actor_name = f"embedding-progress-{uuid.uuid4().hex[:8]}"
        self._actor: Any = (
            ray.remote(_Counter)
            .options(name=self.actor_name, namespace=RAY_NAMESPACE, num_cpus=0)
            .remote()
        )

    def snapshot(self) -> tuple[int, int | None]:
        try:
            done, failed = self._ray.get(self._actor.get.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - a missed snapshot only delays progress
            return 0, None
        return int(done), int(failed)

    def rows_by_precision(self) -> dict[str, int]:
        """Rows done per ``model/device/dtype`` (precision()); empty when the actor cannot
        say."""
        try:
            return dict(self._ray.get(self._actor.rows_by_precision.remote(), timeout=10))
        except Exception:  # noqa: BLE001 - the manifest then says it does not know
            return {}

    def close(self) -> None:
        self._ray.kill(self._actor)


class _Counter:
    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.precision: dict[str, int] = {}

    def add(self, done: int, failed: int, precisions: Sequence[str] = ()) -> None:
        """One call's rows (each counted once) and each model's precision (precision())."""
        self.done += done
        self.failed += failed
        for key in precisions:
            self.precision[key] = self.precision.get(key, 0) + done

    def get(self) -> tuple[int, int]:
        return self.done, self.failed

    def rows_by_precision(self) -> dict[str, int]:
        return self.precision


def worker_counter(actor_name: str | None) -> Any:
    """The counter handle inside an embedding worker, or None (native runner, or gone)."""
    if not actor_name:
        return None
    try:
        import ray

        if not ray.is_initialized():
            return None
        return ray.get_actor(actor_name, namespace=RAY_NAMESPACE)
    except Exception:  # noqa: BLE001 - progress is optional
        return None


def settle(sent: Any) -> None:
    """Wait (a while) for one call to the counter actor to be done."""
    try:
        import ray

        ray.get(sent, timeout=30)
    except Exception:  # noqa: BLE001 - progress is optional
        return
