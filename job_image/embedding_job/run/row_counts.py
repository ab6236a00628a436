"""Counting embedded rows while the Daft query runs, on either runner.

Native runner: Daft's query subscriber reports the UDF operator's ``rows.out``. Ray runner: the
subscriber sees nothing, so the embedding workers add their batch counts to a small named Ray
actor that the driver reads.
"""

from __future__ import annotations

import uuid
from typing import Any

import daft
from daft.subscribers import Subscriber

RAY_NAMESPACE = "embedding-job"
UDF_NAME = "EmbedImages"


class NativeTracker(Subscriber):
    """Rows out of the embedding UDF, from Daft's live operator stats."""

    def __init__(self) -> None:
        self.alias = f"embedding-progress-{uuid.uuid4().hex[:8]}"
        self._nodes: set[int] = set()
        self._rows: dict[int, int] = {}
        daft.attach_subscriber(self.alias, self)

    def on_operator_start(self, event: Any) -> None:
        if UDF_NAME in event.name:
            self._nodes.add(event.node_id)

    def on_stats(self, event: Any) -> None:
        for node, stats in event.stats.items():
            if node in self._nodes and "rows.out" in stats:
                self._rows[node] = int(stats["rows.out"][1])

    def on_query_start(self, query_id: str, metadata: Any) -> None:
        pass

    def on_query_end(self, query_id: str, result: Any) -> None:
        pass

    def snapshot(self) -> tuple[int, int | None]:
        return sum(self._rows.values()), None

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

    def close(self) -> None:
        self._ray.kill(self._actor)


class _Counter:
    def __init__(self) -> None:
        self.done = 0
        self.failed = 0

    def add(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed

    def get(self) -> tuple[int, int]:
        return self.done, self.failed


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
