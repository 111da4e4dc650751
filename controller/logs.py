"""structlog set-up: JSON lines for machines, a readable console on a TTY.

A last processor scrubs the HF token from every string value, as a second line of defence; the
first is that the token is a `SecretStr` that no code path formats.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _scrubber(secret: str | None) -> Any:
    def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if secret:
            for k, v in event.items():
                if isinstance(v, str) and secret in v:
                    event[k] = v.replace(secret, "***")
        return event

    return scrub


def configure_logging(
    *, fmt: str = "auto", level: str = "info", secret: str | None = None, stream: Any = None
) -> None:
    stream = stream or sys.stderr
    json_out = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_out else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info
            if json_out
            else structlog.processors.StackInfoRenderer(),
            _scrubber(secret),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
