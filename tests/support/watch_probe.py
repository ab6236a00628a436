"""A kopf operator that only records which RayJobs reach it, started with the real operator's
settings (``configure``): it is sent exactly what the operator's RayJob watch is sent.

``kopf run -m tests.support.watch_probe --standalone --namespace NS``; each RayJob event is
one line ``watch probe saw NS/NAME`` in its log.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from embedding_operator.kube import RAY_GROUP, RAY_PLURAL, RAY_VERSION
from embedding_operator.settings import configure

log = logging.getLogger("watch_probe")


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


@kopf.on.event(RAY_GROUP, RAY_VERSION, RAY_PLURAL)
async def saw(body: kopf.Body, **_: Any) -> None:
    """No filter of its own: whatever the apiserver sends is logged, in the stream's order."""
    log.info("watch probe saw %s/%s", body.metadata.namespace, body.metadata.name)
