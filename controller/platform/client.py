"""Async client for the Inference Endpoints management API (v2) and the per-endpoint metrics feed.

Every HTTP failure is mapped to `controller.errors` in one place (`_map_response` for statuses,
`_map_transport` for transport exceptions), with the cause chained, the body truncated, the
`X-Request-Id` kept and the endpoint key `ns/name` attached. The token lives only in the default
headers of the httpx client (whose repr httpx redacts) and of the feed's aiohttp session (whose repr
shows no headers; the one aiohttp exception that carries them is redacted before it is chained), and
is scrubbed from every message built from a response body, so a server that echoes it cannot leak
it into an exception or a log line.

Transports. Management calls (list, get, update, pause, resume, scale-to-zero, provider) go through
httpx. The metrics feed is the per-tick fan-out (one GET per endpoint per tick, 10,000 per 15 s at
the design size) and httpx's connection pool is its measured bottleneck: 2.9-4.9 ms of CPU per
1.3 KB feed GET through httpx against 0.33-0.44 ms through aiohttp on the same loopback server
(`benchmarks/results/transport.md`), with a per-endpoint budget of 1.5 ms for everything. So when
the client talks to the network itself (no `transport=` given, and httpx would not use a proxy for
the base URL), feeds go through a long-lived `aiohttp.ClientSession` with the same URL, headers,
timeout, redirect rule, retries, call records and error mapping (a non-2xx feed response is handed
to `_map_response` as an `httpx.Response`). An injected httpx transport (the simulator's in-process
`ASGITransport`, the tests' `MockTransport`) cannot be reached by aiohttp, so then feeds stay on
httpx through it.

Retry policy. A call is retried with exponential backoff and jitter on 429, 408, 5xx, timeouts and
connection errors, up to `max_attempts` attempts. `Retry-After` (seconds or an HTTP-date) on 429/503
is honoured as a *minimum* wait; one longer than `backoff_max_s` stops the retries at once, so the
caller backs off this endpoint instead of stalling a tick. Retrying after the request may already
have reached the server is safe for every route used here: GETs are reads; the PUT bodies are
partial *absolute* values (setting `minReplica` to 2 twice is setting it once); pause and
scale-to-zero move to a target state; a resume that finds the endpoint running gets the 400 "already
running", which is treated as success. A PUT that got no answer (a dropped connection, a timeout) is
not re-sent blindly, though: the platform moves `updatedAt` on every PUT, even an idempotent one,
and the ledger dates replica changes by it, so the retry first GETs the endpoint and stops there if
the write is already applied. The metrics feed is fetched once by default (`feed_attempts`): a
missed sample is cheaper than a slow tick, and the next tick fetches again. Both feed transports
share this retry loop; aiohttp's timeouts and connection errors count as httpx's do (retryable), and
every timeout phase (connect, including the wait for a pooled connection, and each read) is
`timeout_s` on both.

Deadlines. A management attempt has a *total* deadline of `timeout_s` (connect, headers and the
whole body: httpx's own timeouts are per read, so a body trickled a few bytes at a time never trips
them), and a whole call, retries and backoff included, `call_deadline_s`. A `Retry-After` that the
retries did not wait out is remembered (`held_until`): management calls fail fast until it has
passed, so the next tick does not hammer an API that asked for quiet.

Feeds are untrusted input, fetched under three limits (`scrape.*` settings): one deadline for
the whole fetch (`feed_deadline_s`: connect, headers, body, retries and their backoff; each
attempt's own deadline is the smaller of `timeout_s` and what is left of it), a cap on the body's
bytes on the wire (`feed_max_body_bytes`, also checked against `Content-Length` before reading) and
a cap on its bytes after decompression (`feed_max_decoded_bytes`). Neither transport inflates the
body itself: both read the raw bytes and `_BodyReader` inflates gzip/deflate in bounded steps, so a
gzip bomb stops at the cap, while inflating. Past a cap the feed is `FeedTooLarge` (not retried),
past the deadline `FeedTimeout`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import ipaddress
import json
import math
import random
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar
from urllib.parse import quote

import aiohttp
import httpx
import pydantic
import structlog
import yarl
from multidict import CIMultiDict, CIMultiDictProxy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from controller import __version__
from controller.errors import (
    ApiError,
    ApiTimeout,
    AuthError,
    BadRequestError,
    BadResponseError,
    ConflictError,
    FeedTimeout,
    FeedTooLarge,
    FeedUnavailable,
    NotFoundError,
    QuotaError,
    RejectedApiError,
    RetryableApiError,
)
from controller.platform.models import LISTED_ITEM, LISTING, Endpoint, ListedEndpoint

if TYPE_CHECKING:
    from controller.settings import Settings

__all__ = [
    "DEFAULT_QUOTA_PATTERN",
    "ROUTES",
    "CallRecord",
    "EndpointsClient",
    "make_client",
    "parse_retry_after",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

Route = Literal[
    "list",
    "get",
    "update",
    "pause",
    "resume",
    "scale_to_zero",
    "open_metrics",
    "engine_metrics",
    "provider",
]
Outcome = Literal["ok", "retry", "error"]

# The fixed label values of `CallRecord.route` (metric labels must come from a closed set).
ROUTES: Final = frozenset(
    {
        "list",
        "get",
        "update",
        "pause",
        "resume",
        "scale_to_zero",
        "open_metrics",
        "engine_metrics",
        "provider",
    }
)

# The platform's quota-exceeded response is not documented; match its text (configurable).
DEFAULT_QUOTA_PATTERN: Final = r"quota"

# Statuses whose body is checked against the quota pattern: the real code is unknown, so every
# refusal that is not clearly about auth-lessness (401), absence (404) or rate (429) qualifies.
_QUOTA_STATUSES: Final = frozenset({400, 402, 403, 409, 422})
_RETRY_STATUSES: Final = frozenset({408, 429})
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_REQUEST_ID_HEADERS: Final = ("x-request-id", "x-amzn-trace-id", "x-amz-cf-id")
_FEED_ACCEPT: Final = (
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.9,*/*;q=0.1"
)
# The encodings the feed reader inflates itself, under `max_decoded_bytes` (`_BodyReader`).
_FEED_ENCODINGS: Final = "gzip, deflate"
# Response headers that describe the wire framing of a body already decoded.
_FRAMING_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP attempt, for metrics: route from `ROUTES`, status (None without a response)."""

    route: str
    status: int | None
    outcome: Outcome
    duration_s: float
    endpoint: str | None = None


