"""Governor behind the fault proxy (controller/emulator/faults.py): what the API says is not trusted
beyond reason, a slow API never stalls the loop, and health tells the truth about an outage.

Each test here failed before its fix (issue 18): ticks "ok" on 401s, a 111 s tick on a trickled
listing, writes and a 11-37x ledger on `targetReplica: 1000`, an `updatedAt` in 2099 stored and a
person's later edit reverted, `Retry-After: 120` forgotten by the next tick, and Governor's own
write taken for a person's after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from controller.core import Reason
from controller.cost.ledger import CostTracker
from controller.daemon.exporter import Metrics, MetricsServer, create_app
from controller.daemon.store import StateStore
from controller.emulator.faults import Fault, FaultProxy
from controller.emulator.load import Constant
from tests.conftest import NS, World

LIST = rf"^/v2/endpoint/{NS}$"


def sample(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return m.registry.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(world.server.root_url) as p:
        yield p


def via(world: World, proxy: FaultProxy, **over):
    api = {"base_url": proxy.url + "/v2", "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    api.update(over.pop("api", {}))
    return world.settings(api=api, **over)


async def test_401_and_an_outage_fail_ticks_and_readiness(world: World, proxy: FaultProxy):
    world.add("chat", load=Constant(2.0), tags=["managed"])
    s = via(world, proxy, loop={"unready_after_failed_ticks": 2})
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 1)
        assert gov.health.ready()[0]
        last_ok = sample(m, "governor_last_tick_timestamp_seconds")
        proxy.add(Fault("status", path=LIST, status=401, body='{"error": "invalid token"}'))
        await world.run_ticks(gov, 1)
        ready, why = gov.health.ready()
        assert not ready
        assert "token rejected" in why
        proxy.clear()
        proxy.add(Fault("disconnect", path=r"^/v2/"))
        await world.run_ticks(gov, 2)
        ready, why = gov.health.ready()
        assert not ready
        assert "ticks in a row failed" in why
        assert gov.health.alive(world.clock.now())[0]  # the loop itself is fine
    assert sample(m, "governor_ticks_total", {"result": "ok"}) == 1
    assert sample(m, "governor_ticks_total", {"result": "error"}) == 3
    assert sample(m, "governor_tick_errors_total", {"reason": "auth"}) == 1
    assert sample(m, "governor_tick_errors_total", {"reason": "discovery"}) == 2
    # a failed tick is not a completed one, and the managed gauge is not zeroed by blindness
    assert sample(m, "governor_last_tick_timestamp_seconds") == last_ok
    assert sample(m, "governor_managed_endpoints") == 1
    assert proxy.injected["status"] == 1
    assert proxy.injected["disconnect"] >= 2


async def test_a_trickled_listing_never_holds_a_tick_and_healthz_stays_up(
    world: World, proxy: FaultProxy
):
    """64 bytes per 0.5 s would take minutes for the listing; the request's total deadline ends it,
    the tick ends as failed, and /healthz answers 200 all along (it never waits on a tick)."""
    world.add("chat", load=Constant(2.0), tags=["managed"])
    s = via(world, proxy, api={"timeout_s": 1.0, "max_attempts": 1})
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 1)
        proxy.add(Fault("slow_body", path=LIST, chunk_bytes=64, chunk_interval_s=0.5))
        srv = MetricsServer(create_app(m, gov.health, world.clock), host="127.0.0.1", port=0)
        await srv.start()
        codes: list[int] = []

        async def probe() -> None:
            async with httpx.AsyncClient(timeout=5) as c:
                while True:
                    r = await c.get(f"http://127.0.0.1:{srv.port}/healthz")
                    codes.append(r.status_code)
                    await asyncio.sleep(0.1)

        prober = asyncio.create_task(probe())
        try:
            world.clock.advance(15)
            report = await asyncio.wait_for(gov.tick(), 10)
        finally:
            prober.cancel()
            await srv.stop()
    assert report.failed == "discovery"
    assert "no complete response within 1s" in report.namespace_errors[NS]
    assert codes
    assert set(codes) == {200}


async def test_a_trickled_feed_is_cut_at_the_tick_budget(world: World, proxy: FaultProxy):
    world.add("chat", load=Constant(2.0), tags=["managed"])
    world.add("other", load=Constant(2.0), tags=["managed"])
    s = via(world, proxy, loop={"tick_budget_s": 1.0})
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        proxy.add(Fault("slow_body", path="chat/open-metrics", chunk_bytes=16, chunk_interval_s=2))
        world.clock.advance(15)
        report = await asyncio.wait_for(gov.tick(), 10)
    assert report.failed is None
    assert report.skipped == {"scrape": 1}
    assert report.feed_errors[f"{NS}/chat"].startswith("skipped")
    assert sample(m, "governor_tick_skipped_total", {"phase": "scrape"}) == 1
    chat = next(e for e in report.entries if e.decision.key == f"{NS}/chat")
    assert not chat.decision.acts  # no fresh sample: it holds, it does not act


@pytest.mark.parametrize("bogus", [1000, -3])
async def test_implausible_replica_counts_are_skipped_counted_and_never_billed(
    world: World, proxy: FaultProxy, tmp_path, bogus: int
):
    world.add("chat", load=Constant(2.0), tags=["managed"], min_replica=2, max_replica=2)
    s = via(world, proxy, defaults={"floor": 2, "ceiling": 2, "policies": {"pending_requests": {}}})
    m = Metrics()
    cost = CostTracker.open(s)
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m, cost=cost)
        await world.run_ticks(gov, 2)
        writes_before = len(await world.writes())
        reads_before = len(proxy.requests)
        fault = proxy.add(
            Fault(
                "mutate",
                path=r"^/v2/endpoint/",
                endpoint="chat",
                set={"status.targetReplica": bogus, "status.readyReplica": bogus},
            )
        )
        await world.run_ticks(gov, 4)  # 60 s of the bogus count
        one = f"/v2/endpoint/{NS}/chat"
        rereads = [r for r in proxy.requests[reads_before:] if r[1] == "GET" and r[2] == one]
        fault.count = 0
        await world.run_ticks(gov, 2)
        writes_after = len(await world.writes())
    rows = cost.ledger._db.execute("SELECT price, minutes FROM ledger_spend").fetchall()
    cost.close()
    assert proxy.injected["mutate"] >= 4
    assert writes_after == writes_before
    assert rereads == []  # -3 used to drive a pointless actuator re-read every tick
    assert sample(m, "governor_discovery_errors_total", {"error": "implausible"}) >= 4
    skipped = [r for r in world.reports if f"{NS}/chat (item skipped)" in r.namespace_errors]
    assert len(skipped) == 4
    ledger_usd = sum(p * mins / 60 for p, mins in rows)
    billed = world.platform.billed_usd(NS, "chat")
    assert ledger_usd <= billed + 0.01, (ledger_usd, billed)


async def test_a_future_updated_at_is_not_stored_and_a_later_edit_is_still_seen(
    world: World, proxy: FaultProxy, tmp_path
):
    world.add("chat", load=Constant(2.0), tags=["managed"])
    s = via(world, proxy)
    store = StateStore(tmp_path / "state.sqlite")
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        await world.run_ticks(gov, 2)
        fault = proxy.add(
            Fault(
                "mutate",
                path=r"^/v2/endpoint/",
                endpoint="chat",
                set={"status.updatedAt": "2099-01-01T00:00:00Z"},
            )
        )
        await world.run_ticks(gov, 2)
        fault.count = 0
        stored = store.load_memory()[f"{NS}/chat"].last_known_update
        assert stored is not None
        assert stored < world.clock.now() + 1
        await world.human(
            "PUT",
            f"/endpoint/{NS}/chat",
            json={"compute": {"scaling": {"minReplica": 3, "maxReplica": 3}}},
        )
        await world.run_ticks(gov, 1)
    store.close()
    last = world.entries("chat")[-1].decision
    assert last.reason is Reason.HUMAN_OVERRIDE
    assert world.scaling("chat") == (3, 3)


async def test_a_long_retry_after_is_remembered_across_ticks(world: World, proxy: FaultProxy):
    world.add("chat", load=Constant(2.0), tags=["managed"])
    s = via(world, proxy)
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        proxy.add(Fault("status", path=LIST, status=429, retry_after=120, count=1))
        await world.run_ticks(gov, 1)
        sent_after_429 = len([r for r in proxy.requests if r[2] == f"/v2/endpoint/{NS}"])
        for _ in range(5):
            await world.run_ticks(gov, 1)
        sent_later = len([r for r in proxy.requests if r[2] == f"/v2/endpoint/{NS}"])
        assert client.held_until is not None
        client.held_until = 0.0  # 120 s have passed
        await world.run_ticks(gov, 1)
    assert sent_after_429 == 1
    assert sent_later == 1  # not one listing sent inside the 120 s
    assert world.reports[-2].failed == "discovery"
    assert world.reports[-1].failed is None


async def test_own_write_with_a_lost_response_is_not_a_person_after_a_restart(
    world: World, proxy: FaultProxy, tmp_path
):
    """The write reaches the platform, the response never comes back, the process restarts:
    the new process knows the write's `updatedBy` is its own identity, so no hands-off."""
    world.add("chat", load=Constant(0.3), tags=["managed"], min_replica=1, max_replica=1)
    pol = {"pending_requests": {"target_per_replica": 3.0}}
    s = via(world, proxy, api={"max_attempts": 1}, defaults={"ceiling": 3, "policies": pol})
    # restarted with a higher ceiling, so there is a second write to lose
    s2 = via(world, proxy, api={"max_attempts": 1}, defaults={"ceiling": 6, "policies": pol})
    path = tmp_path / "state.sqlite"
    async with world.client(s) as client:
        store = StateStore(path)
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        await world.run_ticks(gov, 1)  # learns nothing yet: no write
        world.platform.set_load(NS, "chat", Constant(12.0))
        # first write acknowledged: the identity is learnt and saved
        await world.run_ticks(gov, 2)
        assert store.load_identity() == "governor-bot"
        store.close()
        assert world.scaling("chat") == (3, 3)
        # a restart, and the next write's response is lost
        store = StateStore(path)
        gov = world.governor(s2, client, metrics=Metrics(), store=store)
        proxy.add(Fault("lose_response", method="PUT", count=1))
        n = len(await world.writes())
        await world.run_ticks(gov, 2)
        assert proxy.injected["lose_response"] == 1
        assert len(await world.writes()) > n  # the lost-response write did happen
        store.close()
        assert world.scaling("chat") == (6, 6)
        store = StateStore(path)
        gov = world.governor(s2, client, metrics=Metrics(), store=store)
        await world.run_ticks(gov, 3)
        store.close()
    reasons = [e.decision.reason for e in world.entries("chat")]
    assert Reason.HUMAN_OVERRIDE not in reasons


