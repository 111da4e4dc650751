"""The capacity model and the right_sizing policy's pure parts: fit, scaling, choice, windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from controller.cost.capacity import (
    ACCELERATORS,
    candidate_rows,
    fits,
    model_memory_from_feed,
    replica_bandwidth,
    replica_memory_gb,
    scale_capacity,
)
from controller.cost.pricing import load_pricing, lookup_price
from controller.platform.signals import FeedSample
from policies.right_sizing import (
    Evaluation,
    RightSizingParams,
    RightSizingPolicy,
    choose,
    in_maintenance,
    observed,
)
from tests.policy_support import rich_window, view


def row(t: str, size: str = "x1", vendor: str = "aws"):
    r = lookup_price(vendor, t, size)
    assert r is not None
    return r


def test_every_priced_accelerator_type_has_a_spec():
    types = {r.instance_type for r in load_pricing().values() if r.accelerators > 0}
    assert types <= set(ACCELERATORS), types - set(ACCELERATORS)


def test_memory_is_the_pricing_tables_and_bandwidth_scales_with_cards():
    assert replica_memory_gb(row("nvidia-t4")) == 14  # the table's (aws) figure, not the sheet's 16
    assert replica_memory_gb(row("nvidia-a100", "x4")) == 320
    assert replica_memory_gb(row("intel-spr")) is None
    assert replica_bandwidth(row("nvidia-l4"), tp_efficiency=0.8) == 300
    assert replica_bandwidth(row("nvidia-l4", "x4"), tp_efficiency=0.8) == pytest.approx(960)
    assert replica_bandwidth(row("nvidia-l4"), tp_efficiency=1, throughput={"nvidia-l4": 2}) == 2


def test_fit_needs_headroom():
    assert fits(row("nvidia-l4"), 16, headroom=0.2)  # 19.2 <= 24
    assert not fits(row("nvidia-l4"), 16, headroom=0.6)  # 25.6 > 24
    assert not fits(row("nvidia-t4"), 16, headroom=0.0)  # 16 > 14


def test_model_memory_from_the_feed():
    assert model_memory_from_feed(row("nvidia-a100"), 25.0) == pytest.approx(20.0)
    assert model_memory_from_feed(row("nvidia-a100"), 0.0) is None
    assert model_memory_from_feed(row("intel-spr"), 50.0) is None


def test_candidates_same_vendor_and_kind_fitting_cheapest_first():
    cur = row("nvidia-a100")
    rows = candidate_rows(cur, load_pricing(), model_gb=16, headroom=0.2)
    keys = [r.key for r in rows]
    assert keys[0] == ("aws", "nvidia-l4", "x1")  # $0.8, 24 GB
    assert ("aws", "nvidia-t4", "x1") not in keys  # 14 GB < 19.2
    assert cur.key in keys
    assert all(r.vendor == "aws" and r.accelerator == "gpu" for r in rows)
    prices = [r.usd_per_hour for r in rows]
    assert prices == sorted(prices)
    only = candidate_rows(
        cur, load_pricing(), model_gb=16, headroom=0.2, allowed_types=frozenset({"nvidia-l4"})
    )
    assert {r.instance_type for r in only} == {"nvidia-l4", "nvidia-a100"}


def test_scale_capacity_by_bandwidth_and_kv_room():
    c = scale_capacity(
        row("nvidia-a100"),
        row("nvidia-l4"),
        model_gb=16,
        service_s=2.0,
        concurrency=32,
        tp_efficiency=0.8,
        max_concurrency_ratio=4,
    )
    assert c is not None
    assert c.speed == pytest.approx(300 / 2039)
    assert c.service_s == pytest.approx(2.0 * 2039 / 300)
    assert c.concurrency == 4  # 32 x (24 - 16) / (80 - 16)
    up = scale_capacity(
        row("nvidia-l4"),
        row("nvidia-a100"),
        model_gb=16,
        service_s=1.0,
        concurrency=8,
        tp_efficiency=0.8,
        max_concurrency_ratio=4,
    )
    assert up is not None
    assert up.concurrency == 32
    none = scale_capacity(
        row("nvidia-a100"),
        row("nvidia-t4"),
        model_gb=16,
        service_s=1.0,
        concurrency=8,
        tp_efficiency=0.8,
        max_concurrency_ratio=4,
    )
    assert none is None  # the model does not fit at all


def ev(instance: str, cost: float, att: float, *, current: bool = False) -> Evaluation:
    return Evaluation(instance, 1.0, 24, 1.0, 8, cost, att, att >= 0.99, 1.0, 1, current=current)


def test_choose_cheapest_meeting_the_slo_with_the_saving():
    p = RightSizingParams()
    evs = [
        ev("aws/nvidia-a100/x1", 1825.0, 0.999, current=True),
        ev("aws/nvidia-l4/x1", 584.0, 0.995),
        ev("aws/nvidia-t4/x1", 365.0, 0.90),
    ]
    r = choose("ns/e", evs, p, at=0.0)
    assert r.action == "change"
    assert r.best == "aws/nvidia-l4/x1"
    assert r.saving_month_usd == pytest.approx(1241.0)
    assert "saves $1,241.00/mo" in r.explain()


def test_choose_keeps_when_nothing_cheaper_meets_or_the_saving_is_small():
    p = RightSizingParams(min_saving_usd_month=100)
    r = choose("k", [ev("a", 100, 0.999, current=True), ev("b", 50, 0.5)], p, at=0)
    assert r.action == "keep"
    assert r.best is None
    r = choose("k", [ev("a", 100, 0.999, current=True), ev("b", 50, 0.999)], p, at=0)
    assert r.action == "keep"
    assert "under min_saving_usd_month" in r.reason
    r = choose("k", [ev("a", 100, 0.5, current=True), ev("b", 50, 0.5)], p, at=0)
    assert r.action == "keep"
    assert "no candidate" in r.reason


def test_apply_needs_a_window_and_windows_use_the_schedule_syntax():
    with pytest.raises(ValidationError, match="maintenance window"):
        RightSizingParams(apply=True)
    with pytest.raises(ValidationError, match="cron"):
        RightSizingParams(maintenance=[{"cron": "not cron", "duration_s": 60}])
    p = RightSizingParams(
        apply=True, maintenance=[{"days": ["sun"], "start": "02:00", "end": "04:00"}]
    )
    sun_3am = datetime(2026, 12, 6, 3, 0, tzinfo=UTC).timestamp()
    sun_5am = datetime(2026, 12, 6, 5, 0, tzinfo=UTC).timestamp()
    mon_3am = datetime(2026, 12, 7, 3, 0, tzinfo=UTC).timestamp()
    assert in_maintenance(p, sun_3am)
    assert not in_maintenance(p, sun_5am)
    assert not in_maintenance(p, mon_3am)
    assert not in_maintenance(RightSizingParams(), sun_3am)


def sample(at: float, mem: float, gpu: float) -> FeedSample:
    return FeedSample(at=at, gpu={"r1": gpu}, gpu_memory={"r1": mem})


def test_policy_records_peak_memory_per_instance_and_never_has_an_opinion():
    pol = RightSizingPolicy(RightSizingParams())
    t = 1_700_000_000.0
    w = rich_window([sample(t - 30, 20.0, 10.0), sample(t, 30.0, 20.0)])
    v = view(current=1, ready=1, window=w)
    prop = pol.propose(v, t)
    assert prop.kind.value == "no_opinion"
    assert prop.valid
    assert prop.replicas is None
    assert prop.reason == "observing"
    peak, use = observed(prop.memory, "aws/nvidia-l4/x1")
    assert peak == 30.0
    assert use == pytest.approx(15.0)
    assert observed(prop.memory, "aws/nvidia-a100/x1") == (None, None)
    empty = pol.propose(view(current=1, ready=1, window=rich_window([])), t)
    assert empty.reason == "no_data"
    assert empty.valid


def test_the_config_refuses_apply_without_a_window_naming_the_field():
    from controller.errors import ConfigError
    from controller.settings import load_settings

    with pytest.raises(ConfigError, match="right_sizing") as exc:
        load_settings(
            None,
            overrides={
                "namespaces": ["acme"],
                "defaults": {"policies": {"right_sizing": {"apply": True}}},
            },
            env={"HF_TOKEN": "hf_x"},
        )
    assert "maintenance window" in str(exc.value)


def test_replay_service_is_the_request_weighted_mean_of_the_minutes_without_a_queue():
    from controller.backtest.autopilot import service_from_demand
    from controller.backtest.rightsize import service_for_replay
    from controller.daemon.store import DemandMinute

    def minute(i: int, n: float, lat_sum: float, ready: int = 1) -> DemandMinute:
        return DemandMinute("k", i, n, lat_sum, n, 0.0, 0.0, 4 * ready, 4)

    # heavy-tailed sizes: many minutes of one short request, a few of several long ones
    rows = [minute(i, 1, 2.0) for i in range(6)] + [minute(10 + i, 6, 60.0) for i in range(2)]
    # the quiet minutes' quartile says 2 s; the requests average (12 + 120) / 18 = 7.33 s
    assert service_from_demand(rows) == pytest.approx(2.0)
    assert service_for_replay(rows, capacity=8) == pytest.approx(132 / 18)
    # a minute whose in-flight (Little: 30 x 40 s / 60 = 20 per replica) exceeds the batch
    # width queued: its latency is not service time and is left out
    queued = [*rows, minute(20, 30, 1200.0)]
    assert service_for_replay(queued, capacity=8) == pytest.approx(132 / 18)
    assert service_for_replay(queued, capacity=32) == pytest.approx(1332 / 48)
    # minutes without latency or without a replica-count sample say nothing
    bare = [DemandMinute("k", 1, 5.0), DemandMinute("k", 2, 5.0, 10.0, 5.0)]
    assert service_for_replay(bare, capacity=8) is None


def test_spread_from_neighbouring_minutes_means_and_sizes_keep_each_minutes_work():
    import random
    import statistics

    from controller.backtest.rightsize import SIZE_UNITS_PER_S, service_spread, sized_trace
    from controller.daemon.store import DemandMinute

    # requests of cv 1 (exponential sizes, mean 4 s), 5 a minute: the minutes' means alone
    # give the per-request spread back
    rng = random.Random(3)
    rows = []
    for m in range(600):
        sizes = [rng.expovariate(1 / 4.0) for _ in range(5)]
        rows.append(DemandMinute("k", m, 5, sum(sizes), 5, 0.0, 0.0, 4, 4))
    cv = service_spread(rows, capacity=8)
    assert cv == pytest.approx(1.0, abs=0.1)
    # a load whose sizes drift slowly (2 s rising to 8 s, all alike within a minute) is no spread
    drift = [DemandMinute("k", m, 5, 5 * (2 + 6 * m / 600), 5, 0.0, 0.0, 4, 4) for m in range(600)]
    assert service_spread(drift, capacity=8) == pytest.approx(0.0, abs=0.01)

    few = [
        DemandMinute("k", 0, 1, 2.0, 1, 0.0, 0.0, 4, 4),  # one request of 2 s
        DemandMinute("k", 1, 3, 30.0, 3, 0.0, 0.0, 4, 4),  # three sharing 30 s
        DemandMinute("k", 3, 2, 0.0, 0, 0.0, 0.0, 4, 4),  # no latency: around the mean
    ]
    tr = sized_trace(few, name="k", capacity=8, mean_s=6.0, cv=1.5)
    secs = [u / SIZE_UNITS_PER_S for u in tr.output_tokens or ()]
    assert len(secs) == 6
    by_min: dict[int, list[float]] = {}
    for o, s in zip(tr.offsets, secs, strict=True):
        by_min.setdefault(int(o // 60), []).append(s)
    assert by_min[0] == [pytest.approx(2.0)]  # that request's own time
    assert sum(by_min[1]) == pytest.approx(30.0, abs=0.01)
    assert statistics.pstdev(by_min[1]) > 0  # spread inside the minute
    assert sum(by_min[3]) == pytest.approx(12.0, abs=0.01)
    assert tr.input_tokens == (0,) * 6
