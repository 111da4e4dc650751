"""The fast replay's wire: Governor's real client answered by the platform object in-process.

The full replay (`mode="full"`) sends every management call and feed fetch through httpx, the
ASGI transport and the emulator's Starlette app; at one tick per 15 s that is most of a replay's
CPU (about 60 % of an endpoint-day, `benchmarks/replay_speed.py`). `PlatformClient` is the same
`EndpointsClient` (its retries, call records, JSON decoding and validation, status-to-error
mapping, feed caps and error wrapping all run) with only its httpx pool swapped for
`_PlatformHttp`, which answers each request by calling the `Platform` method the emulator's route
would call (`controller/emulator/app.py`), with the same status and `{"error": msg}` body. What it
leaves out is what a replay never exercises: fault injection, the call log, request bodies over
the size cap, foreign tokens.

`PlatformScraper` goes one step further for the default feed (the platform's "full" shape read
through the `auto` preset): it reduces the platform's feed values to the `FeedSample` the parser
would produce from the rendered text (`feed_sample`), without rendering or parsing it; any other
feed (an engine shape, a pinned preset, recipe overrides, the engine source, a custom mapping)
goes through the real scraper. `tests/test_fast_replay.py` checks `feed_sample` against
`parse_feed(render_metrics(...))` on random platform states, and whole fast replays against full
ones.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from controller.clock import Clock
from controller.emulator.platform import EmulatorError, ListingVersion, Platform
from controller.errors import FeedError
from controller.platform.client import EndpointsClient
from controller.platform.models import ListedEndpoint, UserRef
from controller.platform.scrape import FeedChoice, Scraper
from controller.platform.signals import FeedSample, status_class

__all__ = ["PlatformClient", "PlatformScraper", "feed_sample"]


class _PlatformHttp:
    """The slice of `httpx.AsyncClient` that `EndpointsClient` uses, answered by a `Platform`."""

    def __init__(
        self,
        platform: Platform,
        *,
        clock: Clock,
        user: UserRef,
        headers: httpx.Headers,
        base_url: httpx.URL,
        engine_metrics_path: str = "/metrics",
    ) -> None:
        self.platform = platform
        self.clock = clock
        self.user = user
        self.headers = headers
        self.base_url = base_url
        self.engine_metrics_path = engine_metrics_path

    async def aclose(self) -> None:
        return None

    def advance(self) -> None:
        """What every emulator route does first (`advance_quantum_s` 0): bring the world to now."""
        now = self.clock.now()
        if now > self.platform.now:
            self.platform.advance_to(now)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return self._answer(method, path, json, headers or {})

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        resp = self._answer(method, url, None, headers or {})
        await resp.aread()  # in memory, as a MockTransport's: `_read_httpx` reads `.content`
        yield resp

    def _answer(
        self, method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        self.advance()
        parts = [unquote(s) for s in urlsplit(path).path.strip("/").split("/")]
        try:
            return self._route(method, parts, body, headers)
        except EmulatorError as exc:
            return httpx.Response(exc.status, json={"error": exc.message})

    def _route(
        self,
        method: str,
        parts: list[str],
        body: Mapping[str, Any] | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        p = self.platform
        if "inference" in parts:  # <status.url><engine_metrics_path>
            i = parts.index("inference")
            ns, name, rest = parts[i + 1], parts[i + 2], "/" + "/".join(parts[i + 3 :])
            if method != "GET" or rest != self.engine_metrics_path:
                raise EmulatorError(404, "not found")
            om = "application/openmetrics-text" in headers.get("accept", "")
            got = p.render_replica_engine(ns, name, openmetrics=om)
            if got is None:
                raise EmulatorError(503, "no replica ready")
            return httpx.Response(200, text=got[0], headers={"content-type": got[1]})
        if "endpoint" not in parts:
            raise EmulatorError(404, "not found")
        i = parts.index("endpoint")
        ns = parts[i + 1]
        name = parts[i + 2] if len(parts) > i + 2 else None
        action = parts[i + 3] if len(parts) > i + 3 else None
        if ns not in p.namespaces():
            raise EmulatorError(403, f"{self.user.name} has no access to namespace {ns}")
        by = self.user
        if name is None and method == "GET":
            return httpx.Response(200, json={"items": p.list(ns)})
        if name is not None and action is None:
            if method == "GET":
                return httpx.Response(200, json=p.get(ns, name))
            if method == "PUT":
                return httpx.Response(200, json=p.update(ns, name, dict(body or {}), by=by))
        if name is not None and method == "POST":
            if action == "pause":
                return httpx.Response(200, json=p.pause(ns, name, by=by))
            if action == "resume":
                return httpx.Response(200, json=p.resume(ns, name, by=by))
            if action == "scale-to-zero":
                return httpx.Response(200, json=p.scale_to_zero(ns, name, by=by))
        if name is not None and method == "GET" and action == "open-metrics":
            om = "application/openmetrics-text" in headers.get("accept", "")
            text, media = p.render_feed(ns, name, openmetrics=om)
            media = media or "text/plain; version=0.0.4; charset=utf-8"
            return httpx.Response(200, text=text, headers={"content-type": media})
        raise EmulatorError(405 if name is not None else 404, "not found")


class PlatformClient(EndpointsClient):
    """`EndpointsClient` whose requests are answered by `platform` in-process (module doc)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        platform: Platform,
        clock: Clock,
        user: UserRef,
        **kw: Any,
    ) -> None:
        super().__init__(base_url, token, **kw)
        real = self._http
        self._http = _PlatformHttp(  # type: ignore[assignment]
            platform, clock=clock, user=user, headers=real.headers, base_url=real.base_url
        )
        self._feed_via_aiohttp = False
        self.platform = platform
        self._unused = real
        # Per namespace: the last listing's version (`Platform.listing_version`), the records
        # built from it, and the items skipped as unparsable. Between changes (a write, a
        # replica ready, a state change) the listing is the same JSON, so the same records
        # (frozen), and the version says so without rendering it.
        self._listed: dict[str, tuple[ListingVersion, list[ListedEndpoint], list[Any]]] = {}

    async def list_endpoints(
        self, namespace: str, *, skip_invalid: bool = True
    ) -> list[ListedEndpoint]:
        """The real listing (`EndpointsClient.list_endpoints`) when the platform's listing
        changed since the last call, else the records it built then."""
        http: _PlatformHttp = self._http  # type: ignore[assignment]
        http.advance()
        p = self.platform
        ok = namespace in p.namespaces() and skip_invalid
        version = p.listing_version(namespace) if ok else None
        last = self._listed.get(namespace)
        if version is not None and last is not None and last[0] == version:
            self.invalid_items = list(last[2])
            return list(last[1])
        got = await super().list_endpoints(namespace, skip_invalid=skip_invalid)
        if version is not None:
            self._listed[namespace] = (version, list(got), list(self.invalid_items))
        return got

    async def aclose(self) -> None:
        await self._unused.aclose()
        await super().aclose()


