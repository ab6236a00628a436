"""What the operator process sets up around kopf at start: its handler threads, its logs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Iterable

#: Seconds the handler threads' start may take before the operator goes on without all.
_START_TIMEOUT = 30.0


async def start_handler_threads(
    executor: concurrent.futures.Executor, count: int, timeout: float = _START_TIMEOUT
) -> None:
    """Start ``count`` threads of kopf's handler pool now (no more than the pool holds), not
    one by one as the first burst of new jobs arrives: a thread's start then cost kopf's event
    loop the time, and held up every job's events. The pool keeps its threads (it never
    shrinks)."""
    count = min(count, getattr(executor, "_max_workers", count))
    # Each task holds its thread until all have one, so the pool starts a thread for each.
    everyone = threading.Barrier(count)

    def hold() -> None:
        # Broken: the wait timed out (a pool busy elsewhere); the threads it has are started.
        with contextlib.suppress(threading.BrokenBarrierError):
            everyone.wait(timeout)

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(executor, hold) for _ in range(count)))
    if everyone.broken:
        logging.getLogger(__name__).warning(
            "not every handler thread started within %.0f s; the rest start when needed", timeout
        )


class QuietEventHandlerSuccess(logging.Filter):
    """Drop kopf's "Handler 'x' succeeded." of the handlers that run on every event of
    every job (a job's progress reports included): one log line per event that says
    nothing. Their warnings and errors, and every other handler's lines, stay."""

    def __init__(self, handler_ids: Iterable[str]):
        super().__init__()
        self._success_lines = frozenset(
            f"Handler {handler_id!r} succeeded." for handler_id in handler_ids
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return (
            record.levelno > logging.INFO
            or not isinstance(record.msg, str)
            or record.msg not in self._success_lines
        )
