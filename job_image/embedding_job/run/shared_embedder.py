"""One Embedder per process and settings, however many UDF instances Daft makes of it.

On Daft's native runner the embedding UDF runs in the job's own process (pipeline.Workers):
Daft then calls it from several of its threads and may build one instance per thread. Each
instance takes the process's one Embedder of its settings, built once (a second instance waits
for the first's load rather than loading the model again), and its calls take turns on it: a
call waiting for its turn already holds its rows, so nothing crosses a process boundary and the
model never waits for Daft to hand over the next batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from embedding_job.model.embedder import Embedder, EmbedderSettings

Settings = EmbedderSettings | Sequence[EmbedderSettings]


@dataclass
class SharedEmbedder:
    """An Embedder and the lock its calls take turns with."""

    embedder: Embedder
    turn: threading.Lock = field(default_factory=threading.Lock)


_BUILDING = threading.Lock()
_BY_SETTINGS: dict[tuple[EmbedderSettings, ...], SharedEmbedder] = {}


def settings_key(settings: Settings) -> tuple[EmbedderSettings, ...]:
    """The settings as one hashable value: a model's, or several models' in the job's order."""
    return (settings,) if isinstance(settings, EmbedderSettings) else tuple(settings)


def shared_embedder(
    settings: Settings, build: Callable[[Settings], Embedder] = Embedder
) -> SharedEmbedder:
    """This process's Embedder of ``settings``, built by ``build`` on first use."""
    key = settings_key(settings)
    with _BUILDING:
        shared = _BY_SETTINGS.get(key)
        if shared is None:
            shared = SharedEmbedder(build(settings))
            _BY_SETTINGS[key] = shared
        return shared


def release(settings: Settings) -> None:
    """Close and forget this process's Embedder of ``settings``, once the query that used it has
    ended (a process running several jobs, as a test run does, keeps no model of a past one)."""
    with _BUILDING:
        shared = _BY_SETTINGS.pop(settings_key(settings), None)
    if shared is not None:
        with shared.turn:
            shared.embedder.close()