def parse_retry_after(
    value: str | None, *, date_header: str | None = None, now: float | None = None
) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date), or None.

    An HTTP-date is measured against the response's own `Date` header when there is one (the
    server's clock, so skew does not matter), else against `now` (default: the wall clock).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        secs = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, secs) if math.isfinite(secs) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ref = now if now is not None else time.time()
    if date_header:
        try:
            served = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            pass
        else:
            ref = (served if served.tzinfo else served.replace(tzinfo=UTC)).timestamp()
    return max(0.0, when.timestamp() - ref)


def _error_message(response: httpx.Response) -> str:
    """The server's message: `X-Error-Message`, then JSON `error`/`message`/`detail`, else text."""
    header = response.headers.get("x-error-message")
    if header:
        return header
    text = response.text
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return text.strip() or response.reason_phrase or "no body"
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            value = data.get(key)
            if value:
                msg = value if isinstance(value, str) else json.dumps(value)
                desc = data.get("error_description")
                return f"{msg}: {desc}" if isinstance(desc, str) and desc else msg
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            parts = [e.get("message", "") if isinstance(e, dict) else str(e) for e in errors]
            return "; ".join(p for p in parts if p) or text
    return text.strip() or "no body"


def _may_have_arrived(exc: ApiError) -> bool:
    """No answer, and not a failure to connect: the server may have applied the request."""
    if exc.status is not None:
        return False
    return not isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)


def _carries(section: str | None, values: Mapping[str, Any]) -> Callable[[httpx.Response], bool]:
    """Whether an endpoint answer's `compute` (or `compute.<section>`) has `values`."""

    def check(resp: httpx.Response) -> bool:
        try:
            node = json.loads(resp.content)["compute"]
            if section is not None:
                node = node[section]
            return all(node.get(k) == v for k, v in values.items())
        except (ValueError, KeyError, TypeError, AttributeError):
            return False

    return check


