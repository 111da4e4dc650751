"""The metrics feed over aiohttp (`EndpointsClient.fetch_metrics` without an injected transport).

Everything goes over real loopback HTTP: the emulator under uvicorn (the `world` fixture) for the
API's own answers and faults, and small `aiohttp.web` / raw asyncio servers on 127.0.0.1 for what
the emulator cannot say (non-UTF-8 bodies, redirects, malformed HTTP, connection counting). Each
behaviour is checked against what the httpx path does, since the two must not differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import socket
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from controller.errors import (
    AuthError,
    BadResponseError,
    FeedTimeout,
    FeedTooLarge,
    FeedUnavailable,
    RetryableApiError,
)
from controller.platform.client import CallRecord, EndpointsClient, _BodyReader
from tests.conftest import NS, TOKEN, World

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Rig:
    """A client on the aiohttp feed path with recorded sleeps and call records."""

    def __init__(
        self, base_url: str, token: str | None = TOKEN, *, check_aiohttp: bool = True, **kw: Any
    ) -> None:
        self.sleeps: list[float] = []
        self.calls: list[CallRecord] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.client = EndpointsClient(base_url, token, sleep=sleep, on_call=self.calls.append, **kw)
        assert self.client._feed_via_aiohttp or not check_aiohttp

    def outcomes(self) -> list[tuple[str, int | None, str]]:
        return [(c.route, c.status, c.outcome) for c in self.calls]


@contextlib.asynccontextmanager
async def rig(base_url: str, token: str | None = TOKEN, **kw: Any) -> AsyncIterator[Rig]:
    r = Rig(base_url, token, **kw)
    try:
        yield r
    finally:
        await r.client.aclose()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[tuple[str, set[Any]]]:
    """`handler` on every path of 127.0.0.1:<free port>; yields (base URL, peers seen)."""
    peers: set[Any] = set()

    async def counting(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", counting)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v2", peers
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server that answers any request with `reply` verbatim and closes."""

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v2"
    finally:
        srv.close()
        await srv.wait_closed()


async def fault(world: World, **kw: Any) -> None:
    await world.admin("POST", "/faults", json={"route": "open-metrics", **kw})


def no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


# ------------------------------------------------------------------------------ the emulator


async def test_body_and_request_match_the_httpx_path(world: World):
    """Same text as httpx returns, same URL, auth, accept and user-agent on the wire."""
    world.add("chat")
    async with (
        rig(world.server.base_url) as r,
        EndpointsClient(world.server.base_url, TOKEN, transport=httpx.AsyncHTTPTransport()) as old,
    ):
        assert not old._feed_via_aiohttp
        via_aiohttp = await r.client.fetch_metrics(NS, "chat")
        via_httpx = await old.fetch_metrics(NS, "chat")
    assert via_aiohttp == via_httpx
    assert "latency_distribution" in via_aiohttp
    assert r.outcomes() == [("open_metrics", 200, "ok")]
    assert r.calls[0].endpoint == f"{NS}/chat"
    calls = await world.admin("GET", "/calls")
    assert [c["path"] for c in calls] == [f"/v2/endpoint/{NS}/chat/open-metrics"] * 2
    assert all(c["user"] == "governor-bot" and c["status"] == 200 for c in calls)


async def test_wrong_token_is_auth_error(world: World):
    """401 propagates as AuthError (a config problem), not as a missing sample."""
    world.add("chat")
    async with rig(world.server.base_url, "hf_wrong_token") as r:
        with pytest.raises(AuthError) as info:
            await r.client.fetch_metrics(NS, "chat")
    assert info.value.status == 401
    assert info.value.endpoint == f"{NS}/chat"
    assert info.value.request_id  # X-Request-Id kept through the httpx.Response shim
    assert r.outcomes() == [("open_metrics", 401, "error")]


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_error_status_is_feed_unavailable(world: World, status: int):
    """404 (unknown endpoint) and 5xx become FeedUnavailable carrying the status; one attempt."""
    world.add("chat")
    name = "chat"
    if status == 404:
        name = "nope"
    else:
        await fault(world, status=status, count=-1)
    async with rig(world.server.base_url) as r:
        with pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, name)
    assert info.value.status == status
    assert info.value.endpoint == f"{NS}/{name}"
    assert "feed fetch failed" in str(info.value)
    assert r.outcomes() == [("open_metrics", status, "error")]
    assert r.sleeps == []


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_then_ok(world: World, status: int):
    """With feed_attempts=2 a 429/503 is retried after at least Retry-After, then succeeds."""
    world.add("chat")
    await fault(world, status=status, count=1, retry_after=3)
    async with rig(world.server.base_url, feed_attempts=2) as r:
        text = await r.client.fetch_metrics(NS, "chat")
    assert "latency_distribution" in text
    assert r.outcomes() == [("open_metrics", status, "retry"), ("open_metrics", 200, "ok")]
    assert len(r.sleeps) == 1
    assert r.sleeps[0] >= 3.0


