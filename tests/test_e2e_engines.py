"""Governor with no signal settings against endpoints serving each engine's own feed shape (the
emulator's `feed`, built from the engines' code), over loopback HTTP in virtual time: the preset is
detected, and the default policy scales up under load and back to the floor when idle."""

from __future__ import annotations

import httpx
import pytest

from controller.daemon.exporter import Metrics
from controller.emulator.engines import ENGINE_FEEDS
from controller.emulator.load import Constant
from controller.emulator.platform import SimParams
from controller.platform.scrape import parse_feed
from controller.settings import load_settings
from tests.conftest import HUMAN, NS, TOKEN, World, endpoint_body, metric

PRESET = {"vllm-v0": "vllm"}  # the one preset reads both vLLM generations


def _settings(world: World):  # type: ignore[no-untyped-def]
    """The daemon's defaults: no scrape.mapping, no feed_preset, no policy settings."""
    return load_settings(
        None,
        overrides={
            "api": {"base_url": world.server.base_url},
            "namespaces": [NS],
            "manage": {"tags": ["managed"]},
            "state": {"path": str(world.tmp / "state.sqlite")},
            "defaults": {"floor": 1, "ceiling": 6},
        },
        env={"HF_TOKEN": TOKEN},
    )


@pytest.mark.parametrize("feed", ENGINE_FEEDS)
async def test_default_daemon_scales_on_each_engine_feed(world: World, feed: str) -> None:
    world.platform.create(
        NS,
        endpoint_body("chat", tags=["managed"], min_replica=1, max_replica=1),
        by=HUMAN,
        load=Constant(0.2),
        ready=True,
        sim=SimParams(cold_start_s=60.0, concurrency=4, service_time_s=2.0, feed=feed),
    )
    s = _settings(world)
    assert s.scrape.custom_mapping is None
    assert s.defaults.feed_preset == "auto"
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 6)
        assert world.scaling("chat") == (1, 1)
        assert gov.windows[f"{NS}/chat"].latest.preset == PRESET.get(feed, feed)

        world.platform.set_load(NS, "chat", Constant(10.0))  # ~20 in flight at 2 s per request
        for _ in range(20):
            await world.run_ticks(gov, 1)
            if world.scaling("chat")[0] >= 3:
                break
        up = world.reports[-1].entries[0].decision
        assert world.scaling("chat")[0] >= 3, up.message
        peak = world.scaling("chat")[0]
        # What Governor read is the emulator's queue at the scrape (the clock has not moved).
        latest = gov.windows[f"{NS}/chat"].latest
        truth = world.platform.engine_load(NS, "chat")
        assert latest.waiting == truth.waiting
        scraped = await world.scrape_metrics(gov)
        lbl = {"namespace": NS, "endpoint": "chat"}
        preset = PRESET.get(feed, feed)
        assert metric(scraped, "governor_endpoint_preset_info", **lbl, preset=preset) == 1.0
        source = metric(
            scraped,
            "governor_endpoint_signal_source",
            **lbl,
            signal="in_flight",
            source="littles_law" if feed == "tei" else "pending",
        )
        assert source == 1.0
        if feed == "tei":  # no running gauge: in flight is derived from completions and latency
            assert latest.pending is None
            assert "Little's law" in up.message, up.message
        else:
            assert latest.running == truth.running
            assert latest.pending == truth.waiting + truth.running

        world.platform.set_load(NS, "chat", Constant(0.0))
        for _ in range(80):  # 20 min: the down window (300 s) and the steps down
            await world.run_ticks(gov, 1)
            if world.scaling("chat") == (1, 1):
                break
        down = world.reports[-1].entries[0].decision
        assert world.scaling("chat") == (1, 1), down.message
        assert peak > 1


@pytest.mark.parametrize("feed", ["vllm", "sglang"])
async def test_openmetrics_from_the_engine_reads_the_same(world: World, feed: str) -> None:
    """prometheus_client engines escape `vllm:` to `vllm_` in OpenMetrics: same signals."""
    world.platform.create(
        NS,
        endpoint_body("chat", tags=["managed"], min_replica=2, max_replica=2),
        by=HUMAN,
        load=Constant(6.0),
        ready=True,
        sim=SimParams(cold_start_s=60.0, concurrency=4, service_time_s=2.0, feed=feed),
    )
    world.jump(world.clock.now() + 120)
    url = f"{world.server.base_url}/endpoint/{NS}/chat/open-metrics"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as c:
        text = (await c.get(url, headers={**headers, "accept": "text/plain"})).text
        om = await c.get(url, headers={**headers, "accept": "application/openmetrics-text"})
    assert f"{feed}:num_" in text
    assert f"{feed}_num_" in om.text
    assert om.text.rstrip().endswith("# EOF")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    a, b = parse_feed(text, at=1.0), parse_feed(om.text, at=1.0)
    truth = world.platform.engine_load(NS, "chat")
    assert a == b
    assert (a.waiting, a.running) == (truth.waiting, truth.running)
    assert a.pending == truth.waiting + truth.running
    assert a.value("kv_cache") == pytest.approx(100.0 * truth.kv_usage)