def _request_id(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return value
    return None


def _field_path(exc: pydantic.ValidationError, prefix: str = "") -> tuple[str, str]:
    """(`compute.scaling.minReplica`, `Field required`) for the first error, no input values."""
    first = exc.errors(include_url=False, include_input=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    return (f"{prefix}{path}" if path else prefix.rstrip(".") or "<root>"), first["msg"]


class EndpointsClient:
    """The management API, one long-lived httpx pool, retries and error mapping.

    Usage: `async with EndpointsClient(url, token) as client: await client.list_endpoints(ns)`.

    Feeds (`fetch_metrics`) use a second long-lived pool, an `aiohttp.ClientSession` opened in the
    running loop on first use and closed by `aclose()`, but only when no `transport` is injected
    and the base URL is reached without a proxy: httpx costs ~10x aiohttp's CPU per feed GET, too
    much for the per-tick fan-out (module docstring). With an injected httpx transport (in-process
    ASGI app, mock) feeds go through it, since aiohttp cannot. Either way the semantics are the
    same: URL, headers, `timeout_s`, no redirects, `feed_attempts`, call records, error mapping.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 20.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        on_call: Callable[[CallRecord], None] | None = None,
        user_agent: str = f"governor/{__version__}",
        quota_pattern: str | re.Pattern[str] = DEFAULT_QUOTA_PATTERN,
        feed_attempts: int = 1,
        rng: random.Random | None = None,
        call_deadline_s: float | None = None,
        monotonic: Callable[[], float] | None = None,
        max_retry_after_s: float = 3600.0,
        feed_deadline_s: float | None = None,
        feed_max_body_bytes: int = 4 * 1024 * 1024,
        feed_max_decoded_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if max_attempts < 1 or feed_attempts < 1:
            raise ValueError("max_attempts and feed_attempts must be >= 1")
        if feed_max_body_bytes < 1 or feed_max_decoded_bytes < 1:
            raise ValueError("feed_max_body_bytes and feed_max_decoded_bytes must be >= 1")
        headers = {"user-agent": user_agent, "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._http = httpx.AsyncClient(
            base_url=self._base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            follow_redirects=False,
        )
        # Feeds over aiohttp only where httpx would open plain sockets itself (module docstring).
        self._feed_via_aiohttp = transport is None and self._direct()
        self._feed_session: aiohttp.ClientSession | None = None
        # The base URL as httpx normalised it, ending in "/", so `_path` joins as httpx joins it.
        self._feed_prefix = str(self._http.base_url)
        self._max_attempts = max_attempts
        self._feed_attempts = feed_attempts
        # None: each attempt is bounded (`timeout_s`), the fetch as a whole only by those.
        self._feed_deadline = feed_deadline_s if feed_deadline_s is not None else math.inf
        self._feed_max_body = feed_max_body_bytes
        self._feed_max_decoded = feed_max_decoded_bytes
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self._on_call = on_call
        # One call, retries and backoff included, never takes longer than this.
        self._call_deadline = call_deadline_s
        # A Retry-After too long to wait inside a call is remembered, in this time base, and
        # management calls fail fast until it has passed instead of hammering a limited API.
        self._mono = monotonic or time.monotonic
        self._max_retry_after = max_retry_after_s
        self.held_until: float | None = None
        # Items the last `list_endpoints` call skipped as unparsable.
        self.invalid_items: list[BadResponseError] = []
        self._rng = rng if rng is not None else random.Random()
        self._quota_re = (
            quota_pattern
            if isinstance(quota_pattern, re.Pattern)
            else re.compile(quota_pattern, re.IGNORECASE)
        )

    def __repr__(self) -> str:
        auth = "set" if "authorization" in self._http.headers else "unset"
        return f"EndpointsClient(base_url={self._base_url!r}, token={auth})"

    async def aclose(self) -> None:
        session, self._feed_session = self._feed_session, None
        try:
            if session is not None:
                await session.close()
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- public API

    async def list_endpoints(
        self, namespace: str, *, skip_invalid: bool = True
    ) -> list[ListedEndpoint]:
        """Every endpoint of `namespace` as compact records (`ListedEndpoint`), each placed in it.

        One malformed item must not hide the others: with `skip_invalid` it is left out, logged,
        and kept in `self.invalid_items` (reset per call) so the loop can count it.
        """
        self.invalid_items = []
        resp = await self._call("list", "GET", self._path(namespace), endpoint=namespace)
        try:
            # The common case, in one pass over the bytes: no dict per item beside the records.
            out = LISTING.validate_json(resp.content).items
        except pydantic.ValidationError:
            out = self._list_item_by_item(resp, namespace, skip_invalid=skip_invalid)
        for ep in out:
            ep.placed(namespace)
        return out

    def _list_item_by_item(
        self, resp: httpx.Response, namespace: str, *, skip_invalid: bool
    ) -> list[ListedEndpoint]:
        """A listing the one-pass read refused: the JSON's shape checked, each item on its own."""
        data = self._json(resp, route="list", endpoint=namespace)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._bad(
                resp, "list: expected an object with an `items` list", namespace, "items"
            )
        out = []
        for i, item in enumerate(items):
            try:
                ep = self._model(
                    resp,
                    item,
                    route="list",
                    endpoint=namespace,
                    prefix=f"items.{i}.",
                    as_=LISTED_ITEM,
                )
            except BadResponseError as exc:
                if not skip_invalid:
                    raise
                name = item.get("name") if isinstance(item, dict) else None
                log.warning(
                    "endpoint_unparsable", namespace=namespace, item=i, name=name, error=str(exc)
                )
                self.invalid_items.append(exc)
                continue
            out.append(ep)
        return out

    async def get_endpoint(self, namespace: str, name: str) -> Endpoint:
        return await self._endpoint_call("get", "GET", namespace, name)

    async def update_scaling(
        self,
        namespace: str,
        name: str,
        *,
        min_replica: int | None = None,
        max_replica: int | None = None,
        scale_to_zero_timeout: int | None = None,
    ) -> Endpoint:
        """Partial PUT of `compute.scaling`; only the given keys are sent (timeout in minutes)."""
        scaling = {
            key: value
            for key, value in (
                ("minReplica", min_replica),
                ("maxReplica", max_replica),
                ("scaleToZeroTimeout", scale_to_zero_timeout),
            )
            if value is not None
        }
        if not scaling:
            raise ValueError("update_scaling needs at least one of min/max replica or timeout")
        if any(v < 0 for v in scaling.values()):
            raise ValueError(f"scaling values must be >= 0, got {scaling}")
        body = {"compute": {"scaling": scaling}}
        return await self._endpoint_call(
            "update", "PUT", namespace, name, json_body=body, verify=_carries("scaling", scaling)
        )

    async def update_instance(
        self,
        namespace: str,
        name: str,
        *,
        accelerator: str | None = None,
        instance_type: str | None = None,
        instance_size: str | None = None,
    ) -> Endpoint:
        """Partial PUT of the compute hardware; only the given keys are sent."""
        compute = {
            key: value
            for key, value in (
                ("accelerator", accelerator),
                ("instanceType", instance_type),
                ("instanceSize", instance_size),
            )
            if value is not None
        }
        if not compute:
            raise ValueError("update_instance needs at least one of accelerator, type or size")
        body = {"compute": compute}
        return await self._endpoint_call(
            "update", "PUT", namespace, name, json_body=body, verify=_carries(None, compute)
        )

    async def pause(self, namespace: str, name: str) -> Endpoint:
        return await self._endpoint_call("pause", "POST", namespace, name, suffix="pause")

    async def resume(self, namespace: str, name: str) -> Endpoint:
        """Resume; a 400 "already running" counts as success and returns the current object."""
        key = f"{namespace}/{name}"
        resp = await self._call(
            "resume",
            "POST",
            self._path(namespace, name, "resume"),
            endpoint=key,
            accept=_already_running,
        )
        if resp.status_code == 400:
            return await self.get_endpoint(namespace, name)
        return self._endpoint(resp, namespace, route="resume", key=key)

    async def scale_to_zero(self, namespace: str, name: str) -> Endpoint:
        return await self._endpoint_call(
            "scale_to_zero", "POST", namespace, name, suffix="scale-to-zero"
        )

    async def fetch_metrics(self, namespace: str, name: str) -> str:
        """The raw open-metrics text. Raises FeedUnavailable (FeedTooLarge, FeedTimeout), or
        AuthError on 401/403."""
        key = f"{namespace}/{name}"
        return await self.fetch_feed(
            self._feed_prefix + self._path(namespace, name, "open-metrics"), key
        )

    async def fetch_engine_metrics(self, url: str, endpoint: str) -> str:
        """An engine's own metrics at `url` (the endpoint's `status.url` plus its metrics path),
        with the token, under the platform feed's limits (route `engine_metrics`).

        The token goes only over https, or plain http to a loopback host (the emulator): an
        endpoint URL the API gives as plain http elsewhere is refused, never sent the token."""
        try:
            parsed = yarl.URL(url)
            host = parsed.host
        except (TypeError, ValueError):
            host = None
        if host is None or parsed.scheme not in ("http", "https"):
            raise FeedUnavailable(
                f"engine metrics: {url[:120]!r} is not an http(s) URL", endpoint=endpoint
            )
        if parsed.scheme == "http" and not _loopback(host):
            raise FeedUnavailable(
                f"engine metrics: {parsed.with_query(None)!s} is plain http; the token is sent "
                "over https only (or to a loopback host)",
                endpoint=endpoint,
            )
        return await self.fetch_feed(str(parsed), endpoint, route="engine_metrics")

    async def fetch_feed(self, url: str, endpoint: str, *, route: Route = "open_metrics") -> str:
        """GET a metrics feed at the absolute `url` with the token, under the feed's limits.

        The platform's feed (`fetch_metrics`) and an engine's own metrics path at the endpoint's
        URL both come through here: same token, caps, deadline, retries and error mapping.
        """
        loop = asyncio.get_running_loop()
        until = loop.time() + self._feed_deadline
        attempt = self._feed_attempt if self._feed_via_aiohttp else self._feed_attempt_httpx

        async def sleep(seconds: float) -> None:  # a backoff never outlasts the deadline
            await self._sleep(min(seconds, max(0.0, until - loop.time())))

        try:
            return await self._retry(
                lambda last: attempt(url, endpoint, last=last, until=until, route=route),
                self._feed_attempts,
                sleep=sleep,
            )
        except AuthError:
            raise
        except _BodyTooLarge as exc:
            raise FeedTooLarge(
                f"feed refused: {exc.message}", endpoint=endpoint, status=exc.status
            ) from exc
        except ApiTimeout as exc:
            raise FeedTimeout(f"feed fetch failed: {exc}", endpoint=endpoint) from exc
        except ApiError as exc:
            raise FeedUnavailable(
                f"feed fetch failed: {exc}", endpoint=endpoint, status=exc.status
            ) from exc

    async def get_provider(self, namespace: str) -> dict[str, Any]:
        """`GET /provider/{namespace}`: vendors, regions, computes with price and quota (raw)."""
        resp = await self._call(
            "provider", "GET", "provider/" + quote(namespace, safe=""), endpoint=namespace
        )
        data = self._json(resp, route="provider", endpoint=namespace)
        if not isinstance(data, dict):
            raise self._bad(resp, "provider: expected a JSON object", namespace, "<root>")
        return data

    # ---------------------------------------------------------------- plumbing

    @staticmethod
    def _path(namespace: str, name: str | None = None, suffix: str | None = None) -> str:
        parts = ["endpoint", quote(namespace, safe="")]
        if name is not None:
            parts.append(quote(name, safe=""))
        if suffix is not None:
            parts.append(suffix)
        return "/".join(parts)

    async def _endpoint_call(
        self,
        route: Route,
        method: str,
        namespace: str,
        name: str,
        *,
        suffix: str | None = None,
        json_body: Mapping[str, Any] | None = None,
        verify: Callable[[httpx.Response], bool] | None = None,
    ) -> Endpoint:
        key = f"{namespace}/{name}"
        resp = await self._call(
            route,
            method,
            self._path(namespace, name, suffix),
            endpoint=key,
            json_body=json_body,
            verify=verify,
        )
        return self._endpoint(resp, namespace, route=route, key=key)

    def _endpoint(self, resp: httpx.Response, namespace: str, *, route: str, key: str) -> Endpoint:
        data = self._json(resp, route=route, endpoint=key)
        ep = self._model(resp, data, route=route, endpoint=key)
        ep.namespace = namespace
        return ep

    def _json(self, resp: httpx.Response, *, route: str, endpoint: str) -> Any:
        try:
            return json.loads(resp.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise self._bad(
                resp, f"{route}: response is not JSON ({detail})", endpoint, None
            ) from None

    def _model(
        self,
        resp: httpx.Response,
        data: Any,
        *,
        route: str,
        endpoint: str,
        prefix: str = "",
        as_: pydantic.TypeAdapter[Any] | None = None,
    ) -> Any:
        """`data` as an `Endpoint` (or through the adapter `as_`); a bad field is a one-line
        `BadResponseError` naming it."""
        try:
            return Endpoint.model_validate(data) if as_ is None else as_.validate_python(data)
        except pydantic.ValidationError as exc:
            path, msg = _field_path(exc, prefix)
            raise self._bad(resp, f"{route}: bad field {path}: {msg}", endpoint, path) from None

    def _bad(
        self, resp: httpx.Response, message: str, endpoint: str, field: str | None
    ) -> BadResponseError:
        return BadResponseError(
            self._scrub(message),
            field=field,
            status=resp.status_code,
            endpoint=endpoint,
            request_id=_request_id(resp),
        )

    def _scrub(self, text: str) -> str:
        """Remove the token from text built out of server responses (a server may echo it)."""
        auth = self._http.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        return text.replace(token, "***") if token else text

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, RetryableApiError) or isinstance(exc, _FeedDeadlinePassed):
            return False
        return exc.retry_after is None or exc.retry_after <= self._backoff_max

    def _wait(self, state: RetryCallState) -> float:
        """Equal-jitter exponential backoff, capped, and at least the server's Retry-After."""
        cap = min(self._backoff_max, self._backoff_initial * 2 ** (state.attempt_number - 1))
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    async def _call(
        self,
        route: Route,
        method: str,
        path: str,
        *,
        endpoint: str | None,
        json_body: Mapping[str, Any] | None = None,
        attempts: int | None = None,
        accept: Callable[[httpx.Response], bool] | None = None,
        headers: Mapping[str, str] | None = None,
        verify: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send with retries; returns a 2xx response (or one `accept` approves), else raises.

        With `verify` (a write), an attempt that may have reached the server but got no answer
        is not simply re-sent: a GET of the same path comes first, and if `verify` finds the
        write already applied, that answer is the result (see `_retry_call`).

        Fails fast while a remembered `Retry-After` lasts; the whole call (every attempt and
        backoff) is bounded by `call_deadline_s`."""
        self._check_hold(route, endpoint)
        try:
            return await self._bounded(
                route,
                endpoint,
                self._retry_call(
                    route,
                    method,
                    path,
                    endpoint=endpoint,
                    json_body=json_body,
                    attempts=attempts,
                    accept=accept,
                    headers=headers,
                    verify=verify,
                ),
            )
        except RetryableApiError as exc:
            self._remember(exc)
            raise

    async def _bounded(self, route: Route, endpoint: str | None, work: Awaitable[T]) -> T:
        if self._call_deadline is None:
            return await work
        try:
            async with asyncio.timeout(self._call_deadline):
                return await work
        except TimeoutError:
            raise RetryableApiError(
                f"{route}: no answer within the call deadline of {self._call_deadline:g}s "
                "(retries included)",
                endpoint=endpoint,
            ) from None

    def _check_hold(self, route: Route, endpoint: str | None) -> None:
        if self.held_until is None:
            return
        left = self.held_until - self._mono()
        if left <= 0:
            self.held_until = None
            return
        raise RetryableApiError(
            f"{route}: not sent, the API asked to wait (Retry-After) another {left:.0f}s",
            status=429,
            endpoint=endpoint,
            retry_after=left,
        )

    def _remember(self, exc: RetryableApiError) -> None:
        """Keep a Retry-After the retries did not wait out, so the next tick honours it too."""
        if exc.retry_after is None or exc.retry_after <= 0:
            return
        until = self._mono() + min(exc.retry_after, self._max_retry_after)
        if self.held_until is None or until > self.held_until:
            self.held_until = until
            log.warning("api_retry_after", seconds=round(exc.retry_after, 1), route="management")

    async def _retry_call(
        self,
        route: Route,
        method: str,
        path: str,
        *,
        endpoint: str | None,
        json_body: Mapping[str, Any] | None,
        attempts: int | None,
        accept: Callable[[httpx.Response], bool] | None,
        headers: Mapping[str, str] | None,
        verify: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """The retry loop of one call. A write whose answer was lost (a dropped connection, a
        timeout: it may have been applied) is checked with a GET before it is re-sent: the
        platform moves `updatedAt` on every PUT, even one that changes nothing, so a re-sent
        write dated its replica changes late, and the ledger, which dates them by `updatedAt`,
        lost minutes (the fault soak's lost-write-response fault: 4 replicas 1.8 s late)."""
        maybe_applied = False

        async def attempt(last: bool) -> httpx.Response:
            nonlocal maybe_applied
            if maybe_applied and verify is not None:
                got = await self._attempt(
                    "get",
                    "GET",
                    path,
                    endpoint=endpoint,
                    json_body=None,
                    accept=None,
                    headers=headers,
                    last=False,
                )
                if verify(got):
                    return got
            try:
                return await self._attempt(
                    route,
                    method,
                    path,
                    endpoint=endpoint,
                    json_body=json_body,
                    accept=accept,
                    headers=headers,
                    last=last,
                )
            except ApiError as exc:
                maybe_applied = maybe_applied or _may_have_arrived(exc)
                raise

        return await self._retry(attempt, attempts if attempts is not None else self._max_attempts)

    async def _retry(
        self,
        attempt: Callable[[bool], Awaitable[T]],
        limit: int,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> T:
        """Run `attempt(last)` up to `limit` times under the retry policy (module docstring)."""
        if limit == 1:
            # What tenacity would do (one attempt, its error re-raised as is), without the
            # ~0.15 ms of CPU its loop costs: that is a third of a feed fetch on the default
            # `feed_attempts=1` (benchmarks/transport.py).
            return await attempt(True)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(limit),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=sleep or self._sleep,
            reraise=True,
        )
        async for state in retrying:
            with state:
                return await attempt(state.retry_state.attempt_number >= limit)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _attempt(
        self,
        route: Route,
        method: str,
        path: str,
        *,
        endpoint: str | None,
        json_body: Mapping[str, Any] | None,
        accept: Callable[[httpx.Response], bool] | None,
        headers: Mapping[str, str] | None,
        last: bool,
    ) -> httpx.Response:
        started = time.perf_counter()
        status: int | None = None
        try:
            try:
                # Total deadline of one attempt: connect, headers and the whole body. httpx's
                # own timeouts are per phase (per read), so a body trickled a few bytes at a
                # time would never trip them.
                async with asyncio.timeout(self._timeout_s):
                    resp = await self._http.request(method, path, json=json_body, headers=headers)
            except httpx.HTTPError as exc:
                raise self._map_transport(exc, route=route, endpoint=endpoint) from exc
            except TimeoutError:
                raise ApiTimeout(
                    f"{route}: no complete response within {self._timeout_s:g}s",
                    endpoint=endpoint,
                ) from None
            status = resp.status_code
            if not (200 <= status < 300 or (accept is not None and accept(resp))):
                raise self._map_response(resp, route=route, endpoint=endpoint)
        except ApiError as exc:
            self._failed(exc, route, status, started, endpoint, last=last)
            raise
        self._record(route, status, "ok", started, endpoint)
        return resp

    async def _feed_attempt(
        self, url: str, endpoint: str, *, last: bool, until: float, route: Route
    ) -> str:
        """One feed GET over aiohttp; the twin of `_feed_attempt_httpx`."""
        started = time.perf_counter()
        status: int | None = None
        try:
            session = self._feed_session or self._open_feed_session()
            deadline = self._attempt_deadline(until)
            try:
                async with (
                    deadline,
                    session.get(yarl.URL(url, encoded=True), allow_redirects=False) as resp,
                ):
                    status = resp.status
                    reader = self._body_reader(resp.headers, endpoint, status)
                    async for chunk in resp.content.iter_any():
                        reader.feed(chunk)
                    body = reader.finish()
            except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
                if deadline.expired():
                    raise self._feed_timeout(until, endpoint, route) from exc
                raise self._map_transport(exc, route=route, endpoint=endpoint) from exc
            if not 200 <= status < 300:
                raise self._map_response(
                    _as_httpx_response(resp, body), route=route, endpoint=endpoint
                )
        except ApiError as exc:
            self._failed(exc, route, status, started, endpoint, last=last)
            raise
        self._record(route, status, "ok", started, endpoint)
        return _decode_text(body, resp.charset)

    async def _feed_attempt_httpx(
        self, url: str, endpoint: str, *, last: bool, until: float, route: Route
    ) -> str:
        """One feed GET through httpx (an injected transport, or a proxy): raw bytes, inflated by
        `_BodyReader` under the same caps, so both transports enforce the same limits."""
        started = time.perf_counter()
        status: int | None = None
        headers = {"accept": _FEED_ACCEPT, "accept-encoding": _FEED_ENCODINGS}
        try:
            deadline = self._attempt_deadline(until)
            try:
                async with deadline, self._http.stream("GET", url, headers=headers) as resp:
                    status = resp.status_code
                    body = await self._read_httpx(resp, endpoint)
            except TimeoutError as exc:
                raise self._feed_timeout(until, endpoint, route) from exc
            except httpx.HTTPError as exc:
                raise self._map_transport(exc, route=route, endpoint=endpoint) from exc
            if not 200 <= status < 300:
                plain = [
                    (k, v) for k, v in resp.headers.items() if k.lower() not in _FRAMING_HEADERS
                ]
                raise self._map_response(
                    httpx.Response(status, headers=plain, content=body, request=resp.request),
                    route=route,
                    endpoint=endpoint,
                )
        except ApiError as exc:
            self._failed(exc, route, status, started, endpoint, last=last)
            raise
        self._record(route, status, "ok", started, endpoint)
        return _decode_text(body, resp.charset_encoding)

    async def _read_httpx(self, resp: httpx.Response, endpoint: str) -> bytes:
        if resp.is_stream_consumed:  # an in-memory response (MockTransport): already decoded
            reader = self._body_reader({}, endpoint, resp.status_code)
            reader.feed(resp.content)
        else:
            reader = self._body_reader(resp.headers, endpoint, resp.status_code)
            async for chunk in resp.aiter_raw():
                reader.feed(chunk)
        return reader.finish()

    def _attempt_deadline(self, until: float) -> asyncio.Timeout:
        """One attempt's total deadline: `timeout_s`, but never past the whole fetch's `until`."""
        return asyncio.timeout_at(min(asyncio.get_running_loop().time() + self._timeout_s, until))

    def _feed_timeout(self, until: float, endpoint: str, route: Route) -> ApiTimeout:
        if asyncio.get_running_loop().time() >= until:  # nothing left to retry in
            why = f"the scrape deadline of {self._feed_deadline:g}s"
            return _FeedDeadlinePassed(
                f"{route}: no complete response within {why}", endpoint=endpoint
            )
        why = f"{self._timeout_s:g}s (api.timeout_s)"
        return ApiTimeout(f"{route}: no complete response within {why}", endpoint=endpoint)

    def _body_reader(self, headers: Mapping[str, str], endpoint: str, status: int) -> _BodyReader:
        """A capped reader for this response; refuses a declared length over the cap at once."""
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self._feed_max_body:
            raise _BodyTooLarge(
                f"body of {int(length):,} bytes (Content-Length) is over scrape.max_body_bytes "
                f"({self._feed_max_body:,})",
                endpoint=endpoint,
                status=status,
            )
        return _BodyReader(
            headers.get("content-encoding"),
            max_wire=self._feed_max_body,
            max_decoded=self._feed_max_decoded,
            endpoint=endpoint,
            status=status,
        )

    def _open_feed_session(self) -> aiohttp.ClientSession:
        """The feed's aiohttp pool, created in the running loop (aiohttp binds it there)."""
        if self._http.is_closed:  # as httpx does: a closed client sends nothing
            raise RuntimeError("EndpointsClient is closed")
        headers = {
            "accept": _FEED_ACCEPT,
            "accept-encoding": _FEED_ENCODINGS,
            "user-agent": self._http.headers["user-agent"],
        }
        if "authorization" in self._http.headers:
            headers["authorization"] = self._http.headers["authorization"]
        https = self._http.base_url.scheme == "https"
        # httpx's CA bundle and SSL_CERT_FILE/DIR handling, so both pools trust the same roots.
        ssl_context = httpx.create_ssl_context() if https else True
        self._feed_session = aiohttp.ClientSession(
            headers=headers,
            auto_decompress=False,  # `_BodyReader` inflates, under the decoded-bytes cap
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=ssl_context),
            cookie_jar=aiohttp.DummyCookieJar(),  # feeds set none; a jar filters every request
            # Each attempt's total deadline is `_attempt_deadline` around the whole exchange (a
            # body trickled a few bytes at a time ends there too, issue 18), so aiohttp keeps
            # only the TCP connect's own: its `total`, `connect` and `sock_read` timers would be
            # three more timer handles per GET (`sock_read` rescheduled on every chunk) bounding
            # nothing that deadline does not (issue 16).
            timeout=aiohttp.ClientTimeout(
                total=None, connect=None, sock_read=None, sock_connect=self._timeout_s
            ),
        )
        return self._feed_session

    def _direct(self) -> bool:
        """Whether httpx reaches the base URL without a proxy (`HTTPS_PROXY` etc., `NO_PROXY`)."""
        pick = getattr(self._http, "_transport_for_url", None)
        if pick is None:  # pragma: no cover - httpx moved its private API: be conservative
            return False
        return pick(self._http.base_url) is getattr(self._http, "_transport", None)

    def _failed(
        self,
        exc: ApiError,
        route: Route,
        status: int | None,
        started: float,
        endpoint: str | None,
        *,
        last: bool,
    ) -> None:
        """Record and log one failed attempt ("retry" if another attempt will follow)."""
        outcome: Outcome = "retry" if self._retryable(exc) and not last else "error"
        self._record(route, status, outcome, started, endpoint)
        log.debug(
            "api_call_failed",
            route=route,
            endpoint=endpoint,
            status=status,
            outcome=outcome,
            error=str(exc),
            request_id=exc.request_id,
        )

    def _record(
        self,
        route: Route,
        status: int | None,
        outcome: Outcome,
        started: float,
        endpoint: str | None,
    ) -> None:
        if self._on_call is None:
            return
        record = CallRecord(route, status, outcome, time.perf_counter() - started, endpoint)
        try:
            self._on_call(record)
        except Exception:  # a broken metrics hook must not break API calls
            log.exception("on_call_hook_failed", route=route)

    def _map_transport(
        self,
        exc: httpx.HTTPError | aiohttp.ClientError | OSError,
        *,
        route: Route,
        endpoint: str | None,
    ) -> ApiError:
        """httpx/aiohttp exceptions -> the error tree (the caller chains `exc` as the cause)."""
        detail = self._scrub(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if isinstance(exc, aiohttp.ClientResponseError):
            _redact_request_info(exc)
        if isinstance(exc, TimeoutError):  # aiohttp's timeouts; asyncio.TimeoutError is this
            return ApiTimeout(f"{route}: timed out ({detail})", endpoint=endpoint)
        if isinstance(exc, aiohttp.ClientError | OSError):
            return RetryableApiError(f"{route}: connection failed ({detail})", endpoint=endpoint)
        if isinstance(exc, httpx.TimeoutException):
            return ApiTimeout(f"{route}: timed out ({detail})", endpoint=endpoint)
        if isinstance(exc, httpx.TransportError):
            return RetryableApiError(f"{route}: connection failed ({detail})", endpoint=endpoint)
        if isinstance(exc, httpx.DecodingError):
            return BadResponseError(f"{route}: undecodable response ({detail})", endpoint=endpoint)
        return ApiError(f"{route}: request failed ({detail})", endpoint=endpoint)

    def _map_response(
        self, resp: httpx.Response, *, route: Route, endpoint: str | None
    ) -> ApiError:
        """A non-2xx response -> the error tree. The one place statuses get their meaning."""
        status = resp.status_code
        message = self._scrub(_error_message(resp))
        kw: dict[str, Any] = {
            "status": status,
            "endpoint": endpoint,
            "request_id": _request_id(resp),
        }
        if status in _RETRY_STATUSES or status >= 500:
            retry_after = None
            if status in _RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(
                    resp.headers.get("retry-after"), date_header=resp.headers.get("date")
                )
            return RetryableApiError(message, retry_after=retry_after, **kw)
        if status in _QUOTA_STATUSES and self._quota_re.search(message):
            return QuotaError(message, **kw)
        if status in (401, 403):
            return AuthError(message, **kw)
        if status == 404:
            return NotFoundError(message, **kw)
        if status == 409:
            return ConflictError(message, **kw)
        if status in (400, 422):
            return BadRequestError(message, **kw)
        if 400 <= status < 500:
            return RejectedApiError(message, **kw)
        return ApiError(f"unexpected status for {route}: {message}", **kw)


class _FeedDeadlinePassed(ApiTimeout):
    """The whole feed fetch's deadline passed: no attempt is left to retry in."""


class _BodyTooLarge(BadResponseError):
    """A feed body over one of its caps (mapped to `FeedTooLarge`; never retried)."""


class _BodyReader:
    """A feed body accumulated under two caps: bytes on the wire and bytes once inflated.

    gzip and deflate are inflated here, never by the transport, in steps of at most what is left
    under `max_decoded` (+1, to see it passed), so a 500 KB body that would inflate to 500 MB
    allocates about the cap and stops. Any other Content-Encoding is refused (only gzip and
    deflate are asked for).
    """

    def __init__(
        self,
        encoding: str | None,
        *,
        max_wire: int,
        max_decoded: int,
        endpoint: str,
        status: int | None = None,
    ) -> None:
        self._where = {"endpoint": endpoint, "status": status}
        enc = (encoding or "identity").strip().lower()
        self._inflater: Any = None
        self._raw_fallback = False  # `deflate` is sent zlib-wrapped or raw; httpx accepts both
        if enc in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)
            self._raw_fallback = True
        elif enc not in ("identity", ""):
            raise BadResponseError(
                f"open_metrics: unsupported Content-Encoding {enc[:40]!r}", **self._where
            )
        self._max_wire = max_wire
        self._max_decoded = max_decoded
        self.wire = 0
        self.decoded = 0
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.wire += len(chunk)
        if self.wire > self._max_wire:
            raise _BodyTooLarge(
                f"body over scrape.max_body_bytes ({self._max_wire:,} bytes on the wire)",
                **self._where,
            )
        if self._inflater is None:
            self._keep(chunk)
            return
        data = chunk
        while data:
            try:
                out = self._inflater.decompress(data, self._max_decoded - self.decoded + 1)
            except zlib.error as exc:
                if self._raw_fallback and not self.decoded:
                    self._raw_fallback = False
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise BadResponseError(
                    f"open_metrics: undecodable {type(exc).__name__}: {exc}", **self._where
                ) from None
            self._raw_fallback = False
            self._keep(out)
            data = self._inflater.unconsumed_tail

    def finish(self) -> bytes:
        if self._inflater is not None:
            if not self._inflater.eof and (self.wire or self.decoded):
                raise BadResponseError("open_metrics: truncated compressed body", **self._where)
            self._keep(self._inflater.flush())
        return b"".join(self._parts)

    def _keep(self, data: bytes) -> None:
        self.decoded += len(data)
        if self.decoded > self._max_decoded:
            raise _BodyTooLarge(
                f"body over scrape.max_decoded_bytes ({self._max_decoded:,} bytes inflated, "
                f"{self.wire:,} read)",
                **self._where,
            )
        if data:
            self._parts.append(data)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _already_running(resp: httpx.Response) -> bool:
    return resp.status_code == 400 and "already running" in resp.text.lower()


def _as_httpx_response(resp: aiohttp.ClientResponse, body: bytes) -> httpx.Response:
    """An aiohttp error response as httpx would have returned it, for `_map_response`."""
    headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _FRAMING_HEADERS]
    return httpx.Response(
        resp.status,
        headers=headers,
        content=body,
        request=httpx.Request("GET", str(resp.url)),
        extensions={"reason_phrase": (resp.reason or "").encode("latin-1", "replace")},
    )


def _decode_text(body: bytes, charset: str | None) -> str:
    """Like httpx's `Response.text`: the Content-Type charset if Python knows it, else UTF-8;
    undecodable bytes become U+FFFD instead of failing the fetch."""
    encoding = "utf-8"
    if charset:
        with contextlib.suppress(LookupError):
            encoding = codecs.lookup(charset).name
    return body.decode(encoding, errors="replace")


def _redact_request_info(exc: aiohttp.ClientResponseError) -> None:
    """Drop the request headers (the token) from an aiohttp error before it is chained: its repr
    prints them (`RequestInfo(headers=...)`), unlike httpx's, which redacts authorization."""
    info = exc.request_info
    redacted = info._replace(headers=CIMultiDictProxy(CIMultiDict()))
    exc.request_info = redacted
    exc.args = (redacted, *exc.args[1:])


def make_client(
    settings: Settings,
    *,
    on_call: Callable[[CallRecord], None] | None = None,
    cls: type[EndpointsClient] = EndpointsClient,
    **kw: Any,
) -> EndpointsClient:
    """The client `settings.api` describes, with the token `settings` read (never logged).
    `cls`: a subclass taking the same arguments and its own `kw` (the fast replay's)."""
    a = settings.api
    token = settings.token.get_secret_value() if settings.token else None
    return cls(
        a.base_url,
        token,
        timeout_s=a.timeout_s,
        max_attempts=a.max_attempts,
        backoff_initial_s=a.backoff_initial_s,
        backoff_max_s=a.backoff_max_s,
        max_connections=a.max_connections,
        on_call=on_call,
        call_deadline_s=a.call_deadline_s,
        max_retry_after_s=a.max_retry_after_s,
        feed_deadline_s=settings.scrape.deadline_s,
        feed_max_body_bytes=settings.scrape.max_body_bytes,
        feed_max_decoded_bytes=settings.scrape.max_decoded_bytes,
        **kw,
    )