async def test_cli_exits_non_zero_when_it_could_not_see_the_account(tmp_path):
    """plan, run --once and cost used to print the listing error and exit 0 on a 401."""
    from tests.test_daemon import free_port, spawn, start_emulator, write_config

    srv = await start_emulator()
    try:
        async with FaultProxy(srv.root_url) as p:
            p.add(Fault("status", path=LIST, status=401, body='{"error": "invalid token"}'))
            cfg = write_config(tmp_path, p.url + "/v2", free_port())
            results = {}
            for cmd in (["plan"], ["run", "--once"], ["cost"]):
                proc = await spawn(*cmd, "-c", cfg)
                out, err = await asyncio.wait_for(proc.communicate(), 60)
                results[" ".join(cmd)] = (proc.returncode, out.decode() + err.decode())
    finally:
        await srv.stop()
    for cmd, (code, text) in results.items():
        assert code == 1, (cmd, text[-2000:])
        assert "401" in text, cmd
        assert "Traceback" not in text, cmd


@pytest.mark.parametrize("age_s", [3600.0, None])
async def test_hour_old_samples_in_a_fresh_scrape_are_stale(world: World, age_s: float | None):
    """Freshness was judged per scrape: a feed re-serving hour-old samples drove a scale-up. Now
    the oldest sample timestamp dates the sample (the control run, without the fault, scales)."""
    world.add("chat", load=Constant(12.0), tags=["managed"])
    pol = {"pending_requests": {"target_per_replica": 1.0}}
    async with FaultProxy(world.server.root_url, now=world.clock.now) as proxy:
        s = via(world, proxy, defaults={"ceiling": 6, "policies": pol}, scrape={"max_age_s": 60})
        if age_s is not None:
            proxy.add(Fault("stamp", path="open-metrics", age_s=age_s))
        async with world.client(s) as client:
            gov = world.governor(s, client, metrics=Metrics())
            await world.run_ticks(gov, 4)
    reasons = {e.decision.reason for e in world.entries("chat")}
    if age_s is None:
        assert world.scaling("chat")[0] > 1
        return
    assert proxy.injected["stamp"] >= 4
    assert reasons == {Reason.STALE_METRICS}
    assert await world.writes("chat") == []
    msg = world.entries("chat")[-1].decision.message
    assert "s old (max 60s)" in msg


