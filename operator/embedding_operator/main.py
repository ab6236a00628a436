"""kopf entry point: ``kopf run -m embedding_operator.main`` (add ``--liveness`` in a pod)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from embedding_operator import handlers as handlers  # registers the handlers
from embedding_operator import kube, metrics
from embedding_operator.runtime import QuietEventHandlerSuccess, start_handler_threads
from embedding_operator.settings import HANDLER_THREADS, configure

#: The handlers kopf runs on every event of every job, by kopf's ids (the functions' names;
#: a unit test checks them against kopf's registry).
EVENT_HANDLERS = ("follow", "rayjob_changed")
#: One filter for the process: kopf retries a failed start-up, and a logger keeps a filter once.
QUIET = QuietEventHandlerSuccess(EVENT_HANDLERS)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)
    logging.getLogger("kopf.objects").addFilter(QUIET)  # kopf's logger of objects' lines
    kube.login(connections=HANDLER_THREADS + 1)  # the handler threads and the resync
    metrics.serve()
    await start_handler_threads(settings.execution.executor, HANDLER_THREADS)


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    handlers.RESYNC.stop()


@kopf.on.probe(id="now")
def now(**_: Any) -> str:
    """Liveness: the probe answers while the event loop is alive."""
    return datetime.now(UTC).isoformat()
