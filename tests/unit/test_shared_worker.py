"""One embedding worker per process and run for the UDF instances Daft makes in its threads
(embedding_job/run/shared_worker.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from embedding_job.api import DownloadSpec
from embedding_job.io.fetch import FetchSettings
from embedding_job.model.embedder import EmbedderSettings
from embedding_job.run.shared_worker import release, shared_worker


class SlowBuild:
    """Stands in for Embedder's constructor: counts the builds; each one waits until released,
    so that every thread asks while the first build is still running."""

    def __init__(self) -> None:
        self.builds: list[Any] = []
        self.closed: list[Any] = []
        self.go = threading.Event()

    def __call__(self, settings: Any) -> Any:
        self.builds.append(settings)
        self.go.wait(timeout=30)
        builder = self

        class Built:
            def close(self) -> None:
                builder.closed.append(self)

        return Built()


def test_threads_of_a_run_share_one_build_and_a_released_run_builds_no_more() -> None:
    settings = [EmbedderSettings(model_dir="a"), EmbedderSettings(model_dir="b")]
    reads = FetchSettings(DownloadSpec())
    build = SlowBuild()
    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(shared_worker("r1", settings, reads, build)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not build.builds and time.monotonic() < deadline:
        time.sleep(0.01)  # the first build has started; the other threads ask meanwhile
    build.go.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(build.builds) == 1 and len(got) == 4
    assert all(one is got[0] for one in got)  # one Embedder, one Fetcher, one turn
    # Another run (a second job in the same process) has its own, even with the same settings.
    other = shared_worker("r2", settings, reads, build)
    assert other is not got[0] and len(build.builds) == 2
    release("r1")
    assert build.closed == [got[0].embedder]
    with pytest.raises(RuntimeError, match="run r1 has ended"):
        shared_worker("r1", settings, reads, build)  # a straggler of the ended query
    assert len(build.builds) == 2
    assert shared_worker("r2", settings, reads, build) is other
    release("r2")
    release("r2")  # nothing left to release: no error
    assert build.closed == [got[0].embedder, other.embedder]


def test_a_release_waits_for_the_call_that_has_the_turn() -> None:
    build = SlowBuild()
    build.go.set()
    worker = shared_worker(
        "r3", EmbedderSettings(model_dir="a"), FetchSettings(DownloadSpec()), build
    )
    worker.turn.acquire()
    releasing = threading.Thread(target=release, args=("r3",))
    releasing.start()
    releasing.join(timeout=0.5)
    assert releasing.is_alive() and build.closed == []  # still waiting for the turn
    worker.turn.release()
    releasing.join(timeout=30)
    assert build.closed == [worker.embedder]
