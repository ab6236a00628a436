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
    """Start ``count`` threads of kopf's handler pool now, not one by one as the first burst
    of new jobs arrives: a thread's start then cost kopf's event loop the time it holds up
    every job's events. The pool keeps its threads (it never shrinks)."""
    # Each task holds its thread until all have one, so the pool starts a thread for each.
    everyone = threading.Barrier(count)

    def hold() -> None:
        # Broken: a pool smaller than count, whose threads are all started.
        with contextlib.suppress(threading.BrokenBarrierError):
            everyone.wait(timeout)

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(executor, hold) for _ in range(count)))


class QuietEventHandlers(logging.Filter):
    """Drop kopf's "Handler 'x' succeeded." of the handlers that run on every event of
    every job (a job's progress reports included): one log line per event that says
    nothing. Their warnings and errors, and every other handler's lines, stay."""

    def __init__(self, handler_ids: Iterable[str]):
        super().__init__()
        self._said = frozenset(f"Handler {handler_id!r} succeeded." for handler_id in handler_ids)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.msg not in self._said
