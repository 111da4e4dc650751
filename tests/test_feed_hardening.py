"""A bad feed cannot stall the loop (issue 13, item 6), end to end over loopback.

Governor ticks against the emulator through the fault proxy (controller/emulator/faults.py), which
serves one endpoint ("chat") an adversarial feed while "other" keeps its real one. Each bad feed
must end as one counted scrape error for "chat" only: the tick completes, "other" gets its
sample, and `/healthz` keeps answering while the bad scrape runs. Responsiveness is measured by
counting answered probes (and, for the parse, the probes answered while a parse was running in
its worker thread), never by a timing threshold.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controller.daemon.exporter import Metrics, MetricsServer, create_app
from controller.emulator.faults import Fault, FaultProxy
from controller.emulator.load import Constant
from controller.settings import Settings
from tests.conftest import NS, World
from tests.test_scrape import EMULATOR_FEED

MIB = 1024 * 1024
CHAT = f"{NS}/chat"
OTHER = f"{NS}/other"
FEED_PATH = r"/chat/open-metrics$"


def gzip_bomb(inflated: int, unit: bytes = b"pending_requests 1\n") -> bytes:
    """A gzip body of `inflated` bytes of `unit` repeated, ~1000x smaller on the wire."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = unit * (MIB // len(unit))
    parts = [z.compress(block) for _ in range(inflated // len(block))]
    parts.append(z.flush())
    return b"".join(parts)


def sample(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return m.registry.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(world.server.root_url) as p:
        yield p


def via(world: World, proxy: FaultProxy, **over: Any) -> Settings:
    api = {"base_url": proxy.url + "/v2", "max_attempts": 1}
    return world.settings(api=api, **over)


def two_endpoints(world: World) -> None:
    world.add("chat", load=Constant(2.0), tags=["managed"])
    world.add("other", load=Constant(2.0), tags=["managed"])


def assert_only_chat_failed(gov: Any, m: Metrics, report: Any, reason: str, text: str) -> None:
    assert report.failed is None
    assert set(report.feed_errors) == {CHAT}, report.feed_errors
    assert report.feed_errors[CHAT].startswith(f"{reason}: ")
    assert text in report.feed_errors[CHAT]
    errors = {
        r: sample(m, "governor_scrape_errors_total", {"reason": r})
        for r in ("unavailable", "timeout", "too_large", "parse_error", "stale")
    }
    assert errors == {r: (1.0 if r == reason else 0.0) for r in errors}
    assert {e.decision.key for e in report.entries} == {CHAT, OTHER}
    latest = gov.windows[OTHER].latest
    assert latest is not None
    assert latest.at == gov.clock.now()  # this tick's sample
    assert CHAT not in gov.windows or gov.windows[CHAT].latest is None
    stale = {"namespace": NS, "endpoint": "other"}
    assert sample(m, "governor_endpoint_stale", stale) == 0.0


BOMB = gzip_bomb(64 * MIB)
FIFTY_MB = b"pending_requests 1\n" * (50 * MIB // 19)

# (id, fault kwargs, scrape-error reason, text in the error)
BAD_FEEDS: list[tuple[str, dict[str, Any], str, str]] = [
    ("50MB", {"payload": FIFTY_MB}, "too_large", "Content-Length"),
    (
        "50MB-chunked",
        {"payload": FIFTY_MB, "chunked": True, "chunk_bytes": MIB},
        "too_large",
        "max_body_bytes",
    ),
    (
        "gzip-bomb",
        {"payload": BOMB, "headers": [("content-encoding", "gzip")]},
        "too_large",
        "max_decoded_bytes",
    ),
    (
        "duplicate-series",
        {"payload": (EMULATOR_FEED * 2).encode()},
        "parse_error",
        "duplicate series",
    ),
    (
        "after-eof",
        {"payload": (EMULATOR_FEED + "# EOF\npending_requests 90\n").encode()},
        "parse_error",
        "content after `# EOF`",
    ),
    ("nan", {"payload": b"pending_requests NaN\n"}, "parse_error", "impossible value nan"),
    ("inf", {"payload": b"pending_requests +Inf\n"}, "parse_error", "impossible value inf"),
    ("negative", {"payload": b"pending_requests -3\n"}, "parse_error", "impossible value -3"),
    (
        "huge-int",
        {"payload": b"pending_requests " + b"9" * 4301 + b"\n"},
        "parse_error",
        "impossible value inf",
    ),
    ("bom", {"payload": ("\ufeff" + EMULATOR_FEED).encode()}, "parse_error", "byte-order mark"),
    (
        "unknown-encoding",
        {"payload": b"x", "headers": [("content-encoding", "br")]},
        "unavailable",
        "unsupported Content-Encoding",
    ),
]


@pytest.mark.parametrize(
    ("fault", "reason", "text"),
    [(f, r, t) for _, f, r, t in BAD_FEEDS],
    ids=[i for i, *_ in BAD_FEEDS],
)
async def test_a_bad_feed_is_one_counted_error_for_its_endpoint_only(
    world: World, proxy: FaultProxy, fault: dict[str, Any], reason: str, text: str
):
    two_endpoints(world)
    s = via(world, proxy)
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        proxy.add(Fault("body", path=FEED_PATH, **fault))
        world.clock.advance(15)
        report = await asyncio.wait_for(gov.tick(), 30)
    assert proxy.injected["body"] == 1
    assert_only_chat_failed(gov, m, report, reason, text)
    chat = world.entries("chat")[-1]
    assert not chat.decision.acts  # no usable sample: it holds


def bad_last_line(size: int) -> bytes:
    """`size` bytes of distinct, well-formed series and one bad line at the very end."""
    lines = [f'pending_requests{{replica_id="r{i}"}} 1' for i in range(size // 36)]
    return ("\n".join(lines) + "\npending_requests{\n").encode()


# (id, fault, settings over the defaults, scrape-error reason, text, probes answered at least,
# parsed off the loop). The bomb is stopped within milliseconds, so its tick is short.
STALLERS: list[tuple[str, Fault, dict[str, Any], str, str, int, bool]] = [
    (
        "slow-body",
        Fault("slow_body", path=FEED_PATH, chunk_bytes=8, chunk_interval_s=0.05),
        {"deadline_s": 1.0},
        "timeout",
        "the scrape deadline of 1s",
        5,
        False,
    ),
    (
        "gzip-bomb",
        Fault("body", path=FEED_PATH, payload=BOMB, headers=[("content-encoding", "gzip")]),
        {},
        "too_large",
        "max_decoded_bytes",
        1,
        False,
    ),
    (
        "big-feed-bad-last-line",
        Fault("body", path=FEED_PATH, payload=bad_last_line(8 * MIB)),
        {"max_body_bytes": 16 * MIB, "max_decoded_bytes": 16 * MIB, "parse_deadline_s": 1.0},
        "parse_error",
        "over scrape.parse_deadline_s",
        5,
        True,
    ),
]


@pytest.mark.parametrize(
    ("fault", "scrape", "reason", "text", "probes", "off_loop"),
    [row[1:] for row in STALLERS],
    ids=[row[0] for row in STALLERS],
)
async def test_healthz_answers_and_the_tick_completes_during_a_bad_scrape(
    world: World,
    proxy: FaultProxy,
    fault: Fault,
    scrape: dict[str, Any],
    reason: str,
    text: str,
    probes: int,
    off_loop: bool,
):
    two_endpoints(world)
    s = via(world, proxy, scrape=scrape)
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        srv = MetricsServer(create_app(m, gov.health, world.clock), host="127.0.0.1", port=0)
        await srv.start()
        codes: list[int] = []
        while_parsing = 0
        ticking = asyncio.Event()

        async def probe() -> None:
            nonlocal while_parsing
            async with httpx.AsyncClient(timeout=5) as c:
                while True:
                    r = await c.get(f"http://127.0.0.1:{srv.port}/healthz")
                    if ticking.is_set():
                        codes.append(r.status_code)
                        while_parsing += gov.scraper.parsing_off_loop > 0
                    await asyncio.sleep(0.005)

        prober = asyncio.create_task(probe())
        try:
            proxy.add(fault)
            world.clock.advance(15)
            ticking.set()
            report = await asyncio.wait_for(gov.tick(), 30)
            ticking.clear()
        finally:
            prober.cancel()
            await srv.stop()
    assert_only_chat_failed(gov, m, report, reason, text)
    assert len(codes) >= probes, codes  # the loop answered probes all through the bad scrape
    assert set(codes) == {200}
    if off_loop:
        assert while_parsing >= 2, (while_parsing, len(codes))


async def test_gzip_feeds_within_the_caps_are_read(world: World, proxy: FaultProxy):
    """Compression itself is fine: a gzip feed under both caps parses like the plain one."""
    two_endpoints(world)
    s = via(world, proxy)
    m = Metrics()
    payload = gzip.compress(EMULATOR_FEED.encode())
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        proxy.add(
            Fault("body", path=FEED_PATH, payload=payload, headers=[("content-encoding", "gzip")])
        )
        world.clock.advance(15)
        report = await gov.tick()
    assert report.feed_errors == {}
    assert gov.windows[CHAT].latest is not None
    assert gov.windows[CHAT].latest.pending == 7.0
