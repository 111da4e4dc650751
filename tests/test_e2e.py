"""Governor end to end over loopback HTTP against the emulator, in virtual time."""

from __future__ import annotations

import math

import httpx
import pytest

from controller.clock import VirtualClock
from controller.core import Action, Reason, decide
from controller.daemon.actuator import ActionResult, Actuator
from controller.daemon.exporter import Metrics
from controller.daemon.store import StateStore
from controller.emulator.load import Constant
from policies.pending_requests import PendingRequestsParams, PendingRequestsPolicy
from tests.conftest import HUMAN_TOKEN, NS, World
from tests.helpers import window


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_scales_up_on_load_and_down_after_stabilisation(world: World):
    """Rising load scales up promptly through replica bounds; falling load scales down only
    after the 300 s down window, and never below the floor."""
    world.add("chat", load=Constant(0.3), tags=["managed"])
    s = world.settings()
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 4)
        assert world.scaling("chat") == (1, 1)  # pinned at the floor (bounds drift fixed)
        world.platform.set_load(NS, "chat", Constant(8.0))
        await world.run_ticks(gov, 6)
        lo, hi = world.scaling("chat")
        assert lo == hi
        assert lo >= 3, world.reports[-1].entries[0].decision.message
        peak = lo
        ups = [e for r in world.reports for e in r.entries if e.decision.action is Action.SCALE_UP]
        assert ups
        assert all(e.outcome.result is ActionResult.APPLIED for e in ups)
        world.platform.set_load(NS, "chat", Constant(0.2))
        fell_at = world.clock.now()
        await world.run_ticks(gov, 12)  # 180 s: still inside the down window
        assert world.scaling("chat")[0] == peak
        assert world.reports[-1].entries[0].decision.reason is Reason.SCALE_DOWN_STABILIZED
        await world.run_ticks(gov, 40)
        assert world.scaling("chat") == (1, 1)
        downs = [
            r.at
            for r in world.reports
            for e in r.entries
            if e.decision.action is Action.SCALE_DOWN and r.at > fell_at
        ]
        assert downs
        assert min(downs) - fell_at >= 240  # the last high recommendation ages out first
    assert (
        sample(
            m,
            "governor_actions_total",
            {"action": "scale_up", "result": "applied", "error": "none"},
        )
        >= 1
    )
    assert (
        sample(
            m,
            "governor_decisions_total",
            {"policy": "pending_requests", "action": "scale_down", "reason": "demand_decrease"},
        )
        >= 1
    )
    assert (
        sample(
            m,
            "governor_endpoint_replicas",
            {"namespace": NS, "endpoint": "chat", "kind": "desired"},
        )
        == 1
    )


async def test_dry_run_decides_but_never_writes(world: World):
    """In dry-run the decisions are made and counted, and not one mutating call is sent."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    s = world.settings(loop={"dry_run": True})
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 6)
    acts = [e for r in world.reports for e in r.entries if e.decision.acts]
    assert acts
    assert {e.outcome.result for e in acts} == {ActionResult.DRY_RUN}
    assert await world.writes() == []
    assert world.scaling("chat") == (1, 4)
    assert sample(m, "governor_dry_run") == 1


async def test_unmanaged_endpoints_are_never_touched(world: World):
    """An endpoint outside the manage selection is listed but never scraped or changed."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    world.add("experiment", load=Constant(8.0), tags=["experiment"])
    s = world.settings()
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        await world.run_ticks(gov, 6)
    assert world.reports[-1].unmanaged == [f"{NS}/experiment"]
    assert await world.writes("experiment") == []
    assert await world.writes("chat")
    calls = await world.admin("GET", "/calls")
    assert not [
        c
        for c in calls
        if c["route"] == "open-metrics" and str(c.get("endpoint")).endswith("/experiment")
    ]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param(
            {"status": 200, "body": "<html>oops</html>", "content_type": "text/html"},
            "parse_error",
            id="garbage-body",
        ),
        pytest.param({"status": 500}, "unavailable", id="http-500"),
        pytest.param({"status": 200, "body": ""}, "parse_error", id="empty-body"),
    ],
)
async def test_bad_feed_holds_and_counts(world: World, fault, reason):
    """A malformed or missing feed marks the endpoint stale: HOLD, counted, no write; the
    other endpoint in the same tick still acts."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    world.add("other", load=Constant(8.0), tags=["managed"])
    await world.admin(
        "POST",
        "/faults",
        json={"route": "open-metrics", "endpoint": f"{NS}/chat", "count": -1, **fault},
    )
    s = world.settings()
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 5)
    chat = [e for r in world.reports for e in r.entries if e.decision.key == f"{NS}/chat"]
    assert {e.decision.reason for e in chat} == {Reason.STALE_METRICS}
    assert all(not e.decision.acts for e in chat)
    assert await world.writes("chat") == []
    assert await world.writes("other")
    assert sample(m, "governor_scrape_errors_total", {"reason": reason}) == 5
    assert sample(m, "governor_endpoint_stale", {"namespace": NS, "endpoint": "chat"}) == 1


async def test_feed_going_stale_stops_actions(world: World):
    """Once the last good sample is older than max_age_s, Governor holds instead of acting on it."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    s = world.settings(scrape={"max_age_s": 20})
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        await world.run_ticks(gov, 1)
        await world.admin(
            "POST", "/faults", json={"route": "open-metrics", "status": 503, "count": -1}
        )
        await world.run_ticks(gov, 3)
    last = world.reports[-1].entries[0].decision
    assert last.reason is Reason.STALE_METRICS
    assert not last.acts


