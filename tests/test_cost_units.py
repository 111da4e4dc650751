"""Pure cost parts: forecast on a replayed periodic load, budget ladder, quota counting, price
book overrides and configuration errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cost.budget import BudgetLevel, budget_status
from controller.cost.forecast import (
    Profile,
    SlotArray,
    hour_of_week,
    month_bounds,
    project_spend,
)
from controller.cost.ledger import CostTracker, Ledger
from controller.cost.pricing import PriceBook
from controller.cost.quota import quota_lines, quota_usage
from controller.errors import ConfigError
from controller.settings import BudgetThresholds, QuotaLimit, load_settings
from tests.helpers import endpoint

UTC_Z = ZoneInfo("UTC")
L4 = 0.8  # aws nvidia-l4 x1 in the shipped table


def _weekly(t: float) -> int:
    """Replicas of a replayed weekly load: 1 at night, 3 on weekday working hours, 2 weekends."""
    d = datetime.fromtimestamp(t, UTC)
    if d.weekday() >= 5:
        return 2
    return 3 if 9 <= d.hour < 18 else 1


def test_forecast_error_on_replayed_periodic_load(tmp_path):
    """Three weeks of history, forecast at mid-month, realised at month end: error < 1 %."""
    step = 900.0
    lg = Ledger(tmp_path / "l.sqlite", prices=PriceBook(), tick_interval_s=step)
    t = datetime(2027, 1, 18, tzinfo=UTC).timestamp()
    mid = datetime(2027, 2, 14, 12, 20, tzinfo=UTC).timestamp()
    m0, m1 = month_bounds(mid, UTC_Z)
    forecast = None
    while t <= m1:
        lg.observe([endpoint(target=_weekly(t), namespace="org", name="chat")], now=t)
        if forecast is None and t >= mid:
            recorded = lg.spend(m0, m1)["org/chat"].usd
            forecast = recorded + project_spend(
                t,
                m1,
                usd_per_hour=L4,
                profile=lg.profiles()["org/chat"],
                current_replicas=_weekly(t),
                tz=UTC_Z,
            )
        t += step
    realised = lg.spend(m0, m1)["org/chat"].usd
    err = abs(forecast - realised) / realised
    print(f"forecast {forecast:.2f} realised {realised:.2f} error {100 * err:.3f} %")
    assert err < 0.01
    # the flat "current rate" projection would be far off: the profile is what makes it work
    naive = lg.spend(m0, mid)["org/chat"].usd + 1 * L4 * (m1 - mid) / 3600
    assert abs(naive - realised) / realised > 0.1
    lg.close()


def test_profile_mirror_matches_the_table(tmp_path):
    """The writing ledger keeps its profiles in memory after the first read; they must stay what
    a fresh read of the table gives (checked through a read-only ledger on the same file)."""
    path = tmp_path / "l.sqlite"
    lg = Ledger(path, prices=PriceBook(), tick_interval_s=600.0)
    t = datetime(2027, 3, 1, 7, tzinfo=UTC).timestamp()

    def fleet(t: float) -> list:
        return [
            endpoint(target=_weekly(t), namespace="org", name="chat"),
            endpoint(target=(int(t // 3600) % 3), namespace="org", name="batch"),
        ]

    for i in range(200):  # ~33 hours in 600 s steps, first read half-way
        lg.observe(fleet(t), now=t)
        if i == 100:
            assert lg.profiles()  # reads the table, then mirrors it
        t += 600.0
    mine = lg.profiles()
    fresh = Ledger(path, prices=PriceBook(), tick_interval_s=600.0, readonly=True).profiles()
    assert set(mine) == set(fresh) == {"org/chat", "org/batch"}
    for key, prof in fresh.items():
        for slot in range(7 * 24):
            assert mine[key].seconds.get(slot, 0.0) == pytest.approx(prof.seconds.get(slot, 0.0))
            assert mine[key].replica_s.get(slot, 0.0) == pytest.approx(
                prof.replica_s.get(slot, 0.0)
            )
    assert sum(fresh["org/chat"].seconds.get(s, 0.0) for s in range(168)) > 30 * 3600


def _walk_projection(start, end, *, usd_per_hour, profile, current_replicas, floor, tz):
    """The projection as first written: one step per UTC hour, slot looked up per step."""
    total, t = 0.0, start
    while t < end:
        nxt = min(end, (math.floor(t / 3600.0) + 1) * 3600.0)
        mean = profile.mean(hour_of_week(t, tz), min_slot_s=1800.0)
        total += (
            max(current_replicas if mean is None else mean, floor)
            * usd_per_hour
            * ((nxt - t) / 3600.0)
        )
        t = nxt
    return total


@settings(max_examples=150, deadline=None)
@given(
    start=st.floats(1.7e9, 1.9e9),
    span=st.floats(0, 40 * 86_400),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    slots=st.dictionaries(st.integers(0, 167), st.floats(0, 20), max_size=60),
    seconds=st.floats(0, 7200),
    current=st.floats(0, 20),
    floor=st.floats(0, 5),
    price=st.floats(0.01, 50),
    arrays=st.booleans(),
)
def test_projection_by_slot_equals_the_hourly_walk(
    start, span, tz, slots, seconds, current, floor, price, arrays
):
    """Grouping the period's hours by hour-of-week slot (computed once per tick for every
    endpoint) projects the same spend as walking the period hour by hour; so does visiting only
    the observed slots (dict keys, or the ledger mirror's arrays with their `slots` set)."""
    zone = ZoneInfo(tz)
    profile = Profile({k: v * seconds for k, v in slots.items()}, {k: seconds for k in slots})
    if arrays:
        rep, sec = SlotArray.zeros(), SlotArray.zeros()
        for k, v in slots.items():
            rep[k], sec[k] = v * seconds, seconds
        profile = Profile(rep, sec, set(slots))
    kw = dict(usd_per_hour=price, profile=profile, current_replicas=current, floor=floor, tz=zone)
    fast = project_spend(start, start + span, **kw)
    assert fast == pytest.approx(_walk_projection(start, start + span, **kw), rel=1e-9, abs=1e-9)


def test_projection_falls_back_to_current_and_respects_floor():
    start = datetime(2027, 3, 1, tzinfo=UTC).timestamp()
    p = project_spend(
        start,
        start + 7200,
        usd_per_hour=1.0,
        profile=Profile.empty(),
        current_replicas=2,
        tz=UTC_Z,
    )
    assert p == pytest.approx(4.0)
    p = project_spend(
        start,
        start + 3600,
        usd_per_hour=1.0,
        profile=Profile.empty(),
        current_replicas=0,
        floor=1,
        tz=UTC_Z,
    )
    assert p == pytest.approx(1.0)
    assert (
        project_spend(
            start,
            start + 3600,
            usd_per_hour=None,
            profile=Profile.empty(),
            current_replicas=1,
            tz=UTC_Z,
        )
        is None
    )


@pytest.mark.parametrize(
    ("spend", "forecast", "level"),
    [
        (10, 50, BudgetLevel.OK),
        (10, 80, BudgetLevel.ALERT),
        (10, 95, BudgetLevel.DEGRADE),
        (60, 200, BudgetLevel.DEGRADE),
        (100, 100, BudgetLevel.HARD),
        (None, 10, BudgetLevel.ALERT),  # unknown spend never reads as OK
        (10, None, BudgetLevel.ALERT),
        (None, None, BudgetLevel.ALERT),
    ],
)
def test_budget_ladder(spend, forecast, level):
    assert budget_status(spend, forecast, 100.0, BudgetThresholds()) is level


def test_budget_ladder_thresholds_are_configurable():
    th = BudgetThresholds(alert=0.5, degrade=0.7, hard=0.9)
    assert budget_status(10, 55, 100, th) is BudgetLevel.ALERT
    assert budget_status(10, 75, 100, th) is BudgetLevel.DEGRADE
    assert budget_status(90, 95, 100, th) is BudgetLevel.HARD
    with pytest.raises(ValueError, match="cap"):
        budget_status(1, 1, 0, th)


def test_quota_counts_like_the_platform():
    book = PriceBook()
    eps = [
        endpoint(state="running", target=2, name="a"),
        endpoint(state="initializing", target=1, name="b"),
        endpoint(state="scaledToZero", target=0, max_replica=4, min_replica=0, name="c"),
        endpoint(state="paused", target=0, name="d"),
    ]
    usage = quota_usage(eps, book)
    assert usage == {("org", "aws", "gpu"): 2 + 1 + 4}
    lines = quota_lines(
        usage, [QuotaLimit(namespace="org", vendor="aws", accelerator="gpu", max_accelerators=8)]
    )
    assert [(ln.used, ln.limit, ln.free) for ln in lines] == [(7, 8, 1)]


def test_unknown_instance_is_unknown_not_zero(tmp_path, caplog):
    book = PriceBook(table={})
    lg = Ledger(tmp_path / "l.sqlite", prices=book, tick_interval_s=60)
    t = datetime(2027, 3, 1, tzinfo=UTC).timestamp()
    for i in range(5):
        lg.observe([endpoint(target=1)], now=t + 60 * i)
    assert book.unknown == {("aws", "nvidia-l4", "x1")}
    assert lg.total_usd("org/chat") is None
    s = load_settings(None, overrides={"namespaces": ["org"]}, env={})
    tr = CostTracker(s, lg)
    rep = tr.report([endpoint(target=1)], now=t + 300)
    assert rep.unknown_instances == 1
    assert rep.endpoints[0].month_usd is None
    assert rep.endpoints[0].rate_usd_per_hour is None
    lg.close()


def test_override_replaces_rate_and_adds_instances():
    s = load_settings(
        None,
        overrides={
            "pricing": {
                "overrides": [
                    {
                        "vendor": "aws",
                        "instance_type": "nvidia-l4",
                        "instance_size": "x1",
                        "usd_per_hour": 0.6,
                    },
                    {
                        "vendor": "aws",
                        "instance_type": "acme-chip",
                        "instance_size": "x1",
                        "usd_per_hour": 9.5,
                        "accelerators": 1,
                    },
                ]
            }
        },
        env={},
    )
    book = PriceBook(s.pricing.overrides)
    assert book.lookup("aws", "nvidia-l4", "x1").usd_per_hour == 0.6
    row = book.lookup("aws", "acme-chip", "x1")
    assert (row.usd_per_hour, row.accelerators, row.accelerator) == (9.5, 1, "gpu")
    diffs = book.diff_provider(
        {
            "vendors": [
                {
                    "name": "aws",
                    "regions": [
                        {
                            "computes": [
                                {
                                    "instanceType": "nvidia-l4",
                                    "instanceSize": "x1",
                                    "pricePerHour": 0.8,
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    )
    assert any(d.instance_type == "nvidia-l4" and d.ours == 0.6 and d.api == 0.8 for d in diffs)


@pytest.mark.parametrize(
    ("pricing", "needle"),
    [
        (
            {
                "overrides": [
                    {
                        "vendor": "aws",
                        "instance_type": "x",
                        "instance_size": "x1",
                        "usd_per_hour": -1,
                    }
                ]
            },
            "pricing.overrides[0].usd_per_hour",
        ),
        (
            {"overrides": [{"vendor": "aws", "instance_type": "x", "instance_size": "x1"}]},
            "pricing.overrides[0].usd_per_hour: Field required",
        ),
        (
            {
                "overrides": [
                    {
                        "vendor": "aws",
                        "instance_type": "x",
                        "instance_size": "x1",
                        "usd_per_hour": 1,
                        "price": 2,
                    }
                ]
            },
            "pricing.overrides[0].price: unknown key",
        ),
        (
            {
                "overrides": [
                    {
                        "vendor": "aws",
                        "instance_type": "x",
                        "instance_size": "x1",
                        "usd_per_hour": "cheap",
                    }
                ]
            },
            "pricing.overrides[0].usd_per_hour",
        ),
    ],
)
def test_malformed_pricing_is_rejected_naming_the_key(pricing, needle):
    with pytest.raises(ConfigError) as ei:
        load_settings(None, overrides={"pricing": pricing}, env={})
    assert needle in str(ei.value)


def test_new_instance_without_accelerators_is_rejected():
    bad = {
        "pricing": {
            "overrides": [
                {
                    "vendor": "aws",
                    "instance_type": "acme-chip",
                    "instance_size": "x1",
                    "usd_per_hour": 9.5,
                }
            ]
        }
    }
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.accelerators: required"):
        load_settings(None, overrides=bad, env={})


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"budgets": [{"scope": "endpoint", "match": "chat", "usd": 10}]}, "budgets[0]"),
        ({"budgets": [{"scope": "team", "match": "x", "usd": 10}]}, "budgets[0].scope"),
        ({"budgets": [{"scope": "tag", "match": "x", "usd": 0}]}, "budgets[0].usd"),
        (
            {
                "budgets": [
                    {
                        "scope": "tag",
                        "match": "x",
                        "usd": 5,
                        "thresholds": {"alert": 0.9, "degrade": 0.5},
                    }
                ]
            },
            "budgets[0].thresholds",
        ),
        ({"ledger": {"timezone": "Mars/Olympus"}}, "ledger.timezone"),
        (
            {
                "quota": {
                    "limits": [
                        {
                            "namespace": "o",
                            "vendor": "aws",
                            "accelerator": "tpu",
                            "max_accelerators": 4,
                        }
                    ]
                }
            },
            "quota.limits[0].accelerator",
        ),
    ],
)
def test_malformed_cost_config_is_rejected_naming_the_key(overrides, needle):
    with pytest.raises(ConfigError) as ei:
        load_settings(None, overrides=overrides, env={})
    assert needle in str(ei.value)
