"""The budget ladder end to end: Governor with its cost tracker (ledger, forecast, budgets) over
loopback HTTP against the emulator, in virtual time, across a day boundary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.core import Action, Reason
from controller.cost.ledger import CostTracker
from controller.daemon.actuator import ActionResult
from controller.daemon.exporter import CostCollector, Metrics
from controller.emulator.load import Constant
from tests.conftest import NS, World, make_world, metric

# A Wednesday evening (UTC, the ledger's zone): four hours left in the budget's day.
START = datetime(2026, 6, 10, 20, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 6, 11, 0, 0, tzinfo=UTC).timestamp()
STEP = 120.0
CAP = 140.0  # USD per day for tag team-a: alert at 70 (forecast), degrade at 112, hard at 140
LEVEL = {"scope": "tag:team-a", "period": "day"}


def _settings(world: World):
    return world.settings(
        loop={"tick_interval_s": STEP},
        scrape={"max_age_s": 2 * STEP},
        defaults={
            "floor": 1,
            "ceiling": 3,
            "scale_down_stabilization_s": 300,
            "policies": {"pending_requests": {"target_per_replica": 3.0}},
        },
        endpoints=[
            {
                "match": {"names": ["spendy", "manual"]},
                "policies": {
                    "budget": {"degrade_ceiling": 1, "degrade_scale_to_zero_timeout_min": 5}
                },
            },
            {
                "match": {"names": ["vip"]},
                "policies": {
                    "budget": {"protected": True, "degrade_ceiling": None, "protected_ceiling": 1}
                },
            },
        ],
        budgets=[
            {
                "scope": "tag",
                "match": "team-a",
                "period": "day",
                "usd": CAP,
                "thresholds": {"alert": 0.5, "degrade": 0.8, "hard": 1.0},
            }
        ],
        ledger={"timezone": "UTC"},
    )


def _scaling(world: World, name: str) -> dict[str, Any]:
    return world.platform.get(NS, name)["compute"]["scaling"]


def _state(world: World, name: str) -> str:
    return world.platform.get(NS, name)["status"]["state"]


def _budget(decision) -> str:
    return next(p.reason for p in decision.proposals if p.policy == "budget")


async def test_budget_ladder_alert_degrade_hard_cap_and_reset(tmp_path):
    """As a team's daily spend forecast climbs, Governor only alerts, then lowers the ceiling and
    the scale-to-zero timeout through the API, then pauses the endpoint at the hard cap (a
    protected one is capped instead); after midnight it resumes the endpoint it paused for budget
    and leaves the one a person paused alone."""
    async with make_world(tmp_path, start=START) as world:
        await world.admin(
            "POST",
            "/quota",
            json={"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 100},
        )
        team = ["managed", "team-a"]
        world.add("spendy", tags=team, min_replica=1, max_replica=1, load=Constant(4.0))
        world.add("vip", tags=team, min_replica=1, max_replica=1, load=Constant(4.0))
        world.add("manual", tags=team, min_replica=1, max_replica=1)
        # The team's unmanaged experiment, $20/h per replica: its owner scales it by hand.
        world.add(
            "burner",
            tags=["team-a"],
            min_replica=0,
            max_replica=1,
            instance=("gpu", "nvidia-a100", "x8"),
        )
        s = _settings(world)
        m = Metrics()
        tracker = CostTracker.open(s)
        m.registry.register(CostCollector(lambda: tracker.latest))
        levels: list[tuple[float, int]] = []

        async def until(t_end: float) -> None:
            while world.clock.now() + STEP <= t_end:
                await world.tick_at(gov, world.clock.now() + STEP)
                b = next(b for b in tracker.latest.budgets if b.scope == "tag:team-a")
                levels.append((world.clock.now(), int(b.level)))

        async def burner(k: int) -> None:
            await world.human(
                "PUT",
                f"/endpoint/{NS}/burner",
                json={"compute": {"scaling": {"minReplica": k, "maxReplica": k}}},
            )

        def level_metric(scraped) -> float | None:
            return metric(scraped, "governor_budget_level", **LEVEL)

        try:
            async with world.client(s, m) as client:
                gov = world.governor(s, client, metrics=m, cost=tracker)
                await gov.tick()
                await until(START + 600)
                await world.human("POST", f"/endpoint/{NS}/manual/pause")
                await until(START + 1800)
                # ok: the team's forecast is well under half the cap.
                assert levels[-1][1] == 0, tracker.latest.budgets
                assert world.scaling("spendy") == (3, 3)
                assert level_metric(await world.scrape_metrics(gov)) == 0

                # 1. alert: the experiment starts; forecast over 50 % of the cap. No action.
                await burner(1)
                await until(START + 3600)
                assert levels[-1][1] == 1, tracker.latest.budgets
                scraped = await world.scrape_metrics(gov)
                assert level_metric(scraped) == 1
                assert metric(scraped, "governor_budget_usd", **LEVEL) == CAP
                alert = [e for e in world.entries("spendy") if e.decision.at > START + 1800]
                assert alert
                assert {_budget(e.decision) for e in alert} == {"budget_alert"}
                assert all(e.decision.policy != "budget" for e in alert)
                assert world.scaling("spendy") == (3, 3)
                assert _scaling(world, "spendy")["scaleToZeroTimeout"] is None

                # 2. degrade: the experiment doubles; forecast over 80 %. Lower ceiling, shorter
                # scale-to-zero timeout, through the API; the protected endpoint has no degrade
                # ceiling.
                await burner(2)
                await until(START + 5400)
                assert levels[-1][1] == 2, tracker.latest.budgets
                assert level_metric(await world.scrape_metrics(gov)) == 2
                assert world.scaling("spendy") == (1, 1)
                assert _scaling(world, "spendy")["scaleToZeroTimeout"] == 5
                cut = next(
                    e
                    for e in world.entries("spendy")
                    if e.decision.policy == "budget" and e.decision.acts
                )
                assert cut.decision.action is Action.SCALE_DOWN
                assert cut.decision.reason is Reason.CONSTRAINT_CEILING
                assert cut.decision.scale_to_zero_timeout == 5
                assert cut.outcome.result is ActionResult.APPLIED
                assert _budget(cut.decision) == "budget_degrade"
                assert world.scaling("vip") == (3, 3)
                assert _scaling(world, "vip")["scaleToZeroTimeout"] == 5

                # 3. hard cap: spend reaches the cap. spendy is paused; vip is capped instead.
                await burner(4)
                hard_at = None
                while hard_at is None and world.clock.now() < MIDNIGHT - 1800:
                    await until(world.clock.now() + STEP)
                    if levels[-1][1] == 3:
                        hard_at = levels[-1][0]
                assert hard_at is not None, tracker.latest.budgets
                await until(world.clock.now() + 3 * STEP)
                assert _state(world, "spendy") == "paused"
                pause = next(
                    e.decision for e in world.entries("spendy") if e.decision.action is Action.PAUSE
                )
                assert pause.at >= hard_at
                assert pause.policy == "budget"
                assert pause.pause_reason == "budget:budget_exhausted"
                assert _state(world, "vip") == "running"
                assert world.scaling("vip") == (1, 1)
                vip_cap = next(
                    e.decision
                    for e in world.entries("vip")
                    if e.decision.at >= hard_at and e.decision.acts
                )
                assert vip_cap.reason is Reason.CONSTRAINT_CEILING
                assert _budget(vip_cap) == "budget_exhausted_protected"
                assert not [e for e in world.entries("vip") if e.decision.action is Action.PAUSE]
                assert level_metric(await world.scrape_metrics(gov)) == 3
                # Still exhausted for the rest of the day: nothing is resumed.
                await world.human("POST", f"/endpoint/{NS}/burner/pause")
                await until(MIDNIGHT - 60)
                assert _state(world, "spendy") == "paused"
                assert levels[-1][1] == 3

                # 4. reset: a new day. Governor resumes its own budget pause, not the person's.
                await until(MIDNIGHT + 12 * STEP)
                assert max(lvl for t, lvl in levels if t >= MIDNIGHT) < 3
                assert level_metric(await world.scrape_metrics(gov)) < 3
                resume = [e for e in world.entries("spendy") if e.decision.action is Action.RESUME]
                assert len(resume) == 1
                assert resume[0].decision.at >= MIDNIGHT
                assert resume[0].decision.policy == "budget"
                assert _budget(resume[0].decision) == "budget_reset"
                assert resume[0].outcome.result is ActionResult.APPLIED
                assert _state(world, "spendy") == "running"

                # 5. no flapping: the new day's forecast (current replicas x 24 h) crosses the
                # degrade line once spendy is back at 3; the cut to 1 pulls it under again, but the
                # degrade holds while the forecast stays over the alert line.
                after = [
                    e for e in world.entries("spendy") if e.decision.at > resume[0].decision.at
                ]
                cuts = [e for e in after if e.decision.policy == "budget" and e.decision.acts]
                assert len(cuts) == 1, [e.decision.message for e in cuts]
                assert not [
                    e
                    for e in after
                    if e.decision.at > cuts[0].decision.at and e.decision.action is Action.SCALE_UP
                ]
                assert world.scaling("spendy") == (1, 1)
                assert _budget(world.entries("spendy")[-1].decision) == "budget_degrade"
        finally:
            tracker.close()
        assert _state(world, "manual") == "paused"
        assert await world.writes("manual") == []
        manual = [e.decision.reason for e in world.entries("manual")]
        assert manual[-1] is Reason.HUMAN_PAUSE
        assert Reason.KEPT_PAUSED in manual or Reason.HUMAN_OVERRIDE in manual
        assert await world.writes("burner") == []


def test_budget_degrade_holds_until_the_forecast_is_back_under_the_alert_line():
    """Once degraded, the budget policy keeps the degrade constraint while the level is only
    `alert` (its own lower ceiling pulled the forecast down), drops it under the alert line, and
    forgets it when a new period starts (spend went down)."""
    from policies.base import EndpointView, SpendView
    from policies.budget import BudgetParams, BudgetPolicy
    from tests.helpers import endpoint

    pol = BudgetPolicy(BudgetParams(degrade_ceiling=1))
    ep = endpoint(target=3)
    memory: dict[str, Any] = {}

    def step(level: int, spend: float) -> Any:
        """One tick of the policy at this budget level and spend, carrying its memory."""
        nonlocal memory
        view = EndpointView(
            key=ep.key,
            endpoint=ep,
            window=None,
            current=3,
            ready=3,
            floor=1,
            ceiling=3,
            memory=memory,
            spend=SpendView(
                scope="tag:t",
                period="day",
                level=level,
                cap_usd=100.0,
                spend_usd=spend,
                forecast_usd=90.0,
            ),
        )
        prop = pol.propose(view, 0.0)
        memory = dict(prop.memory) if prop.memory is not None else memory
        return prop

    seen = []
    for level, spend in [(1, 10.0), (2, 20.0), (1, 21.0), (2, 22.0), (1, 23.0), (0, 24.0)]:
        prop = step(level, spend)
        seen.append((prop.reason, prop.ceiling))
    assert seen == [
        ("budget_alert", None),
        ("budget_degrade", 1),
        ("budget_degrade", 1),  # held: only alert, but degraded since spend 20
        ("budget_degrade", 1),
        ("budget_degrade", 1),
        ("budget_ok", None),  # under the alert line: released
    ]
    # A new period: spend is lower than when the degrade began, so an alert is only an alert.
    for level, spend in [(2, 50.0), (1, 1.0)]:
        prop = step(level, spend)
    assert (prop.reason, prop.ceiling) == ("budget_alert", None)