async def test_retry_after_beyond_backoff_max_stops_at_once(world: World):
    """A Retry-After longer than backoff_max_s is not waited for: one attempt, FeedUnavailable."""
    world.add("chat")
    await fault(world, status=429, count=-1, retry_after=120)
    async with rig(world.server.base_url, feed_attempts=3, backoff_max_s=20) as r:
        with pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, "chat")
    assert info.value.status == 429
    assert isinstance(info.value.__cause__, RetryableApiError)
    assert info.value.__cause__.retry_after == 120
    assert r.outcomes() == [("open_metrics", 429, "error")]
    assert r.sleeps == []


async def test_timeout_is_feed_unavailable(world: World):
    """A server slower than timeout_s is a timeout (retryable, chained), then FeedTimeout."""
    world.add("chat")
    await fault(world, status=None, delay_s=1.0, count=2)
    async with rig(world.server.base_url, timeout_s=0.2, feed_attempts=2) as r:
        with pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, "chat")
    assert info.value.status is None
    assert isinstance(info.value, FeedTimeout)
    assert info.value.reason == "timeout"
    cause = info.value.__cause__
    assert isinstance(cause, RetryableApiError)
    assert "no complete response within 0.2s" in str(cause)
    assert isinstance(cause.__cause__, TimeoutError)
    assert r.outcomes() == [("open_metrics", None, "retry"), ("open_metrics", None, "error")]


async def test_echoed_token_never_leaks(world: World):
    """A server echoing the token in an error body cannot put it in exceptions, logs or records."""
    world.add("chat")
    await fault(world, status=400, count=-1, body=f'{{"error": "bad token {TOKEN}"}}')
    async with rig(world.server.base_url) as r:
        assert "token=set" in repr(r.client)
        with capture_logs() as logs, pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, "chat")
        session_repr = repr(r.client._feed_session)
        no_token(repr(r.client), repr(vars(r.client)), session_repr)
    exc = info.value
    assert "***" in str(exc)
    assert exc.status == 400
    no_token(str(exc), repr(exc), str(exc.__cause__), repr(exc.__cause__))
    no_token(repr(r.calls), repr(logs))


async def test_quoted_path_and_no_token():
    """Names are percent-encoded as httpx encodes them; without a token no auth is sent."""
    async with serve(_echo_path) as (base, _), rig(base, None) as r:
        text = await r.client.fetch_metrics("my ns", "a b/c")
    path, auth = text.split("\n")
    assert path == "/v2/endpoint/my%20ns/a%20b%2Fc/open-metrics"
    assert auth == "none"


async def _echo_path(request: web.Request) -> web.Response:
    auth = request.headers.get("authorization", "none")
    return web.Response(text=f"{request.raw_path}\n{auth}")


# ------------------------------------------------------------------------------ own servers


