"""Governor's error tree; library exceptions are mapped into it in one place and chained as causes.

GovernorError
├── ConfigError              bad config file, env override or policy parameters
├── StateLockedError         another Governor holds the state directory
├── FeedError                an endpoint's metrics feed cannot be used this tick
│   ├── FeedUnavailable      HTTP/transport failure fetching it
│   ├── FeedParseError       the body is not valid OpenMetrics / Prometheus text
│   └── FeedStale            no fresh enough sample for a decision
└── ApiError                 a management API call failed (status, endpoint, request id)
    ├── RetryableApiError    429, 5xx, timeouts, connection errors (retried with backoff)
    ├── RejectedApiError     4xx that retrying cannot fix
    │   ├── AuthError        401 / 403
    │   ├── NotFoundError    404
    │   ├── ConflictError    409
    │   ├── QuotaError       the platform refused for lack of accelerator quota
    │   └── BadRequestError  400 / 422 otherwise
    └── BadResponseError     a 2xx body that is not JSON or does not fit the model
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "ApiError",
    "ApiTimeout",
    "AuthError",
    "BadRequestError",
    "BadResponseError",
    "ConfigError",
    "ConflictError",
    "FeedError",
    "FeedParseError",
    "FeedStale",
    "FeedTimeout",
    "FeedTooLarge",
    "FeedUnavailable",
    "GovernorError",
    "NotFoundError",
    "QuotaError",
    "RejectedApiError",
    "RetryableApiError",
    "StateLockedError",
    "validation_lines",
]

# Response bodies end up in logs; keep them short so a secret echoed by a server cannot leak far.
BODY_LOG_LIMIT = 256


class GovernorError(Exception):
    """Base of every error Governor raises on purpose."""


class ConfigError(GovernorError):
    """Invalid configuration; the message names the key, the bad value and what is allowed."""


class StateLockedError(GovernorError):
    """Another Governor process holds the state directory's lock (one acting process per state)."""


class FeedError(GovernorError):
    """An endpoint's metrics feed is unusable this tick; `reason` is a fixed metric label value."""

    reason = "feed_error"

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class FeedUnavailable(FeedError):
    """The feed could not be fetched; `status` is the HTTP status when there was a response."""

    reason = "unavailable"

    def __init__(
        self, message: str, *, endpoint: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status


class FeedTooLarge(FeedUnavailable):
    """The feed's body passed `scrape.max_body_bytes` or, inflating, `scrape.max_decoded_bytes`."""

    reason = "too_large"


class FeedTimeout(FeedUnavailable):
    """No complete feed within the scrape's deadline (`scrape.deadline_s`, or one attempt's)."""

    reason = "timeout"


class FeedParseError(FeedError):
    reason = "parse_error"


class FeedStale(FeedError):
    reason = "stale"


class ApiError(GovernorError):
    """A management API call failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        body = message if len(message) <= BODY_LOG_LIMIT else message[:BODY_LOG_LIMIT] + "…"
        super().__init__(body)
        self.message = body
        self.status = status
        self.endpoint = endpoint
        self.request_id = request_id

    def __str__(self) -> str:
        where = f" [{self.endpoint}]" if self.endpoint else ""
        code = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{code}{self.message}{where}"


class RetryableApiError(ApiError):
    """Transient: rate limited, server error, timeout or connection failure."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ApiTimeout(RetryableApiError):
    """No complete response in time (a deadline, or a transport's own timeout)."""


class RejectedApiError(ApiError):
    """The server refused the request; retrying the same request will not help."""


class AuthError(RejectedApiError):
    """Missing, wrong or under-scoped token (401/403)."""


class NotFoundError(RejectedApiError):
    """The endpoint or namespace does not exist (404)."""


class ConflictError(RejectedApiError):
    """The request conflicts with the current state (409)."""


class QuotaError(RejectedApiError):
    """Not enough accelerator quota for a create, resume or scale-up."""


class BadRequestError(RejectedApiError):
    """Invalid request body or a state that does not allow the call (400/422)."""


class BadResponseError(ApiError):
    """A successful status whose body is not JSON or does not match the expected model.

    `field` is the dotted path of the first failing field (e.g. `compute.scaling.minReplica`), or
    None when the body is not JSON at all. Retrying rarely helps: the platform changed its shape.
    """

    def __init__(self, message: str, *, field: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.field = field


def validation_lines(
    err: ValidationError, *, prefix: str = "", brackets: bool = False, show_input: bool = True
) -> list[str]:
    """One line per pydantic error: `  <key path>: <message> (got <value>)`.

    The single place that turns a ValidationError into the messages users see for config,
    policy parameters and scenario files. `brackets` writes list indices as `a[0].b`.
    """
    lines = []
    for e in err.errors():
        if brackets:
            loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in e["loc"])
            loc = loc.replace(".[", "[")
        else:
            loc = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        got = e.get("input")
        shown = "" if not show_input or isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {prefix}{loc or '<root>'}: {msg}{shown}")
    return lines
