"""The oracle: exact per-bucket need, cold-start lookahead, and never above any policy's cost at an
equal or better SLO on small synthetic traces."""

from __future__ import annotations

import random

import pytest

from controller.backtest.bound import lower_bound_usd
from controller.backtest.oracle import bump, replicas_needed, schedule
from controller.backtest.simulate import (
    PolicySpec,
    ServiceModel,
    SimConfig,
    _reach_once,
    prepare,
    simulate,
    warm_needed,
)
from controller.backtest.traces import RequestTrace


def test_schedule_starts_replicas_one_cold_start_ahead():
    need = [1, 1, 1, 1, 5, 1, 1]
    assert schedule(need, cold_start_s=180) == [1, 5, 5, 5, 5, 1, 1]
    assert schedule(need, cold_start_s=0) == need
    assert schedule(need, cold_start_s=60) == [1, 1, 1, 5, 5, 1, 1]


def test_replicas_needed_is_exact_for_a_fixed_load():
    # 4 requests of 30 s every second for one minute on 8-slot replicas: 120 busy slots in steady
    # state, so 15 replicas; an idle second bucket needs 1.
    offsets = [i / 4 for i in range(240)] + [170.0]
    need = replicas_needed(offsets, [30.0] * 241, concurrency=8, slo_s=1.0, horizon_s=180)
    assert need[0] == 15
    assert need[2] == 1
    assert bump({}, [0, 2]) == {0: 1, 2: 1}
    more = replicas_needed(
        offsets, [30.0] * 241, concurrency=8, slo_s=1.0, horizon_s=180, extra={0: 1}
    )
    assert more[0] == 16


def _synthetic(seed: int, minutes: int = 16) -> RequestTrace:
    rng = random.Random(seed)
    offsets: list[float] = []
    t = 0.0
    burst_at = rng.uniform(4, 9) * 60
    while t < minutes * 60:
        rate = 1.5 if not burst_at <= t < burst_at + rng.choice((60, 180)) else 6.0
        t += rng.expovariate(rate)
        offsets.append(t)
    n = len(offsets)
    return RequestTrace(
        f"synthetic-{seed}",
        tuple(offsets),
        tuple(rng.randint(100, 3000) for _ in range(n)),
        tuple(rng.randint(5, 120) for _ in range(n)),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_oracle_never_above_any_policy_at_equal_or_better_slo(seed):
    cfg = SimConfig(
        slo_ms=1000,
        slo_attainment=0.99,
        seed=seed,
        max_replicas=12,
        service=ServiceModel(cold_start_s=120),
        policies=[
            PolicySpec("platform", "platform", measure={"pendingRequests": 1.5}),
            PolicySpec("static", "static"),
            PolicySpec("static-big", "static", replicas=12),
            PolicySpec(
                "governor",
                "governor",
                governor={"defaults": {"policies": {"pending_requests": {}}}},
                candidates=[
                    {"defaults": {"policies": {"pending_requests": {"target_per_replica": t}}}}
                    for t in (2.0, 6.0)
                ],
            ),
            PolicySpec("static-zero", "static", replicas=2, floor=0),
            PolicySpec("oracle", "oracle"),
            PolicySpec("oracle-overall", "oracle", scoring="overall"),
            PolicySpec("bound", "bound"),
        ],
    )
    [rep] = await simulate([_synthetic(seed)], cfg, progress=None)
    runs = {r.policy: r for r in rep.runs}
    oracle = runs.pop("oracle")
    overall = runs.pop("oracle-overall")
    bound = runs.pop("bound")
    assert oracle.meets_slo
    assert overall.meets_slo
    assert overall.cost_usd <= oracle.cost_usd
    for r in runs.values():
        if r.slo_attainment >= oracle.slo_attainment:
            assert oracle.cost_usd <= r.cost_usd, (r.policy, r.cost_usd, oracle.cost_usd)
    assert oracle.cost_usd < runs["static-big"].cost_usd
    # the bound is below every run that meets the SLO, the oracles' included
    for r in [*runs.values(), oracle, overall]:
        if r.meets_slo:
            assert bound.cost_usd <= r.cost_usd, (r.policy, r.cost_usd, bound.cost_usd)
    assert bound.cost_usd > 0


@pytest.mark.parametrize(
    ("attainment", "expected"),
    [
        # two requests 1000 s apart: busy 10 + 10 s, the first cold start, one gap of 989 s
        # charged a cold start (180 s): 380 replica-seconds at $1/s
        (1.0, 380.0),
        # one may miss: one request's work and no gap term
        (0.5, 190.0),
    ],
)
def test_lower_bound_by_hand(attainment, expected):
    usd = lower_bound_usd(
        [0.0, 1000.0],
        [10.0, 10.0],
        concurrency=1,
        slo_s=1.0,
        attainment=attainment,
        end_s=1100.0,
        cold_start_s=180.0,
        usd_per_hour=3600.0,
    )
    assert usd == pytest.approx(expected)


def _cold_burst(seed: int) -> RequestTrace:
    """Traffic at full rate from its first second (3 req/s of 5-25 s requests, ~45 Erlangs),
    for 8 minutes: one warm replica of 8 slots is far too few for the first cold start."""
    rng = random.Random(seed)
    offsets: list[float] = []
    t = 0.0
    while t < 480:
        t += rng.expovariate(3.0)
        offsets.append(t)
    n = len(offsets)
    return RequestTrace(
        f"cold-burst-{seed}",
        tuple(offsets),
        tuple(rng.randint(100, 3000) for _ in range(n)),
        tuple(rng.randint(100, 480) for _ in range(n)),
    )


@pytest.mark.parametrize("seed", [4, 5])
async def test_reach_bounds_every_controller_holding_its_floor(seed):
    cfg = SimConfig(
        seed=seed,
        max_replicas=12,
        lead_in_s=300,
        service=ServiceModel(cold_start_s=120),
        policies=[
            PolicySpec("platform", "platform", measure={"pendingRequests": 1.5}),
            PolicySpec("platform-8", "platform", measure={"pendingRequests": 8}),
            PolicySpec("platform-zero", "platform", measure={"pendingRequests": 1.5}, floor=0),
            PolicySpec("governor", "governor"),
            PolicySpec(
                "governor-pending",
                "governor",
                governor={"defaults": {"policies": {"pending_requests": {}}}},
            ),
            PolicySpec("reach", "reach"),
            PolicySpec("reach-zero", "reach", floor=0),
        ],
    )
    [rep] = await simulate([_cold_burst(seed)], cfg, progress=None)
    runs = {r.policy: r for r in rep.runs}
    reach, reach0 = runs.pop("reach"), runs.pop("reach-zero")
    assert not reach.meets_slo  # the load is built so that the goal is out of reach
    for name in ("platform", "platform-8", "governor", "governor-pending"):
        assert runs[name].slo_attainment <= reach.slo_attainment, name
    assert runs["platform-zero"].slo_attainment <= reach0.slo_attainment
    assert reach0.rejected_503 > 0  # asleep at the first request: 503s until a replica is ready
    # the warm count the detail names is the fewest that reaches the goal
    prep = prepare(cfg, _cold_burst(seed))
    need = warm_needed(cfg, prep, 12)
    assert need is not None
    assert 1 < need <= 12
    assert reach.detail.endswith(f": {need}")
    assert _reach_once(cfg, prep, need, 12).meets_slo
    assert not _reach_once(cfg, prep, need - 1, 12).meets_slo