async def test_headers_on_the_wire():
    """user-agent, bearer token and the open-metrics accept header, as the httpx path sends."""
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.Response(text="pending_requests 1\n")

    async with serve(handler) as (base, _):
        async with rig(base) as r:
            assert await r.client.fetch_metrics(NS, "ep") == "pending_requests 1\n"
        async with EndpointsClient(base, TOKEN, transport=httpx.AsyncHTTPTransport()) as old:
            assert await old.fetch_metrics(NS, "ep") == "pending_requests 1\n"
    new, ref = seen
    for name in ("user-agent", "authorization", "accept"):
        assert new[name] == ref[name]
    assert new["authorization"] == f"Bearer {TOKEN}"
    assert new["accept"].startswith("application/openmetrics-text")


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(b"m 1 \xff\xfe\n", "text/plain", "m 1 \ufffd\ufffd\n", id="bad-utf8"),
        pytest.param(
            b'm{l="\xe9"} 1\n', "text/plain; charset=latin-1", 'm{l="é"} 1\n', id="latin1"
        ),
        pytest.param(b"m 1\n", "text/plain; charset=no-such-codec", "m 1\n", id="unknown-charset"),
    ],
)
async def test_body_decoding_like_httpx(body: bytes, content_type: str, expected: str):
    """Charset from Content-Type, else UTF-8; undecodable bytes are replaced, never fatal."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"content-type": content_type})

    async with serve(handler) as (base, _):
        async with rig(base) as r:
            text = await r.client.fetch_metrics(NS, "ep")
        async with EndpointsClient(base, TOKEN, transport=httpx.AsyncHTTPTransport()) as old:
            assert await old.fetch_metrics(NS, "ep") == text
    assert text == expected


async def test_redirects_are_not_followed():
    """A 302 is an error status (as with httpx's follow_redirects=False), not a second GET."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/elsewhere")

    async with serve(handler) as (base, _), rig(base) as r:
        with pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, "ep")
    assert info.value.status == 302
    assert hits == [f"/v2/endpoint/{NS}/ep/open-metrics"]


async def test_error_message_header_and_gzip_body_map_like_httpx():
    """X-Error-Message wins over the body; a compressed error body is decoded once, not twice."""

    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(
            status=403,
            text='{"error": "token lacks scope"}',
            headers={"x-error-message": "forbidden here", "x-request-id": "req-1"},
        )
        resp.enable_compression(web.ContentCoding.gzip)
        return resp

    async with serve(handler) as (base, _), rig(base) as r:
        with pytest.raises(AuthError) as info:
            await r.client.fetch_metrics(NS, "ep")
    assert info.value.status == 403
    assert info.value.request_id == "req-1"
    assert "forbidden here" in str(info.value)


async def test_connection_refused_is_feed_unavailable():
    """Nothing listening: a connection error (retryable, chained), then FeedUnavailable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with rig(f"http://127.0.0.1:{port}/v2", feed_attempts=2) as r:
        with pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, "ep")
    cause = info.value.__cause__
    assert isinstance(cause, RetryableApiError)
    assert "connection failed" in str(cause)
    assert isinstance(cause.__cause__, aiohttp.ClientError)
    assert r.outcomes() == [("open_metrics", None, "retry"), ("open_metrics", None, "error")]
    assert len(r.sleeps) == 1


async def test_malformed_response_is_feed_unavailable_without_the_token():
    """Broken HTTP is a connection-class failure; aiohttp's error (whose repr would print the
    request headers) is chained with the headers redacted."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\nx"
    async with raw_server(reply) as base, rig(base) as r:
        with pytest.raises(FeedUnavailable) as info:
            await r.client.fetch_metrics(NS, "ep")
    chain: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    assert any(isinstance(e, aiohttp.ClientError) for e in chain)
    no_token(*(repr(e) for e in chain), *(str(e) for e in chain))
    assert r.outcomes() == [("open_metrics", None, "error")]


async def test_keep_alive_reuses_connections():
    """Sequential fetches share one connection; a concurrent burst opens at most the pool size."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="pending_requests 1\n")

    async with serve(handler) as (base, peers), rig(base, max_connections=4) as r:
        for i in range(50):
            await r.client.fetch_metrics(NS, f"ep{i}")
        assert len(peers) == 1
        await asyncio.gather(*(r.client.fetch_metrics(NS, f"ep{i}") for i in range(100)))
        assert len(peers) <= 4
    assert all(c.outcome == "ok" for c in r.calls)
    assert len(r.calls) == 150


async def test_aclose_closes_the_session_without_warnings():
    """The lazily opened session is closed by aclose(): no "Unclosed client session" on GC."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="pending_requests 1\n")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with serve(handler) as (base, _):
            client = EndpointsClient(base, TOKEN)
            assert client._feed_session is None  # nothing opened before the first fetch
            await client.fetch_metrics(NS, "ep")
            session = client._feed_session
            assert session is not None
            assert not session.closed
            await client.aclose()
            assert session.closed
            assert client._feed_session is None
            with pytest.raises(RuntimeError):
                await client.fetch_metrics(NS, "ep")  # closed, like httpx: nothing is reopened
            assert client._feed_session is None
            del client, session
            gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_aclose_without_a_fetch():
    """A client that never fetched a feed closes cleanly (no session was ever created)."""
    client = EndpointsClient("http://127.0.0.1:9/v2", TOKEN)
    await client.aclose()
    assert client._feed_session is None


