"""structlog set-up: JSON lines for machines, a readable console on a TTY.

A last processor masks the HF token in every value, as a second line of defence; the first is
that the token is a `SecretStr` that no code path formats. Masking is exact: only a whole-token
occurrence is replaced (one not joined to a letter, digit, `_` or `-` on either side, the
alphabet of HF and URL-safe tokens), so a short token such as the emulator's `T` never turns
`2026-12-02T04:57:48Z` into `2026-12-02***04:57:48Z`, and keys are never touched.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

__all__ = ["LEVELS", "configure_logging", "mask_secret", "masker"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,  # the spelling Go and Prometheus exporters use
    "error": logging.ERROR,
}

# Characters a token is made of: a neighbouring one means the match is part of a longer word.
_TOKEN_CHARS = r"[\w-]"
MASK = "***"


def masker(secret: str) -> Callable[[str], str]:
    """A function replacing each whole-token occurrence of `secret` in a text by `***`.

    If the secret itself could be re-formed from the mask (a token of `*`s), the mask is
    `[masked]` instead, so masking always removes the token.
    """
    pattern = re.compile(rf"(?<!{_TOKEN_CHARS}){re.escape(secret)}(?!{_TOKEN_CHARS})")
    mask = MASK if "*" not in secret else "[masked]"

    def mask_text(text: str) -> str:
        if secret not in text:
            return text
        out = pattern.sub(mask, text)
        # Masking one occurrence can make its neighbour whole (token ".a" in ".a.a": the second
        # follows an `a` until the first is masked). Repeat: the mask shares no character with
        # the token, so each pass removes an occurrence and creates none, and this ends.
        while out != text and pattern.search(out):
            text, out = out, pattern.sub(mask, out)
        return out

    return mask_text


def mask_secret(text: str, secret: str) -> str:
    """`text` with every whole-token occurrence of `secret` masked (see `masker`)."""
    return masker(secret)(text) if secret else text


def _mask_value(v: Any, mask: Callable[[str], str], secret: str) -> Any:
    if isinstance(v, str):
        return mask(v)
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, dict):
        return {k: _mask_value(x, mask, secret) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_mask_value(x, mask, secret) for x in v]
    # Anything else is rendered by its str/repr: mask that text if it carries the token.
    text = str(v)
    if secret in text:
        masked = mask(text)
        return masked if masked != text else v
    return v


def _masking(secret: str | None) -> Any:
    mask = masker(secret) if secret else None

    def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if mask is not None and secret:
            for k, v in event.items():
                event[k] = _mask_value(v, mask, secret)
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
            # The traceback is text before the mask runs, so a token in it is masked too.
            structlog.processors.format_exc_info,
            _masking(secret),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
