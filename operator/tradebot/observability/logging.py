"""structlog, configured once: JSON lines on stderr, every line with the bound context
(correlation id, resource kind/namespace/name)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def configure(level: int = logging.INFO) -> None:
    """JSON logs for structlog and for the standard library (kopf logs through it)."""
    global _configured
    if _configured:
        return
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


def logger(**context: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to `context`, e.g. kind, namespace, name, correlation_id."""
    # Binding finalises the logger with the configuration of the moment: configure first.
    configure()
    bound: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(**context)
    return bound