# ------------------------------------------------------------------------------ routing rule


async def test_injected_transport_keeps_the_feed_on_httpx():
    """With transport= (MockTransport here, ASGITransport in the simulator) feeds use httpx."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="pending_requests 3\n")

    calls: list[CallRecord] = []
    async with EndpointsClient(
        "https://api.test/v2", TOKEN, transport=httpx.MockTransport(handler), on_call=calls.append
    ) as client:
        assert not client._feed_via_aiohttp
        assert await client.fetch_metrics(NS, "ep") == "pending_requests 3\n"
        assert client._feed_session is None
    assert seen[0].url.path == f"/v2/endpoint/{NS}/ep/open-metrics"
    assert [(c.route, c.outcome) for c in calls] == [("open_metrics", "ok")]


async def test_asgi_transport_keeps_the_feed_on_httpx(world: World):
    """The simulator's in-process wiring: the emulator app through httpx.ASGITransport."""
    world.add("chat")
    transport = httpx.ASGITransport(app=world.server.app)
    async with EndpointsClient("http://emulator/v2", TOKEN, transport=transport) as client:
        assert not client._feed_via_aiohttp
        assert "latency_distribution" in await client.fetch_metrics(NS, "chat")
        assert client._feed_session is None


@pytest.mark.parametrize("var", ["HTTP_PROXY", "ALL_PROXY"])
async def test_proxy_from_environment_keeps_the_feed_on_httpx(monkeypatch, var: str):
    """Where httpx would go through a proxy (trust_env), feeds stay on httpx as well."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv(var, "http://127.0.0.1:3128")
    async with EndpointsClient("http://127.0.0.1:9/v2", TOKEN) as client:
        assert not client._feed_via_aiohttp
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with EndpointsClient("http://127.0.0.1:9/v2", TOKEN) as client:
        assert client._feed_via_aiohttp


# ------------------------------------------------------------------ limits (issue 13, item 6)

MIB = 1024 * 1024
FEED_LINE = b"pending_requests 1\n"


def _gzip_bomb(inflated: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = FEED_LINE * (MIB // len(FEED_LINE))
    return b"".join([*(z.compress(block) for _ in range(inflated // len(block))), z.flush()])


@contextlib.asynccontextmanager
async def both_paths(base: str, **kw: Any) -> AsyncIterator[list[Rig]]:
    """The aiohttp feed path and the httpx one (a real transport), same limits, same server."""
    a = Rig(base, **kw)
    b = Rig(base, transport=httpx.AsyncHTTPTransport(), check_aiohttp=False, **kw)
    try:
        yield [a, b]
    finally:
        await a.client.aclose()
        await b.client.aclose()


def test_inflating_stops_at_the_cap_not_after():
    """A 64 MiB bomb (~160 KB on the wire) fed to the reader whole: it raises having inflated
    the cap plus one byte, never the whole body."""
    bomb = _gzip_bomb(64 * MIB)
    assert len(bomb) < MIB // 4
    reader = _BodyReader("gzip", max_wire=MIB, max_decoded=MIB, endpoint="ns/ep")
    with pytest.raises(BadResponseError, match="max_decoded_bytes"):
        reader.feed(bomb)
    assert reader.decoded == MIB + 1


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("deflate", zlib.compress, id="deflate-zlib"),
        pytest.param("deflate", lambda b: zlib.compress(b, wbits=-15), id="deflate-raw"),
        pytest.param("identity", lambda b: b, id="identity"),
    ],
)
async def test_compressed_feeds_under_the_caps_decode_on_both_paths(encoding, compress):
    body = FEED_LINE * 1000

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=compress(body), headers={"content-encoding": encoding})

    async with serve(handler) as (base, _), both_paths(base) as rigs:
        for r in rigs:
            assert await r.client.fetch_metrics(NS, "ep") == body.decode()


async def test_a_gzip_bomb_is_too_large_on_both_paths():
    bomb = _gzip_bomb(64 * MIB)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"content-encoding": "gzip"})

    async with serve(handler) as (base, _), both_paths(base, feed_max_decoded_bytes=MIB) as rigs:
        for r in rigs:
            with pytest.raises(FeedTooLarge, match=r"max_decoded_bytes \(1,048,576 bytes"):
                await r.client.fetch_metrics(NS, "ep")
            assert r.outcomes() == [("open_metrics", 200, "error")]  # recorded, not retried


async def test_a_declared_length_over_the_cap_is_refused_before_reading():
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=FEED_LINE * 100_000)  # 1.9 MB with a Content-Length

    async with serve(handler) as (base, _), both_paths(base, feed_max_body_bytes=MIB) as rigs:
        for r in rigs:
            with pytest.raises(FeedTooLarge, match=r"Content-Length\) is over"):
                await r.client.fetch_metrics(NS, "ep")


async def test_a_chunked_body_over_the_wire_cap_is_cut_while_reading():
    sent = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 64 MiB if nobody stops it
                await resp.write(b"x" * MIB)
                sent += MIB
        return resp

    async with serve(handler) as (base, _), both_paths(base, feed_max_body_bytes=MIB) as rigs:
        for r in rigs:
            with pytest.raises(FeedTooLarge, match="max_body_bytes"):
                await r.client.fetch_metrics(NS, "ep")
    assert sent < 32 * MIB  # the reader let go; the server did not get to send it all


async def test_a_trickled_body_ends_at_the_scrape_deadline_on_both_paths():
    """A byte every 50 ms never trips a per-read timeout; the whole fetch's deadline ends it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(400):
                await resp.write(b"p")
                await asyncio.sleep(0.05)
        return resp

    limits = {"timeout_s": 30.0, "feed_deadline_s": 0.5, "feed_attempts": 3}
    async with serve(handler) as (base, _), both_paths(base, **limits) as rigs:
        for r in rigs:
            with pytest.raises(FeedTimeout, match=r"the scrape deadline of 0\.5s"):
                await r.client.fetch_metrics(NS, "ep")
            # one attempt: the deadline passed inside it, so the retries had no time left
            assert r.outcomes() == [("open_metrics", 200, "error")]


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        pytest.param({"content-encoding": "br"}, b"x", "unsupported Content-Encoding", id="br"),
        pytest.param(
            {"content-encoding": "gzip"}, gzip.compress(FEED_LINE)[:-8], "truncated", id="cut"
        ),
        pytest.param({"content-encoding": "gzip"}, b"not gzip", "undecodable", id="not-gzip"),
    ],
)
async def test_undecodable_bodies_are_feed_unavailable(headers, body, message):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    async with serve(handler) as (base, _), both_paths(base) as rigs:
        for r in rigs:
            with pytest.raises(FeedUnavailable, match=message) as info:
                await r.client.fetch_metrics(NS, "ep")
            assert info.value.reason == "unavailable"


