"""Each policy end to end: the real Governor over loopback HTTP against the emulator, in virtual
time. Time only moves where it matters: the clock jumps (and the emulated world is stepped to the
new instant) between the stretches that are ticked."""

from __future__ import annotations

import io
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.core import Action, Reason
from controller.cost.ledger import CostTracker
from controller.daemon.actuator import ActionResult
from controller.daemon.exporter import CostCollector, Metrics
from controller.emulator.load import Constant
from tests.conftest import NS, World, make_world, metric

BERLIN_WORKDAY = {
    "timezone": "Europe/Berlin",
    "prewarm_s": 300,
    "windows": [
        {
            "name": "office",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "08:00",
            "end": "18:00",
            "floor": 3,
        }
    ],
}


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# For each DST change: the Friday before and the Monday after, with the instants written out in
# UTC by hand (not computed with zoneinfo, which the policy itself uses): when the 07:55 local
# pre-warm starts and when the 18:00 local end is.
DST_CASES = [
    pytest.param(
        [
            (utc(2026, 3, 27, 6, 55), utc(2026, 3, 27, 17, 0)),  # Fri, CET (UTC+1)
            (utc(2026, 3, 30, 5, 55), utc(2026, 3, 30, 16, 0)),  # Mon, CEST (UTC+2)
        ],
        id="spring-forward-2026-03-29",
    ),
    pytest.param(
        [
            (utc(2026, 10, 23, 5, 55), utc(2026, 10, 23, 16, 0)),  # Fri, CEST (UTC+2)
            (utc(2026, 10, 26, 6, 55), utc(2026, 10, 26, 17, 0)),  # Mon, CET (UTC+1)
        ],
        id="fall-back-2026-10-25",
    ),
]


@pytest.mark.parametrize("days", DST_CASES)
async def test_schedule_floor_follows_berlin_wall_clock_across_dst(tmp_path: Path, days):
    """A Berlin 08:00-18:00 weekday floor of 3 (5 min pre-warm) is applied through the API at
    07:55 local and released after 18:00 local on the correct UTC instant both before and after
    a daylight-saving change, with the world ticked only around those instants."""
    first_prewarm = days[0][0]
    async with make_world(tmp_path, start=first_prewarm - 600) as world:
        world.add("office", tags=["managed"], min_replica=1, max_replica=1)
        s = world.settings(
            loop={"tick_interval_s": 60},
            scrape={"max_age_s": 120},
            defaults={
                "floor": 1,
                "ceiling": 6,
                "scale_down_stabilization_s": 300,
                "policies": {
                    "pending_requests": {"target_per_replica": 3.0},
                    "schedule": BERLIN_WORKDAY,
                },
            },
        )
        async with world.client(s) as client:
            gov = world.governor(s, client, metrics=Metrics())
            for prewarm_at, end_at in days:
                # Morning: floor 1 until the pre-warm instant, 3 from it.
                await world.tick_at(gov, prewarm_at - 300)
                for t in range(int(prewarm_at - 240), int(prewarm_at), 60):
                    await world.tick_at(gov, t)
                assert world.scaling("office") == (1, 1), datetime.fromtimestamp(t, UTC)
                rep = await world.tick_at(gov, prewarm_at)
                d = rep.entries[0].decision
                assert world.scaling("office") == (3, 3), d.message
                assert d.action is Action.SCALE_UP
                assert d.reason is Reason.CONSTRAINT_FLOOR
                assert d.policy == "schedule"
                sched = next(p for p in d.proposals if p.policy == "schedule")
                assert sched.reason == "prewarm"
                for _ in range(6):  # into the window: the floor holds
                    await world.tick_at(gov, world.clock.now() + 60)
                assert world.scaling("office") == (3, 3)
                assert world.reports[-1].entries[0].endpoint.status.ready_replica == 3

                # Evening: still 3 at 17:59 local; back to 1 after 18:00 local, within the
                # down-stabilisation window (300 s) plus one tick.
                for t in range(int(end_at - 180), int(end_at), 60):
                    await world.tick_at(gov, t)
                assert world.scaling("office") == (3, 3)
                released_at = None
                for t in range(int(end_at), int(end_at + 300 + 120), 60):
                    await world.tick_at(gov, t)
                    if world.scaling("office") == (1, 1):
                        released_at = t
                        break
                assert released_at is not None, world.reports[-1].entries[0].decision.message
                assert end_at <= released_at <= end_at + 360
                down = world.reports[-1].entries[0].decision
                assert down.action is Action.SCALE_DOWN
            applied = [
                e
                for e in world.entries("office")
                if e.decision.acts and e.outcome.result is ActionResult.APPLIED
            ]
            # Exactly one raise and one release per day, nothing in between.
            assert [(e.decision.action, e.decision.desired) for e in applied] == [
                (Action.SCALE_UP, 3),
                (Action.SCALE_DOWN, 1),
            ] * len(days)