async def test_the_first_write_ever_with_a_lost_response_is_not_a_person(
    world: World, proxy: FaultProxy, tmp_path
):
    """A fresh install does not know its API identity until a write is acknowledged. If the first
    write's answer is lost (or the process is killed before it arrives), the next listing shows a
    change by an unknown name: it is Governor's own when it lands after the write was sent and is
    exactly what was sent. The identity is learnt from it and saved."""
    world.add("chat", load=Constant(12.0), tags=["managed"], min_replica=1, max_replica=1)
    pol = {"pending_requests": {"target_per_replica": 3.0}}
    s = via(world, proxy, api={"max_attempts": 1}, defaults={"ceiling": 4, "policies": pol})
    path = tmp_path / "state.sqlite"
    async with world.client(s) as client:
        store = StateStore(path)
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        proxy.add(Fault("lose_response", method="PUT", count=1))
        await world.run_ticks(gov, 2)
        assert proxy.injected["lose_response"] == 1
        assert world.scaling("chat") == (4, 4)
        store.close()  # and a restart, so nothing but the state file carries over
        store = StateStore(path)
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        await world.run_ticks(gov, 2)
        assert store.load_identity() == "governor-bot"
        store.close()
    reasons = [e.decision.reason for e in world.entries("chat")]
    assert Reason.HUMAN_OVERRIDE not in reasons


