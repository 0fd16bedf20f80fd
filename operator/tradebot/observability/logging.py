"""structlog: JSON lines on stderr, every line with the bound context (correlation id,
resource kind/namespace/name).

Nothing is configured at import: the entry points (the `tradebot` CLI, `tradebot-runner`, the
operator's start-up) call `configure_logging()`, and so do tests that read the logs. Loggers
made before that (module-level ones) are lazy and take the configuration of their first use.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class _Stderr:
    """Whatever sys.stderr is when a line is written, not when logging was configured: a
    process whose stderr is replaced later (pytest's capture for each test, a daemon that
    redirects) still gets every line."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: int = logging.INFO) -> None:
    """JSON logs for structlog and for the standard library (kopf logs through it). Calling it
    again installs the same configuration again: the root logger ends with one handler, ours,
    even when something (kopf's CLI) added its own in between."""
    stream = _Stderr()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def logger(**context: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to `context`, e.g. kind, namespace, name, correlation_id. It configures
    nothing: it is assembled from the configuration in force when it first logs."""
    lazy: structlog.typing.FilteringBoundLogger = structlog.get_logger(**context)
    return lazy
