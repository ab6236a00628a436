"""One way to wait: poll a predicate until it holds or a deadline passes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = float(os.environ.get("EMBEDDING_TEST_WAIT_TIMEOUT", "60"))


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Return the predicate's first truthy value; raise TimeoutError with ``message`` if none."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {text}")
        time.sleep(interval)