async def test_a_persons_edit_after_a_lost_first_write_is_still_a_person(
    world: World, proxy: FaultProxy, tmp_path
):
    world.add("chat", load=Constant(12.0), tags=["managed"], min_replica=1, max_replica=1)
    pol = {"pending_requests": {"target_per_replica": 3.0}}
    s = via(world, proxy, api={"max_attempts": 1}, defaults={"ceiling": 4, "policies": pol})
    store = StateStore(tmp_path / "state.sqlite")
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics(), store=store)
        proxy.add(Fault("lose_response", method="PUT", count=1))
        await world.run_ticks(gov, 1)
        assert proxy.injected["lose_response"] == 1
        await world.human(
            "PUT",
            f"/endpoint/{NS}/chat",
            json={"compute": {"scaling": {"minReplica": 2, "maxReplica": 2}}},
        )
        await world.run_ticks(gov, 1)
        assert store.load_identity() is None  # the person's name was not taken for its own
    store.close()
    assert world.entries("chat")[-1].decision.reason is Reason.HUMAN_OVERRIDE
    assert world.scaling("chat") == (2, 2)


async def test_a_trickled_feed_hits_its_own_total_deadline(world: World, proxy: FaultProxy):
    """Without a tick budget to cut it, one feed GET still ends at `api.timeout_s` in total (it
    had only per-read timeouts, which a trickle of 16 bytes per 0.3 s never trips)."""
    world.add("chat", load=Constant(2.0), tags=["managed"])
    s = via(world, proxy, api={"timeout_s": 1.0, "max_attempts": 1}, loop={"tick_budget_s": 600})
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        proxy.add(
            Fault("slow_body", path="chat/open-metrics", chunk_bytes=16, chunk_interval_s=0.3)
        )
        world.clock.advance(15)
        report = await asyncio.wait_for(gov.tick(), 20)
    assert proxy.injected["slow_body"] == 1
    assert report.skipped == {}
    assert f"{NS}/chat" in report.feed_errors
    assert "skipped" not in report.feed_errors[f"{NS}/chat"]


async def test_retries_end_at_the_call_deadline(world: World, proxy: FaultProxy):
    """Ten attempts of 0.3 s each, retried: the whole call, waits included, ends at
    `api.call_deadline_s` (1 s), not after ten timeouts."""
    world.add("chat", load=Constant(2.0), tags=["managed"])
    api = {"timeout_s": 0.3, "max_attempts": 10, "call_deadline_s": 1.0}
    s = via(world, proxy, api=api)
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        proxy.add(Fault("delay", path=LIST, delay_s=5))
        world.clock.advance(15)
        report = await asyncio.wait_for(gov.tick(), 20)
    assert report.failed == "discovery"
    assert "within the call deadline of 1s" in report.namespace_errors[NS]
    assert 2 <= proxy.injected["delay"] < 10


async def test_a_write_whose_answer_was_lost_is_checked_not_sent_again(
    world: World, proxy: FaultProxy
):
    """The PUT reaches the platform, the connection drops before the answer: the retry reads the
    endpoint first and, finding the write applied, does not send it again. A second PUT moved
    `updatedAt` past the change (the platform moves it on every PUT), so the ledger, which dates
    replica changes by it, billed the new replicas late (the fault soak: 4 replicas 1.8 s)."""
    world.add("chat", load=Constant(0.3), min_replica=1, max_replica=1)
    s = via(world, proxy, api={"max_attempts": 3})
    async with world.client(s) as client:
        proxy.add(Fault("lose_response", method="PUT", count=1))
        ep = await client.update_scaling(NS, "chat", min_replica=3, max_replica=3)
        assert proxy.injected["lose_response"] == 1
        assert (ep.compute.scaling.min_replica, ep.compute.scaling.max_replica) == (3, 3)
        puts = [w for w in proxy.writes if w[1] == "PUT"]
        assert len(puts) == 1, puts
        assert world.scaling("chat") == (3, 3)
        # an answer lost before the write was applied is still re-sent: the endpoint is read,
        # does not carry it, and the PUT goes again
        proxy.add(Fault("disconnect", method="PUT", count=1))
        ep = await client.update_scaling(NS, "chat", min_replica=2, max_replica=2)
        assert (ep.compute.scaling.min_replica, ep.compute.scaling.max_replica) == (2, 2)
        assert world.scaling("chat") == (2, 2)
