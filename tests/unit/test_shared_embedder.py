"""One Embedder per process and settings for the UDF instances Daft makes in its threads
(embedding_job/run/shared_embedder.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

from embedding_job.model.embedder import EmbedderSettings
from embedding_job.run.shared_embedder import release, shared_embedder


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


def test_threads_asking_at_once_share_one_build_and_a_released_one_is_closed(tmp_path) -> None:
    settings = [EmbedderSettings(model_dir=str(tmp_path / "a")), EmbedderSettings("b")]
    build = SlowBuild()
    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(shared_embedder(settings, build)))
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
    assert all(one is got[0] for one in got)
    # The same settings as a tuple are the same key; other settings get their own.
    assert shared_embedder(tuple(settings), build) is got[0]
    other = shared_embedder(settings[0], build)
    assert other is not got[0] and len(build.builds) == 2
    release(settings)
    assert build.closed == [got[0].embedder]
    assert shared_embedder(settings, build) is not got[0] and len(build.builds) == 3
    release(settings)
    release(settings[0])
    release(settings[0])  # nothing left to release: no error
    assert len(build.closed) == 3