async def test_the_limits_come_from_scrape_settings(world: World):
    """`make_client` hands `scrape.deadline_s` and both caps to the client; defaults are sane."""
    from controller.platform.client import make_client
    from controller.settings import Settings

    d = Settings().scrape
    assert (d.deadline_s, d.max_body_bytes, d.max_decoded_bytes) == (5.0, 4 * MIB, 4 * MIB)
    assert (d.parse_deadline_s, d.parse_inline_bytes) == (2.0, 256 * 1024)
    s = world.settings(
        scrape={"deadline_s": 1.5, "max_body_bytes": 2048, "max_decoded_bytes": 4096}
    )
    async with make_client(s) as client:
        assert (client._feed_deadline, client._feed_max_body, client._feed_max_decoded) == (
            1.5,
            2048,
            4096,
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"deadline_s": 0},
        {"max_body_bytes": 10},
        {"max_decoded_bytes": 2 * 1024 * MIB},
        {"parse_deadline_s": -1},
        {"parse_inline_bytes": -1},
    ],
)
def test_limit_settings_are_validated(bad):
    from controller.errors import ConfigError
    from controller.settings import load_settings

    with pytest.raises(ConfigError, match=f"scrape.{next(iter(bad))}"):
        load_settings(None, overrides={"scrape": bad}, env={})
