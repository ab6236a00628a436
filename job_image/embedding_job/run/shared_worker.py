"""One embedding worker per process and run, however many UDF instances Daft makes of it.

On Daft's native runner the embedding UDF runs in the job's own process (pipeline.Workers),
in Daft's threads, one instance per thread that Daft gives it (the pipeline asks for two:
``pipeline.in_process_cpus``). The instances of one run share its Embedder (built once: the
second waits for the first's load rather than loading the model again) and its Fetcher (one
breaker per host, one connection pool), and their calls take turns on the Embedder: a call
waiting for its turn has its rows and its first images started, so the model never waits for
Daft to hand over the next batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from embedding_job.io.fetch import Fetcher, FetchSettings
from embedding_job.model.embedder import Embedder, EmbedderSettings

Settings = EmbedderSettings | Sequence[EmbedderSettings]


@dataclass
class SharedWorker:
    """A run's Embedder and Fetcher in this process, and the lock its calls take turns with."""

    embedder: Embedder
    fetcher: Fetcher
    turn: threading.Lock = field(default_factory=threading.Lock)


_GUARD = threading.Lock()
_BY_RUN: dict[str, SharedWorker] = {}
_ENDED: set[str] = set()


def shared_worker(
    run: str,
    settings: Settings,
    reads: FetchSettings,
    build: Callable[[Settings], Embedder] = Embedder,
) -> SharedWorker:
    """This process's worker of ``run`` (a query's id), built by ``build`` on first use.
    Raises RuntimeError for a run already released: its query has ended."""
    with _GUARD:
        if run in _ENDED:
            raise RuntimeError(f"embedding run {run} has ended: its worker is closed")
        shared = _BY_RUN.get(run)
        if shared is None:
            shared = SharedWorker(build(settings), Fetcher(reads))
            _BY_RUN[run] = shared
        return shared


def release(run: str) -> None:
    """Close and forget this process's worker of ``run`` once its query has ended (a process
    running several jobs, as a test run does, keeps no model of a past one). A call still
    running (a failed query's) finishes its turn first; none can start after."""
    with _GUARD:
        _ENDED.add(run)
        shared = _BY_RUN.pop(run, None)
    if shared is not None:
        with shared.turn:
            shared.embedder.close()
