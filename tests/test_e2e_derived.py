"""Governor on the platform's published feed alone: an emulated endpoint serving only the
sample's shape (`latency_distribution`, `http_requests`, CPU/memory; no pending-requests series),
the daemon with its default policy and no signal settings, over loopback HTTP in virtual time."""

from __future__ import annotations

from controller.daemon.exporter import Metrics
from controller.emulator.load import Constant
from controller.settings import load_settings
from tests.conftest import NS, TOKEN, World, metric


async def test_default_daemon_scales_on_derived_concurrency(world: World):
    """With no pending series in the feed, the default policy sizes on the Little's-law estimate:
    it scales up under load and back to the floor when idle, and says so in its reasons and in
    its own metrics."""
    world.platform.config.feed_shape = "published"
    world.add("chat", load=Constant(0.2), tags=["managed"], min_replica=1, max_replica=1)
    feed = world.platform.render_metrics(NS, "chat")
    assert "pending_requests" not in feed
    assert "http_requests" in feed
    s = load_settings(
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
    assert list(s.defaults.policies) == ["slo_target"]
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 6)
        assert world.scaling("chat") == (1, 1)
        world.platform.set_load(NS, "chat", Constant(10.0))  # ~20 in flight at 2 s per request
        for _ in range(20):
            await world.run_ticks(gov, 1)
            if world.scaling("chat")[0] >= 3:
                break
        up = world.reports[-1].entries[0].decision
        assert world.scaling("chat")[0] >= 3, up.message
        assert "Little's law" in up.message, up.message
        peak = world.scaling("chat")[0]
        scraped = await world.scrape_metrics(gov)
        lbl = {"namespace": NS, "endpoint": "chat"}
        src = "governor_endpoint_signal_source"
        assert metric(scraped, src, **lbl, signal="in_flight", source="littles_law") == 1.0
        derived = metric(scraped, "governor_endpoint_signal", **lbl, signal="in_flight")
        assert derived is not None
        assert derived > 5.0
        assert metric(scraped, "governor_endpoint_signal", **lbl, signal="pending") is None

        world.platform.set_load(NS, "chat", Constant(0.0))
        for _ in range(80):  # 20 min: the down window (300 s) and the steps down
            await world.run_ticks(gov, 1)
            if world.scaling("chat") == (1, 1):
                break
        down = world.reports[-1].entries[0].decision
        assert world.scaling("chat") == (1, 1), down.message
        assert peak > 1
        assert "Little's law" in down.message, down.message