# ---------------------------------------------------------------------------------------------
# the default feed without text


def _fmt_float(v: float) -> float:
    """A value as the parser reads it back from `platform._fmt`'s text."""
    if math.isnan(v):
        return math.nan
    if float(v).is_integer() and abs(v) < 1e15:
        return float(int(v))
    return float(f"{v:.9g}")


def feed_sample(platform: Platform, ns: str, name: str, *, at: float) -> FeedSample | None:
    """The `FeedSample` that `parse_feed(render_feed(ns, name), at=at)` gives for the platform's
    "full" feed read with the `auto` preset (the `platform` preset), or None for any other shape
    (the caller renders and parses then). Values go through the text's formatting (`_fmt`,
    two decimals for percentages) so they are the parsed floats, not the platform's own."""
    if platform.feed_shape(ns, name) != "full":
        return None
    v = platform.feed_values(ns, name)
    series: dict[tuple[str, str], float] = {}
    for (rid, code), n in v.counters:
        k = (rid, status_class(code))
        series[k] = series.get(k, 0.0) + float(n)
    requests: dict[str, float] = {}
    by_replica: dict[str, float] = {}
    for (rid, cls), n in series.items():
        requests[cls] = requests.get(cls, 0.0) + n
        by_replica[rid] = by_replica.get(rid, 0.0) + n
    per: dict[str, dict[str, float]] = {}
    replicas = {rid for (rid, _), _ in v.counters if rid}
    for metric, (_, values) in v.hardware.items():
        per[metric] = {rid: float(f"{x:.2f}") for rid, x in values}
        replicas.update(rid for rid, _ in values if rid)
    read = ((q, _fmt_float(x)) for q, x in v.quantiles)
    latency = {q: x for q, x in read if not math.isnan(x)}
    return FeedSample(
        at=at,
        pending=None if v.pending is None else float(v.pending),
        waiting=None,
        running=None,
        requests=requests,
        requests_by_replica=by_replica,
        latency=dict(sorted(latency.items())),
        latency_count=float(v.latency_count),
        latency_sum=_fmt_float(v.latency_sum),
        cpu=per.get("cpu_usage_percent", {}),
        gpu=per.get("gpu_usage_percent", {}),
        memory=per.get("memory_usage_percent", {}),
        gpu_memory=per.get("gpu_memory_usage_percent", {}),
        kv_cache={},
        replicas_seen=frozenset(replicas),
        request_series=series,
        preset="platform",
    )


class PlatformScraper(Scraper):
    """A `Scraper` that reads the default feed straight from the platform (`feed_sample`) and
    every other feed the real way (through its client, here a `PlatformClient`)."""

    def __init__(self, client: PlatformClient, mapping: Any = None, **kw: Any) -> None:
        super().__init__(client, mapping, **kw)
        self._platform = client.platform
        self.direct = 0  # samples built without text (tests read it)

    @classmethod
    def replacing(cls, scraper: Scraper, client: PlatformClient) -> PlatformScraper:
        """This scraper in place of the one `Governor` built (same mapping, choices, limits),
        so the loop is constructed exactly as in production."""
        new = cls.__new__(cls)
        new.__dict__.update(scraper.__dict__)
        new._client = client
        new._platform = client.platform
        new.direct = 0
        return new

    async def scrape_into(
        self,
        keys: Sequence[tuple[str, str]],
        sink: Callable[[str, FeedSample | FeedError], None],
    ) -> None:
        rest: list[tuple[str, str]] = []
        for ns, name in dict.fromkeys(keys):
            key = f"{ns}/{name}"
            got = self._direct(ns, name, key)
            if got is None:
                rest.append((ns, name))
            else:
                self.direct += 1
                sink(key, got)
        if rest:
            await super().scrape_into(rest, sink)

    def _direct(self, ns: str, name: str, key: str) -> FeedSample | None:
        how = (self._choice(key) if self._choice is not None else None) or FeedChoice()
        if self._mapping is not None or how != FeedChoice():
            return None
        try:
            return feed_sample(self._platform, ns, name, at=self._clock.now())
        except EmulatorError:
            return None  # the real path turns it into the error the loop expects
