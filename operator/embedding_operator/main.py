"""kopf entry point: ``kopf run -m embedding_operator.main`` (add ``--liveness`` in a pod)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from embedding_operator import handlers as handlers  # registers the handlers
from embedding_operator import kube, metrics
from embedding_operator.settings import HANDLER_THREADS, configure


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)
    kube.login(connections=HANDLER_THREADS + 1)  # the handler threads and the resync
    metrics.serve()


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    handlers.RESYNC.stop()


@kopf.on.probe(id="now")
def now(**_: Any) -> str:
    """Liveness: the probe answers while the event loop is alive."""
    return datetime.now(UTC).isoformat()
