"""What the operator process sets up around kopf (runtime.py, main.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import kopf
import pytest
from kopf._core.actions import loggers as kopf_loggers

from embedding_operator import main
from embedding_operator.main import EVENT_HANDLERS
from embedding_operator.runtime import QuietEventHandlerSuccess, start_handler_threads
from embedding_operator.settings import HANDLER_THREADS


def test_every_handler_thread_is_started_at_once() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        asyncio.run(start_handler_threads(pool, 8))
        assert len(pool._threads) == 8  # started, not at the first handlers' calls
        assert pool.submit(lambda: 42).result(timeout=5) == 42  # and free again


def test_no_more_threads_than_the_pool_holds_and_no_wait() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        asyncio.run(start_handler_threads(pool, 4, timeout=60))  # returns at once: 2 of 2
        assert len(pool._threads) == 2


def test_a_busy_pool_is_not_waited_for_beyond_the_timeout() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        busy = concurrent.futures.Future[None]()
        pool.submit(busy.result)  # one thread taken until the end of the test
        try:
            asyncio.run(start_handler_threads(pool, 2, timeout=0.2))
            assert len(pool._threads) == 2
        finally:
            busy.set_result(None)  # else the pool's shutdown would wait for it forever


def record(level: int, msg: object) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)


def kopfs_event_handlers() -> list[Any]:
    return list(kopf.get_default_registry()._watching.get_all_handlers())


def test_the_quiet_handlers_are_kopfs_event_handlers() -> None:
    """kopf names a handler by its function: the ids it logs are these."""
    assert {handler.id for handler in kopfs_event_handlers()} == set(EVENT_HANDLERS)


def test_only_the_event_handlers_success_lines_are_dropped() -> None:
    quiet = QuietEventHandlerSuccess(EVENT_HANDLERS)
    for handler in kopfs_event_handlers():
        success = f"{handler} succeeded."  # kopf's own line (execution.py)
        assert not quiet.filter(record(logging.INFO, success))
        assert quiet.filter(record(logging.WARNING, success))  # not INFO: kept
        assert quiet.filter(record(logging.ERROR, f"{handler} failed with an exception"))
    assert quiet.filter(record(logging.INFO, "Handler 'submit' succeeded."))
    assert quiet.filter(record(logging.INFO, "RayJob ns/j submitted"))
    assert quiet.filter(record(logging.INFO, {"not": "text"}))


def test_startup_quiets_kopfs_logger_of_objects_and_starts_the_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(main.kube, "login", lambda connections: None)
    monkeypatch.setattr(main.metrics, "serve", lambda: None)
    settings = kopf.OperatorSettings()
    objects = logging.getLogger("kopf.objects")
    monkeypatch.setattr(objects, "filters", [])
    for _ in range(2):  # kopf retries a failed start-up: one filter still
        asyncio.run(main.startup(settings=settings))
    assert objects is kopf_loggers.logger  # the logger kopf logs handlers' lines to
    assert objects.filters == [main.QUIET]
    assert settings.execution.max_workers == HANDLER_THREADS  # configure()'d, then all started
    assert len(settings.execution.executor._threads) == HANDLER_THREADS  # type: ignore[attr-defined]
    settings.execution.executor.shutdown()
