"""What the operator process sets up around kopf (runtime.py, main.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

import kopf

from embedding_operator.main import EVENT_HANDLERS
from embedding_operator.runtime import QuietEventHandlers, start_handler_threads


def test_every_handler_thread_is_started_at_once() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        asyncio.run(start_handler_threads(pool, 8))
        assert len(pool._threads) == 8  # started, not at the first handlers' calls
        assert pool.submit(lambda: 42).result(timeout=5) == 42  # and free again


def test_a_smaller_pool_starts_the_threads_it_has() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        asyncio.run(start_handler_threads(pool, 4, timeout=0.2))
        assert len(pool._threads) == 2


def record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)


def test_only_the_event_handlers_success_lines_are_dropped() -> None:
    quiet = QuietEventHandlers(["follow", "rayjob_changed"])
    assert not quiet.filter(record(logging.INFO, "Handler 'follow' succeeded."))
    assert not quiet.filter(record(logging.INFO, "Handler 'rayjob_changed' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'submit' succeeded."))
    assert quiet.filter(record(logging.INFO, "RayJob ns/j submitted"))
    assert quiet.filter(record(logging.ERROR, "Handler 'follow' succeeded."))  # not INFO: kept
    assert quiet.filter(record(logging.ERROR, "Handler 'follow' failed with an exception"))


def test_the_quiet_handlers_are_kopfs_event_handlers() -> None:
    """kopf names a handler by its function: the ids it logs are these."""
    registry = kopf.get_default_registry()
    assert {h.id for h in registry._watching.get_all_handlers()} == set(EVENT_HANDLERS)
