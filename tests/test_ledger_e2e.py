"""The ledger against the emulator's own billing: Governor ticking over loopback HTTP in virtual
time for several days across a month boundary, with pauses, scale-to-zero, resumes, Governor's
own actions, idle scale-to-zero with wake-ups, and a restart after an hour of downtime."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from controller.clock import VirtualClock
from controller.cost.forecast import month_bounds
from controller.cost.ledger import CostTracker
from controller.daemon.exporter import CostCollector, Metrics
from controller.daemon.loop import Governor
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from controller.settings import load_settings
from tests.conftest import BOT, HUMAN, HUMAN_TOKEN, NS, TOKEN, endpoint_body

STEP = 300.0
DAYS = 3.0
T0 = datetime(2027, 1, 30, 12, 0, tzinfo=UTC).timestamp()  # crosses into February


def _settings(base_url: str, tmp_path):
    return load_settings(
        None,
        overrides={
            "api": {"base_url": base_url},
            "namespaces": [NS],
            "manage": {"tags": ["managed"]},
            "loop": {"tick_interval_s": STEP},
            "scrape": {"max_age_s": 600},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "defaults": {"floor": 1, "ceiling": 3},
            "budgets": [{"scope": "namespace", "match": NS, "usd": 500.0}],
            "quota": {
                "limits": [
                    {"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 8}
                ]
            },
        },
        env={"HF_TOKEN": TOKEN},
    )


async def test_ledger_equals_emulator_billing_over_days(tmp_path):
    """Every endpoint whose replica changes come through the API is recorded to the cent; the
    idle endpoint whose changes the platform makes on its own stays within the stated bound
    (half a tick + one minute per unexplained change); the downtime is flagged as estimated."""
    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=5)
    sim = SimParams(cold_start_s=60.0, concurrency=4, service_time_s=2.0)
    platform.create(
        NS, endpoint_body("gpu-a", min_replica=1, max_replica=1), by=HUMAN, ready=True, sim=sim
    )
    platform.create(
        NS,
        endpoint_body("gpu-b", min_replica=2, max_replica=2, instance=("gpu", "nvidia-a10g", "x1")),
        by=HUMAN,
        ready=True,
        sim=sim,
    )
    platform.create(
        NS,
        endpoint_body("gov", min_replica=2, max_replica=3, tags=["managed"]),
        by=HUMAN,
        ready=True,
        sim=sim,
    )
    idle = endpoint_body(
        "cpu-idle", min_replica=0, max_replica=2, instance=("cpu", "intel-spr", "x2")
    )
    idle["compute"]["scaling"]["scaleToZeroTimeout"] = 15
    platform.create(NS, idle, by=HUMAN, ready=True, sim=sim)
    rng = random.Random(11)
    wakes = 0
    async with EmulatorServer(
        platform, clock=clock, tokens={TOKEN: BOT, HUMAN_TOKEN: HUMAN}, tick_s=3600
    ) as srv:
        s = _settings(srv.base_url, tmp_path)
        from controller.platform.client import make_client

        async with make_client(s) as client:

            def start() -> tuple[Governor, CostTracker, Metrics]:
                m = Metrics()
                tracker = CostTracker.open(s)
                m.registry.register(CostCollector(lambda: tracker.latest))
                gov = Governor(s, clock=clock, client=client, metrics=m, observers=[tracker])
                return gov, tracker, m

            gov, tracker, metrics = start()
            await gov.tick()  # observes the endpoints at their creation
            n_ticks = int(DAYS * 86400 / STEP)
            for i in range(n_ticks):
                clock.advance(STEP)
                await gov.tick()
                platform.advance_to(clock.now())
                # a person (or a script) acting between ticks
                name = rng.choice(["gpu-a", "gpu-b"])
                state = platform.get(NS, name)["status"]["state"]
                r = rng.random()
                if r < 0.03:
                    if state == "paused":
                        platform.resume(NS, name, by=HUMAN)
                    elif state == "running":
                        platform.pause(NS, name, by=HUMAN)
                elif r < 0.06:
                    if state == "running":
                        platform.scale_to_zero(NS, name, by=HUMAN)
                    elif state == "scaledToZero":
                        platform.resume(NS, name, by=HUMAN)
                elif r < 0.12 and state == "running":
                    k = rng.randint(1, 3)
                    platform.update(
                        NS,
                        name,
                        {"compute": {"scaling": {"minReplica": k, "maxReplica": k}}},
                        by=HUMAN,
                    )
                if i % 61 == 0 and platform.get(NS, "cpu-idle")["status"]["state"] != "running":
                    platform.wake(NS, "cpu-idle")  # a request arrives: wake, idle out 15 min later
                    wakes += 1
                if i == n_ticks // 2:
                    # Governor goes down for an hour; meanwhile gpu-a is paused by hand.
                    tracker.close()
                    clock.advance(1800)
                    platform.advance_to(clock.now())
                    if platform.get(NS, "gpu-a")["status"]["state"] != "paused":
                        platform.pause(NS, "gpu-a", by=HUMAN)
                    clock.advance(1800)
                    platform.advance_to(clock.now())
                    gov, tracker, metrics = start()
                    await gov.tick()
            end = clock.now()
            platform.advance_to(end)
            report = tracker.latest
    assert report is not None
    lg = tracker.ledger
    diffs = {}
    for name in ("gpu-a", "gpu-b", "gov", "cpu-idle"):
        key = f"{NS}/{name}"
        billed = platform.billed_usd(NS, name)
        recorded = lg.total_usd(key)
        assert recorded is not None
        diffs[name] = recorded - billed
    print("ledger - billing (USD):", {k: round(v, 6) for k, v in diffs.items()})
    for name in ("gpu-a", "gpu-b", "gov"):
        assert abs(diffs[name]) < 0.005, (name, diffs)
    # unexplained changes (wake on request, idle scale-to-zero): each dated to +-(STEP/2 + 60 s)
    bound = 2 * wakes * (STEP / 2 + 60) / 3600 * 0.067
    assert abs(diffs["cpu-idle"]) <= bound, (diffs["cpu-idle"], bound)
    # month boundary: January + February = everything
    from zoneinfo import ZoneInfo

    m0, m1 = month_bounds(T0, ZoneInfo("UTC"))
    jan = lg.spend(m0, m1)
    feb = lg.spend(m1, month_bounds(m1, ZoneInfo("UTC"))[1])
    for name in ("gpu-b", "gov"):
        key = f"{NS}/{name}"
        assert jan[key].usd > 0
        assert feb[key].usd > 0
        assert abs(jan[key].usd + feb[key].usd - lg.total_usd(key)) < 1e-9
    # the downtime is flagged: gaps recorded, estimated seconds and dollars in the report
    gaps = lg.gaps()
    assert {g[0] for g in gaps} == {f"{NS}/{n}" for n in ("gpu-a", "gpu-b", "gov", "cpu-idle")}
    assert all(abs((g[2] - g[1]) - 3600) < 1e-6 for g in gaps)
    by = {e.name: e for e in report.endpoints}
    assert all(e.estimated_s > 0 for e in by.values())
    assert by["gov"].estimated_usd > 0
    # metrics carry the same figures as the report
    reg = metrics.registry
    lbl = {"namespace": NS, "endpoint": "gov"}
    assert reg.get_sample_value("governor_spend_month_usd", lbl) == by["gov"].month_usd
    assert reg.get_sample_value("governor_forecast_month_usd", lbl) == by["gov"].forecast_month_usd
    assert reg.get_sample_value("governor_ledger_estimated_seconds", lbl) == by["gov"].estimated_s
    assert (
        reg.get_sample_value("governor_budget_usd", {"scope": f"namespace:{NS}", "period": "month"})
        == 500.0
    )
    q = {"namespace": NS, "vendor": "aws", "accelerator": "gpu"}
    assert reg.get_sample_value("governor_quota_limit_accelerators", q) == 8
    assert reg.get_sample_value("governor_quota_used_accelerators", q) == sum(
        ln.used for ln in report.quota if ln.accelerator == "gpu"
    )
    tracker.close()
