"""Governor re-exports the signals it decided on: `governor_endpoint_signal`, the source of the
in-flight load and the feed preset, for managed endpoints only, through the real loop against the
emulator over loopback HTTP."""

from __future__ import annotations

import pytest

from controller.daemon.exporter import Metrics
from controller.emulator.load import Constant
from tests.conftest import NS, World, metric

SIGNAL = "governor_endpoint_signal"


def signals(scraped: dict, name: str) -> dict[str, float]:
    return {
        dict(labels)["signal"]: v
        for (n, labels), v in scraped.items()
        if n == SIGNAL and dict(labels)["endpoint"] == name
    }


async def test_signals_as_read_follow_the_feed_and_vanish_when_unmanaged(world: World):
    """Each tick's exported pending, in-flight and utilisation equal the feed the emulator served,
    the request rate is the counter's increase over the tick; an endpoint that stops being managed
    leaves no series behind."""
    world.add("chat", tags=["managed"], load=Constant(3.0), min_replica=2, max_replica=2)
    world.add("quiet", tags=["managed"], load=None)
    s = world.settings(defaults={"floor": 1, "ceiling": 2})
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 4)
        served_before = world.platform.snapshot()["endpoints"][f"{NS}/chat"]["served"]
        await world.run_ticks(gov, 1)
        snap = world.platform.snapshot()["endpoints"][f"{NS}/chat"]
        scraped = await world.scrape_metrics(gov)

        chat = signals(scraped, "chat")
        assert chat["pending"] == world.platform.pending_requests(NS, "chat") == snap["pending"]
        assert chat["in_flight"] == chat["pending"]
        assert chat["request_rate"] == pytest.approx((snap["served"] - served_before) / 15.0)
        assert chat["request_rate"] > 1.0  # a 3 req/s load
        for util in ("cpu", "gpu", "memory", "gpu_memory"):
            assert 0.0 < chat[util] <= 100.0, util
        quantiles = world.platform.latency_quantiles(NS, "chat")
        assert chat["latency_p50_seconds"] == pytest.approx(quantiles[0.5], rel=1e-6)
        assert chat["latency_p99_seconds"] == pytest.approx(quantiles[0.99], rel=1e-6)
        lbl = {"namespace": NS, "endpoint": "chat"}
        src = "governor_endpoint_signal_source"
        assert metric(scraped, src, **lbl, signal="in_flight", source="pending") == 1.0
        # The preset detected from the feed (the emulator serves the platform shape).
        assert metric(scraped, "governor_endpoint_preset_info", **lbl, preset="platform") == 1.0
        assert signals(scraped, "quiet")["request_rate"] == 0.0

        await world.human("PUT", f"/endpoint/{NS}/chat", json={"tags": []})
        await world.run_ticks(gov, 1)
        scraped = await world.scrape_metrics(gov)
        assert signals(scraped, "chat") == {}
        assert not [
            k
            for k in scraped
            if dict(k[1]).get("endpoint") == "chat" and k[0].startswith("governor_endpoint_")
        ]
        assert signals(scraped, "quiet")
