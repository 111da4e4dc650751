"""Engine-native scraping (issue 13, item 3): `feed_source: engine` reads the engine's own metrics
at the endpoint URL (`status.url` + `engine_metrics_path`) with the token, end to end over
loopback against the emulator, which serves one ready replica per GET as a load balancer would.
The fetch is the platform feed's hardened one (caps, deadline) under route `engine_metrics`."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from controller.daemon.exporter import Metrics
from controller.emulator.load import Constant
from controller.emulator.platform import SimParams
from controller.errors import ConfigError, FeedTooLarge, FeedUnavailable
from controller.platform.client import EndpointsClient
from controller.platform.scrape import parse_feed, per_replica_estimate
from controller.platform.signals import FeedSample
from controller.settings import load_settings
from tests.conftest import HUMAN, NS, TOKEN, World, endpoint_body

KEY = f"{NS}/chat"


def create(world: World, *, replicas: int, rate: float, feed: str = "tgi") -> None:
    world.platform.create(
        NS,
        endpoint_body("chat", tags=["managed"], min_replica=replicas, max_replica=replicas),
        by=HUMAN,
        load=Constant(rate),
        ready=True,
        sim=SimParams(cold_start_s=60.0, concurrency=4, service_time_s=2.0, feed=feed),
    )


def engine_rule(**extra: Any) -> list[dict[str, Any]]:
    return [{"match": {"names": ["chat"]}, "feed_source": "engine", **extra}]


async def test_the_emulator_serves_each_replica_in_turn_behind_the_token(world: World):
    create(world, replicas=3, rate=8.0)
    world.jump(world.clock.now() + 120)
    url = world.platform.get(NS, "chat")["status"]["url"] + "/metrics"
    async with httpx.AsyncClient() as c:
        assert (await c.get(url)).status_code == 401
        assert (await c.get(url, headers={"Authorization": "Bearer nope"})).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bodies = [(await c.get(url, headers=auth)).text for _ in range(3)]
    truth = world.platform.engine_load(NS, "chat")  # the clock did not move meanwhile
    samples = [parse_feed(b, at=1.0) for b in bodies]
    assert {s.preset for s in samples} == {"tgi"}
    # three GETs, three replicas: their shares add up to the endpoint's queue and batch
    assert sum(s.waiting for s in samples) == truth.waiting
    assert sum(s.running for s in samples) == truth.running
    assert truth.running > 0


async def test_engine_source_scales_end_to_end_and_reads_replica_times_ready(world: World):
    """With `feed_source: engine` on the published platform feed (no pending series at all),
    Governor reads the queue from the engine and scales up under load."""
    create(world, replicas=2, rate=0.5, feed="published")
    s = world.settings(endpoints=engine_rule(), defaults={"ceiling": 8})
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 2)
        world.platform.set_load(NS, "chat", Constant(12.0))  # ~24 in flight at 2 s per request
        for _ in range(20):
            await world.run_ticks(gov, 1)
            if world.scaling("chat")[0] >= 4:
                break
        latest = gov.windows[KEY].latest
        decision = world.reports[-1].entries[0].decision
    assert world.scaling("chat")[0] >= 4, decision.message
    assert latest.preset == "tgi"
    assert latest.pending is not None
    assert latest.requests == {}  # one replica's counters are not a rate with >1 replica
    calls = {
        (r, o): v for (r, o), v in _calls(m).items() if r in ("engine_metrics", "open_metrics")
    }
    assert calls.get(("engine_metrics", "ok"), 0) >= 3
    assert ("open_metrics", "ok") not in calls  # the engine replaced the platform feed


def _calls(m: Metrics) -> dict[tuple[str, str], float]:
    out = {}
    for metric in m.registry.collect():
        if metric.name == "governor_api_calls":
            for smp in metric.samples:
                if smp.name.endswith("_total"):
                    out[smp.labels["route"], smp.labels["outcome"]] = smp.value
    return out


def test_per_replica_estimate():
    """Counts times the ready replicas; percentages kept; one replica's counters dropped."""
    one = FeedSample(
        at=1.0,
        pending=3.0,
        waiting=1.0,
        running=2.0,
        gpu={"": 80.0},
        requests={"2xx": 10.0},
        request_series={("", "2xx"): 10.0},
        latency_count=10.0,
        latency_sum=5.0,
        preset="tgi",
    )
    est = per_replica_estimate(one, 4)
    assert (est.pending, est.waiting, est.running) == (12.0, 4.0, 8.0)
    assert est.gpu == {"": 80.0}
    assert est.requests == {}
    assert est.request_series == {}
    assert est.latency_count is None
    assert est.preset == "tgi"
    assert per_replica_estimate(one, 1) is one  # one replica: it is the endpoint
    assert per_replica_estimate(one, 0) is one  # a replica answered, whatever the listing said


@contextlib.asynccontextmanager
async def serve(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_engine_fetch_is_the_hardened_one_and_sends_the_token():
    seen: list[str | None] = []
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = bomb.compress(b"\0" * (8 * 1024 * 1024)) + bomb.flush()

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization"))
        if request.path == "/bomb/metrics":
            return web.Response(body=body, headers={"content-encoding": "gzip"})
        return web.Response(text="tgi_queue_size 2\n")

    async with serve(handler) as root:
        calls: list[Any] = []
        async with EndpointsClient(
            "http://127.0.0.1:9/v2", TOKEN, on_call=calls.append, feed_max_decoded_bytes=1 << 20
        ) as client:
            assert await client.fetch_engine_metrics(root + "/ok/metrics", KEY) == (
                "tgi_queue_size 2\n"
            )
            with pytest.raises(FeedTooLarge, match="max_decoded_bytes"):
                await client.fetch_engine_metrics(root + "/bomb/metrics", KEY)
    assert seen == [f"Bearer {TOKEN}"] * 2
    assert [(c.route, c.outcome) for c in calls] == [
        ("engine_metrics", "ok"),
        ("engine_metrics", "error"),
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://endpoint.example/metrics", "plain http"),
        ("ftp://127.0.0.1/metrics", r"not an http\(s\) URL"),
        ("not a url", r"not an http\(s\) URL"),
    ],
)
async def test_the_token_is_never_sent_in_clear(url: str, message: str):
    async with EndpointsClient("http://127.0.0.1:9/v2", TOKEN) as client:
        with pytest.raises(FeedUnavailable, match=message):
            await client.fetch_engine_metrics(url, KEY)


@pytest.mark.parametrize(
    "rule",
    [
        {"feed_source": "sidecar"},
        {"feed_source": "engine", "engine_metrics_path": "metrics"},
        {"feed_source": "engine", "engine_metrics_path": "/metrics?x=1"},
    ],
)
def test_engine_settings_are_validated(rule: dict[str, Any]):
    over = {"endpoints": [{"match": {"names": ["chat"]}, **rule}]}
    with pytest.raises(ConfigError, match=next(iter(k for k in rule if rule[k] != "engine"))):
        load_settings(None, overrides=over, env={})