def _arbitration_settings(world: World, limit: int):
    opt_in = {
        "idle_reclaim": False,
        "arbitration": True,
        "arbitration_min_idle_s": 60,
        "resume_calm_s": 120,
    }
    return world.settings(
        defaults={
            "floor": 1,
            "ceiling": 3,
            "scale_down_stabilization_s": 120,
            "human_backoff_s": 60,
            "policies": {"pending_requests": {"target_per_replica": 3.0}},
        },
        endpoints=[
            {"match": {"names": ["hi"]}, "priority": 10},
            {
                "match": {"names": ["mid"]},
                "priority": 5,
                "policies": {"pause_to_free_quota": opt_in},
            },
            {
                "match": {"names": ["lo"]},
                "priority": 1,
                "policies": {"pause_to_free_quota": opt_in},
            },
            {
                "match": {"names": ["parked"]},
                "priority": 0,
                "policies": {"pause_to_free_quota": opt_in},
            },
        ],
        quota={
            "limits": [
                {"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": limit}
            ]
        },
    )


def _applied(world: World, name: str, action: Action) -> list[float]:
    return [
        e.decision.at
        for e in world.entries(name)
        if e.decision.action is action and e.outcome and e.outcome.result is ActionResult.APPLIED
    ]


async def test_quota_arbitration_pauses_lowest_priority_idle_and_resumes_only_its_own(
    world: World,
):
    """With a 4-GPU quota, a busy high-priority endpoint short of GPUs gets them by Governor
    pausing the lowest-priority idle opted-in endpoint (not the middle one); Governor resumes that
    endpoint once the quota frees up, and never resumes the one a person paused."""
    for name in ("hi", "mid", "lo", "parked"):
        world.add(name, tags=["managed"], min_replica=1, max_replica=1)
    await world.admin(
        "POST",
        "/quota",
        json={"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 4},
    )
    s = _arbitration_settings(world, 4)
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        await world.run_ticks(gov, 1)
        # A person parks one endpoint (it gives its GPU back); Governor must never undo that.
        await world.human("POST", f"/endpoint/{NS}/parked/pause")
        world.platform.set_load(NS, "hi", Constant(8.0))

        # hi wants 3 replicas; 1 GPU is free, so it is 1 short until someone yields.
        for _ in range(16):
            await world.run_ticks(gov, 1)
            if world.scaling("hi") == (3, 3):
                break
        assert world.scaling("hi") == (3, 3), world.entries("hi")[-1].decision.message
        paused = _applied(world, "lo", Action.PAUSE)
        assert len(paused) == 1
        assert _applied(world, "mid", Action.PAUSE) == []
        assert world.platform.get(NS, "mid")["status"]["state"] == "running"
        lo_pause = next(e.decision for e in world.entries("lo") if e.decision.at == paused[0])
        assert lo_pause.policy == "pause_to_free_quota"
        assert lo_pause.pause_reason == "pause_to_free_quota:quota_arbitration"
        assert "hi (priority 10) is short of" in lo_pause.message
        # The scale-up was refused by the platform's quota until lo yielded, then went through.
        hi_ups = [e for e in world.entries("hi") if e.decision.action is Action.SCALE_UP]
        assert any(e.outcome.result is ActionResult.FAILED for e in hi_ups)
        assert min(_applied(world, "hi", Action.SCALE_UP)) > paused[0]
        assert world.platform.quota_used(NS, "aws", "gpu") == 4

        # While hi needs its GPUs, lo stays paused.
        await world.run_ticks(gov, 20)
        assert world.platform.get(NS, "lo")["status"]["state"] == "paused"
        assert world.entries("lo")[-1].decision.reason is Reason.KEPT_PAUSED

        # The load goes away: hi scales down after its down window, the quota frees up, and after
        # resume_calm_s Governor resumes lo (its own pause) - and only lo.
        world.platform.set_load(NS, "hi", Constant(0.0))
        for _ in range(60):
            await world.run_ticks(gov, 1)
            if _applied(world, "lo", Action.RESUME):
                break
        resumed = _applied(world, "lo", Action.RESUME)
        assert len(resumed) == 1, world.entries("lo")[-1].decision.message
        assert resumed[0] > max(_applied(world, "hi", Action.SCALE_DOWN))
        await world.run_ticks(gov, 8)  # pending 10 s + cold start 60 s
        assert world.platform.get(NS, "lo")["status"]["state"] == "running"

    # The person's pause: never resumed, never written to, even though the quota has room now.
    assert world.platform.get(NS, "parked")["status"]["state"] == "paused"
    assert world.platform.quota_used(NS, "aws", "gpu") == 3
    assert await world.writes("parked") == []
    parked = [e.decision.reason for e in world.entries("parked")]
    assert Reason.HUMAN_OVERRIDE in parked
    assert parked[-1] is Reason.HUMAN_PAUSE
    assert not any(e.decision.acts for e in world.entries("parked"))

    scraped = await world.scrape_metrics(gov)
    decisions = "governor_decisions_total"
    ptfq = {"policy": "pause_to_free_quota"}
    assert metric(scraped, decisions, **ptfq, action="pause", reason="policy_pause") == 1
    assert metric(scraped, decisions, **ptfq, action="resume", reason="policy_resume") == 1
    assert (
        metric(scraped, "governor_actions_total", action="pause", result="applied", error="none")
        == 1
    )


def _gpu_quota(provider: dict, instance_type: str = "nvidia-l4") -> dict:
    """The emulator's quota figures for an AWS GPU instance, from GET /v2/provider/{ns}."""
    for v in provider["vendors"]:
        if v["name"] != "aws":
            continue
        for region in v["regions"]:
            for c in region["computes"]:
                if c["instanceType"] == instance_type:
                    return c["quota"]
    raise AssertionError(f"{instance_type} not in the provider catalogue")


async def test_idle_reclaim_pauses_scaled_to_zero_endpoint_and_frees_quota(world: World):
    """An opted-in endpoint scaled to zero (still holding its maxReplica GPUs) is paused by
    Governor once idle for `idle_pause_after_s`, and the quota it held is released, as Governor's
    quota metric and the platform's own provider figures both show; a busy opted-in endpoint is
    left alone."""
    world.add("batch", tags=["managed"], min_replica=0, max_replica=2)  # scaledToZero: holds 2
    world.add("busy", tags=["managed"], min_replica=1, max_replica=1, load=Constant(0.5))
    reclaim = {"idle_reclaim": True, "idle_pause_after_s": 120, "arbitration": False}
    s = world.settings(
        defaults={
            "floor": 0,
            "ceiling": 2,
            "policies": {
                "pending_requests": {"target_per_replica": 3.0},
                "pause_to_free_quota": reclaim,
            },
        },
        endpoints=[{"match": {"names": ["busy"]}, "floor": 1, "ceiling": 1}],
        quota={
            "limits": [
                {"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 8}
            ]
        },
    )
    m = Metrics()
    tracker = CostTracker.open(s)
    m.registry.register(CostCollector(lambda: tracker.latest))
    gpu = {"namespace": NS, "vendor": "aws", "accelerator": "gpu"}
    try:
        async with world.client(s, m) as client:
            gov = world.governor(s, client, metrics=m, cost=tracker)
            await world.run_ticks(gov, 1)
            first = world.clock.now()
            scraped = await world.scrape_metrics(gov)
            assert metric(scraped, "governor_quota_used_accelerators", **gpu) == 3
            assert metric(scraped, "governor_quota_limit_accelerators", **gpu) == 8
            assert _gpu_quota(await client.get_provider(NS))["usedAccelerators"] == 3

            for _ in range(12):
                await world.run_ticks(gov, 1)
                if world.platform.get(NS, "batch")["status"]["state"] == "paused":
                    break
            paused = _applied(world, "batch", Action.PAUSE)
            assert len(paused) == 1, world.entries("batch")[-1].decision.message
            assert 120 <= paused[0] - first <= 120 + 15
            d = next(e.decision for e in world.entries("batch") if e.decision.at == paused[0])
            assert d.policy == "pause_to_free_quota"
            assert d.pause_reason == "pause_to_free_quota:idle_reclaim"

            await world.run_ticks(gov, 8)  # stays paused: an idle-reclaim pause is not undone
            assert world.platform.get(NS, "batch")["status"]["state"] == "paused"
            assert world.entries("batch")[-1].decision.reason is Reason.KEPT_PAUSED
            assert _gpu_quota(await client.get_provider(NS))["usedAccelerators"] == 1
            scraped = await world.scrape_metrics(gov)
            assert metric(scraped, "governor_quota_used_accelerators", **gpu) == 1
    finally:
        tracker.close()
    assert world.platform.get(NS, "busy")["status"]["state"] == "running"
    assert await world.writes("busy") == []
    busy = {e.decision.proposals[-1].reason for e in world.entries("busy")}
    assert busy <= {"not_idle", "no_data"}, busy


@pytest.mark.parametrize(
    ("instance", "signal"),
    [
        pytest.param(("gpu", "nvidia-l4", "x1"), "gpu", id="gpu"),
        pytest.param(("cpu", "intel-spr", "x2"), "cpu", id="cpu"),
    ],
)
async def test_hardware_utilisation_scales_to_hpa_formula_count(world: World, instance, signal):
    """Under load, the utilisation policy alone scales the endpoint through the API to
    ceil(ready x mean utilisation / target) of the scraped samples (GPU on a GPU instance, CPU on
    a CPU one), settling where the load is carried near the target."""
    target = 60.0
    world.add(
        "infer",
        tags=["managed"],
        min_replica=1,
        max_replica=1,
        instance=instance,
        load=Constant(4.0),  # 4 rps x 2 s service = 8 busy slots; 4 slots per replica
    )
    s = world.settings(
        defaults={
            "floor": 1,
            "ceiling": 8,
            "scale_down_stabilization_s": 300,
            "policies": {"hardware_utilisation": {"target_util_percent": target, "window_s": 60}},
        },
    )
    key = f"{NS}/infer"
    checked = 0
    async with world.client(s) as client:
        gov = world.governor(s, client, metrics=Metrics())
        for _ in range(56):  # 14 minutes: scale up, drain the backlog, settle
            rep = await world.tick_at(gov, world.clock.now() + 15)
            e = rep.entries[0]
            prop = next(p for p in e.decision.proposals if p.policy == "hardware_utilisation")
            ready, current = e.endpoint.status.ready_replica, e.endpoint.status.target_replica
            if ready == current and prop.reason == "utilisation_target":
                # The HPA formula over the window's mean of the scraped per-replica signal.
                avg = gov.windows.get(key).mean(signal, span_s=60, now=rep.at)
                assert avg is not None
                expected = max(1, math.ceil(round(ready * avg / target, 6)))
                assert prop.replicas == expected, prop.message
                assert f"avg {signal} over 60s" in prop.message
                checked += 1
            if e.decision.acts:
                assert e.outcome.result is ActionResult.APPLIED
                assert world.scaling("infer") == (e.decision.desired, e.decision.desired)
    assert checked >= 2
    ups = [e.decision for e in world.entries("infer") if e.decision.action is Action.SCALE_UP]
    assert ups
    assert {(d.policy, d.reason) for d in ups} == {("hardware_utilisation", Reason.DEMAND_INCREASE)}
    assert ups[0].desired == 2  # 1 saturated replica (~97 %) / 60 % -> ceil(1.6) = 2
    # Settled where the load (8 busy slots of 4 per replica, ~50 % each) sits in the dead band
    # of ceil(): 4 replicas at ~50 % -> ceil(4 x 0.83) = 4; any scale-down came after the window.
    assert world.scaling("infer") == (4, 4), [d.message for d in ups]
    downs = [e.decision for e in world.entries("infer") if e.decision.action is Action.SCALE_DOWN]
    assert all(d.at - max(u.at for u in ups if u.at < d.at) >= 300 for d in downs)


def _unwrap(text: str) -> str:
    """A decision's wrapped first line joined back (its continuation starts with spaces and is
    not a "why:" line or a status row)."""
    out: list[str] = []
    for ln in text.splitlines():
        cont = ln.startswith("       ") and not ln.strip().startswith("why:")
        if (
            cont
            and out
            and out[-1].startswith("[")
            and not out[-1].endswith(("applied", "skipped", "failed", "dry-run"))
        ):
            out[-1] += " " + ln.strip()
        else:
            out.append(ln)
    return "\n".join(out)


async def test_demo_runs_mixed_policies_and_never_touches_the_unmanaged_endpoint():
    """`governor demo` sped up (40 virtual minutes in about 4 s) prints its decisions and the
    summary table, scales up at least once, and makes no API write to the unmanaged endpoint."""
    from controller.cli.demo import run_demo

    out = io.StringIO()
    assert await run_demo(speed=600, minutes=40, out=out) == 0
    text = out.getvalue()
    # A sped-up wall clock stops a little past the end: the summary gives the time it covers.
    assert re.search(r"Summary after 4\d(\.\d)? virtual minutes:", text), text[-3000:]
    header = next(ln for ln in text.splitlines() if ln.strip().startswith("endpoint"))
    assert header.split() == [
        "endpoint",
        "managed",
        "actions",
        "API",
        "writes",
        "replica-min",
        "billed",
        "$",
        "ledger",
        "$",
    ]
    first = text.split("Summary after", 1)[1].split("The same load without Governor", 1)[0]
    rows = {ln.split()[0]: ln.split() for ln in first.splitlines()[2:] if ln.startswith("  ")}
    unmanaged = rows["unmanaged-experiment"]
    assert unmanaged[1] == "no"
    assert unmanaged[2:4] == ["0", "0"]  # no action, no API write
    assert "unmanaged endpoints were never changed by Governor." in text
    # A decision's line wraps at 100 columns, so its ": applied" may end the next line. Which
    # actions a wall-clock run takes depends on how late a loaded machine runs its ticks; that
    # it scales up is pinned on the virtual clock (tests/test_demo.py). Here: it acts, and the
    # summary counts every action it printed as applied.
    decisions = re.findall(r"^\[\d+:\d\d\] \S+ +(\w+) .*?\((\w+)\): (\w+)$", _unwrap(text), re.M)
    applied = [d for d in decisions if d[2] == "applied"]
    assert applied, text
    assert int(rows["total"][1]) >= len(applied)


async def test_demo_fast_is_the_same_for_the_same_seed():
    """`governor demo --fast` (virtual time, same loopback HTTP) prints the same decisions and
    summary twice for one seed, and a different run for another seed."""
    from controller.cli.demo import run_demo

    async def once(seed: int) -> str:
        out = io.StringIO()
        assert await run_demo(minutes=45, seed=seed, out=out, fast=True) == 0
        return out.getvalue().split("\n", 1)[1]  # the first line names the random port

    first, again, other = await once(7), await once(7), await once(8)
    assert "Summary after 45 virtual minutes:" in first
    assert " scale_up " in first
    assert first == again
    assert first != other
