"""Logging: readable lines on a terminal, one JSON object per line everywhere else."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """Structured log lines for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def setup_logging(level: str = "INFO", structured: bool | None = None) -> None:
    """Configure the root logger once; ``structured`` defaults to 'stderr is not a terminal'."""
    if structured is None:
        structured = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if structured
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries (Daft's tracing spans, Ray, transformers) stay at WARNING; our own logs follow
    # the requested level.
    root.setLevel(logging.WARNING)
    logging.getLogger("embedding_job").setLevel(level.upper())
