"""A budget caps every managed endpoint it covers, named `policies.budget` or not (issue 15,
item 2), and its coverage is reported."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.cost.ledger import CostTracker
from controller.daemon.exporter import Metrics
from controller.emulator.load import Constant
from tests.conftest import NS, make_world

START = datetime(2026, 6, 10, 8, 0, tzinfo=UTC).timestamp()
STEP = 120.0


async def test_a_namespace_budget_pauses_an_endpoint_that_names_no_budget_policy(tmp_path):
    """The example's shape: a namespace cap and endpoints with only demand policies. The cap
    used to be counted and shown but never acted on; now the endpoint is paused at the hard cap,
    and the unmanaged endpoint it also covers is counted and left alone."""
    async with make_world(tmp_path, start=START) as world:
        await world.admin(
            "POST",
            "/quota",
            json={"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 100},
        )
        big = ("gpu", "nvidia-a100", "x8")
        world.add("chat-llm", tags=["managed"], instance=big, load=Constant(2.0))
        world.add("theirs", tags=[], instance=big, min_replica=1, max_replica=1)
        s = world.settings(
            loop={"tick_interval_s": STEP},
            scrape={"max_age_s": 2 * STEP},
            defaults={"floor": 1, "ceiling": 2, "policies": {"pending_requests": {}}},
            budgets=[{"scope": "namespace", "match": NS, "period": "day", "usd": 5.0}],
            ledger={"timezone": "UTC"},
        )
        assert "budget" in s.endpoint_settings(NS, "chat-llm", ["managed"]).policies
        tracker = CostTracker.open(s)
        try:
            async with world.client(s) as client:
                gov = world.governor(s, client, metrics=Metrics(), cost=tracker)
                for _ in range(15):
                    await world.tick_at(gov, world.clock.now() + STEP)
                    if world.platform.get(NS, "chat-llm")["status"]["state"] == "paused":
                        break
        finally:
            tracker.close()
        assert world.platform.get(NS, "chat-llm")["status"]["state"] == "paused"
        assert world.platform.get(NS, "theirs")["status"]["state"] == "running"
        last = world.entries("chat-llm")[-1].decision
        assert any(p.policy == "budget" and p.reason == "budget_exhausted" for p in last.proposals)