async def test_retries_5xx_and_429_with_retry_after(world: World):
    """Transient list failures are retried (Retry-After honoured); the tick then succeeds."""
    world.add("chat", load=Constant(0.3), tags=["managed"])
    await world.admin("POST", "/faults", json={"route": "list", "status": 503, "count": 2})
    await world.admin(
        "POST", "/faults", json={"route": "list", "status": 429, "count": 1, "retry_after": 3}
    )
    s = world.settings()
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 1)
    assert world.reports[-1].namespace_errors == {}
    assert [e.decision.key for e in world.reports[-1].entries] == [f"{NS}/chat"]
    assert sample(m, "governor_api_calls_total", {"route": "list", "outcome": "retry"}) == 3
    assert max(world.sleeps) >= 3


async def test_wrong_token_is_reported_not_fatal(world: World):
    """A rejected token is a failed tick (not an "ok" one with nothing managed): logged and
    counted, /readyz says why; the loop survives and never leaks it."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    s = world.settings()
    s.token = type(s.token)("hf_wrong_token_value")
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 2)
    assert sample(m, "governor_discovery_errors_total", {"error": "auth"}) == 2
    assert sample(m, "governor_ticks_total", {"result": "ok"}) == 0
    assert sample(m, "governor_ticks_total", {"result": "error"}) == 2
    assert sample(m, "governor_tick_errors_total", {"reason": "auth"}) == 2
    assert world.reports[-1].failed == "auth"
    ready, why = gov.health.ready()
    assert not ready
    assert why.startswith("token rejected")
    assert "401" in why
    assert "hf_wrong_token_value" not in why
    err = world.reports[-1].namespace_errors[NS]
    assert "401" in err
    assert "hf_wrong_token_value" not in err
    assert world.reports[-1].entries == []


async def test_actuator_skips_when_a_person_changed_the_endpoint(world: World):
    """Bounds changed by someone else after observation: the action is skipped, not forced."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    s = world.settings()
    async with world.client(s) as client:
        observed = (await client.list_endpoints(NS))[0]
        async with httpx.AsyncClient(
            base_url=world.server.base_url, headers={"Authorization": f"Bearer {HUMAN_TOKEN}"}
        ) as h:
            r = await h.put(
                f"/endpoint/{NS}/chat",
                json={"compute": {"scaling": {"minReplica": 2, "maxReplica": 2}}},
            )
            assert r.status_code == 200
        es = s.endpoint_settings(NS, "chat", observed.tags)
        now = world.clock.now()
        pol = PendingRequestsPolicy(PendingRequestsParams())
        d, _ = decide(observed, [pol], None, now=now, settings=es, window=window([(now, 30.0)]))
        assert d.action is Action.SCALE_UP
        out = await Actuator(client, dry_run=False).apply(d, observed)
    assert out.result is ActionResult.SKIPPED
    assert "changed since observed" in out.detail
    assert world.scaling("chat") == (2, 2)


async def test_memory_survives_restart(world: World, tmp_path):
    """A restarted Governor reloads its stabilisation history from SQLite: no instant scale-down."""
    world.add("chat", load=Constant(8.0), tags=["managed"])
    s = world.settings()
    async with world.client(s) as client:
        store = StateStore(tmp_path / "state.sqlite")
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        await world.run_ticks(gov, 8)
        store.close()
        peak = world.scaling("chat")[0]
        assert peak >= 3
        world.platform.set_load(NS, "chat", Constant(0.1))
        store2 = StateStore(tmp_path / "state.sqlite")
        assert f"{NS}/chat" in store2.load_memory()
        gov2 = world.governor(s, client, metrics=Metrics(), store=store2)
        await world.run_ticks(gov2, 6)
        assert world.scaling("chat")[0] == peak
        assert world.reports[-1].entries[0].decision.reason is Reason.SCALE_DOWN_STABILIZED
        store2.close()


@pytest.mark.parametrize("every", [0.0, 60.0])
async def test_memory_written_at_its_cadence(world: World, tmp_path, every: float):
    """`state.memory_every_s`: 0 writes the memory every tick; 60 writes it on the first tick
    and then once 60 s have passed since the last write (4 ticks of 15 s), never in between."""
    world.add("chat", load=Constant(0.5), tags=["managed"])
    s = world.settings(state={"memory_every_s": every})
    key = f"{NS}/chat"
    written: list[float] = []
    async with world.client(s) as client:
        store = StateStore(tmp_path / "state.sqlite", durable=False)
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        for _ in range(9):
            await world.run_ticks(gov, 1)
            row = store._db.execute(
                "SELECT updated_at FROM endpoint_memory WHERE key = ?", (key,)
            ).fetchone()
            written.append(row[0] if row else math.nan)
        store.close()
    expected: list[float] = []
    for i, r in enumerate(world.reports):
        acted = any(e.outcome is not None for e in r.entries)  # committed on its own
        if every == 0 or i % 4 == 0 or acted:
            expected.append(r.at)
        else:
            expected.append(expected[-1])
    assert written == expected
    assert (written == [r.at for r in world.reports]) is (every == 0)


async def test_corrupt_state_file_is_a_clear_error(tmp_path):
    """A state path that is not a SQLite database is reported as a config error, not a crash."""
    from controller.errors import ConfigError

    bad = tmp_path / "state.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=r"state\.path"):
        StateStore(bad)


async def test_run_loop_stops_on_event(world: World):
    """`run(stop)` ticks on the injected clock and returns promptly once stopped."""
    import asyncio

    world.add("chat", load=Constant(1.0), tags=["managed"])
    s = world.settings()
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        stop = asyncio.Event()
        task = asyncio.create_task(gov.run(stop))
        for _ in range(3):
            for _ in range(50):
                await asyncio.sleep(0.01)
                if len(world.reports) and world.clock.next_deadline() is not None:
                    break
            world.clock.advance(15)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(world.reports) >= 3
    assert gov.health.stopping


def test_virtual_clock_is_monotonic():
    """Virtual time cannot go backwards (the emulator and windows rely on it)."""
    c = VirtualClock(10)
    with pytest.raises(ValueError, match="backwards"):
        c.set(5)


async def test_one_malformed_endpoint_does_not_hide_the_others(world: World):
    """A listing with one unparsable item: that item is skipped and counted, the rest decided."""
    import json

    world.add("chat", load=Constant(8.0), tags=["managed"])
    good = world.platform.get(NS, "chat")
    body = json.dumps({"items": [good, {"name": "broken", "tags": ["managed"]}]})
    await world.admin(
        "POST",
        "/faults",
        json={"route": "list", "status": 200, "body": body, "content_type": "application/json"},
    )
    s = world.settings()
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 1)
    assert [e.decision.key for e in world.reports[-1].entries] == [f"{NS}/chat"]
    assert sample(m, "governor_discovery_errors_total", {"error": "bad_item"}) == 1
