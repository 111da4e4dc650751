"""Predictive pre-warm: the forecast from lagged recorded demand, slo_target sizing for it, the
history read from a real state store, and the daemon pre-warming a recurring burst end to end."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.daemon.exporter import Metrics
from controller.daemon.store import DemandMinute, StateStore, demand_history, service_time
from controller.emulator.load import Burst
from policies.base import DemandHistory
from policies.prewarm import forecast_rise, lag_label
from policies.registry import build_policy
from tests.conftest import NS, World
from tests.policy_support import T0, feed, rich_window, view

H = 3600.0
NOW = T0 + 10 * 86_400.0  # on a minute boundary (T0 is)


def hist(*lags: tuple[float, list[float | None]], recorded_s: float = 30 * 86_400.0):
    return DemandHistory(
        at=NOW, lags=tuple((lag, tuple(v)) for lag, v in lags), recorded_s=recorded_s
    )


QUIET = [1.0] * 10
BURST = [1.0, 1.0, 1.0, 21.0, 21.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # minutes 3-4 after the lag
SMALL = [1.0, 1.0, 1.0, 7.0, 7.0, 1.0, 1.0, 1.0, 1.0, 1.0]
FALLING = [20.0, 18.0, 16.0, 14.0, 12.0, 10.0, 8.0, 6.0, 4.0, 2.0]


@pytest.mark.parametrize(
    ("case", "history", "lead_s", "confirm", "rise", "support"),
    [
        ("nothing recorded", None, 300, 2, None, None),
        ("seen once, not confirmed", hist((H, BURST), (2 * H, QUIET)), 300, 2, None, None),
        ("seen once, confirm 1", hist((H, BURST), (2 * H, QUIET)), 300, 1, 20.0, (H,)),
        ("twice: the smaller rise", hist((H, BURST), (86_400, SMALL)), 300, 2, 6.0, (H, 86_400)),
        ("twice alike", hist((H, BURST), (2 * H, BURST), (3 * H, QUIET)), 300, 2, 20.0, (H, 2 * H)),
        ("beyond the lead", hist((H, BURST), (2 * H, BURST)), 120, 2, None, None),
        ("a falling load never rises", hist((H, FALLING), (2 * H, FALLING)), 300, 2, None, None),
        (
            "unrecorded minutes are quiet",
            hist((H, [None] * 10), (2 * H, BURST)),
            300,
            1,
            20.0,
            (2 * H,),
        ),
        (
            "a lag before the first record is unknown",
            hist((H, BURST), (86_400, BURST), recorded_s=2 * H),
            300,
            2,
            None,
            None,
        ),
        (
            "history too short for the lead",
            hist((H, BURST[:3]), (2 * H, BURST[:3])),
            300,
            2,
            None,
            None,
        ),
    ],
)
def test_forecast_rise_table(case, history, lead_s, confirm, rise, support):
    fc = forecast_rise(history, now=NOW, lead_s=lead_s, confirm=confirm)
    if rise is None:
        assert fc is None, case
    else:
        assert fc is not None, case
        assert fc.rise == pytest.approx(rise), case
        assert fc.support == support, case


def test_forecast_follows_now_within_a_cached_minute():
    """A history built at one instant is read correctly a minute later (the loop rebuilds it
    once a minute): the same lagged minutes shift by one."""
    h = hist((H, BURST), (2 * H, BURST))
    assert forecast_rise(h, now=NOW + 60, lead_s=120, confirm=2) is not None  # minutes 1-3
    assert forecast_rise(h, now=NOW, lead_s=120, confirm=2) is None  # minutes 0-2


@given(
    rows=st.lists(
        st.lists(st.one_of(st.none(), st.floats(0, 500)), min_size=12, max_size=12),
        min_size=1,
        max_size=8,
    ),
    lead=st.floats(0, 600),
    confirm=st.integers(1, 8),
)
def test_forecast_invariants(rows, lead, confirm):
    """The forecast rise is one some lag actually showed, at least `confirm` lags showed as
    much, it is positive, and asking for more confirmation never forecasts more."""
    h = hist(*[((i + 1) * H, r) for i, r in enumerate(rows)])
    fc = forecast_rise(h, now=NOW, lead_s=lead, confirm=confirm)
    last = math.floor(lead / 60)
    rises = [max((v or 0) for v in r[: last + 1]) - (r[0] or 0) for r in rows]
    if fc is None:
        assert len(rises) < confirm or sorted(rises, reverse=True)[confirm - 1] <= 0
        return
    assert fc.rise > 0
    assert any(fc.rise == pytest.approx(x) for x in rises)
    assert len(fc.support) >= confirm
    assert sum(r >= fc.rise - 1e-9 for r in rises) >= confirm
    stricter = forecast_rise(h, now=NOW, lead_s=lead, confirm=confirm + 1)
    assert stricter is None or stricter.rise <= fc.rise


@pytest.mark.parametrize(
    ("lag", "label"), [(3600, "1h"), (7200, "2h"), (86_400, "1d"), (604_800, "1w"), (90, "90s")]
)
def test_lag_label(lag, label):
    assert lag_label(lag) == label


# -- slo_target sizing for the forecast -----------------------------------------------------------


def _steady_view(history: DemandHistory | None, **kw):
    w = rich_window([feed(NOW - 60 + 15 * i, pending=1.0, served=2.0 * i) for i in range(5)])
    v = view(current=1, ready=1, window=w, floor=1, ceiling=kw.pop("ceiling", 10))
    return replace(v, history=history, cold_start_s=180.0, capacity_per_replica=4.0)


def _propose(params, v):
    return build_policy("slo_target", params, where="test").propose(v, NOW)


@pytest.mark.parametrize(
    ("case", "params", "history", "ceiling", "reason", "replicas"),
    [
        ("no history: as before", {}, None, 10, "slo_target", 2),
        ("recurred twice: pre-warm", {}, hist((H, BURST), (2 * H, BURST)), 10, "prewarm", 9),
        ("seen once: not yet", {}, hist((H, BURST), (2 * H, QUIET)), 10, "slo_target", 2),
        ("switched off", {"prewarm": False}, hist((H, BURST), (2 * H, BURST)), 10, "slo_target", 2),
        ("capped", {"prewarm_max_replicas": 4}, hist((H, BURST), (2 * H, BURST)), 10, "prewarm", 4),
        ("at most the ceiling", {}, hist((H, BURST), (2 * H, BURST)), 5, "prewarm", 5),
        ("confirm 1", {"prewarm_confirm": 1}, hist((H, BURST), (2 * H, QUIET)), 10, "prewarm", 9),
    ],
)
def test_slo_target_prewarm_table(case, params, history, ceiling, reason, replicas):
    """The rise (+20 in flight: 21 needs 9 replicas of 4 at 99 %) arrives within the cold start
    (180 s) plus the margin (60 s): sized one cold start ahead only once it recurred."""
    p = _propose(params, _steady_view(history, ceiling=ceiling))
    assert (p.reason, p.replicas) == (reason, replicas), (case, p.message)
    if reason == "prewarm":
        assert "pre-warm" in p.message
        assert "1h" in p.message
        assert "within 240s" in p.message


def test_prewarm_message_names_the_cap():
    p = _propose({"prewarm_max_replicas": 3}, _steady_view(hist((H, BURST), (2 * H, BURST))))
    assert "capped at prewarm_max_replicas 3" in p.message


@given(
    base=st.floats(0.0, 40.0),
    peak=st.floats(0.0, 200.0),
    confirm=st.integers(1, 3),
)
def test_prewarm_never_asks_for_less_than_the_present_load(base, peak, confirm):
    """A forecast only adds: never fewer replicas than without it, never above the ceiling."""
    row = [base, base, base, peak, peak, base, base, base, base, base]
    h = hist((H, row), (2 * H, row), (3 * H, row))
    with_h = _propose({"prewarm_confirm": confirm}, _steady_view(h))
    without = _propose({"prewarm_confirm": confirm}, _steady_view(None))
    assert with_h.replicas is not None
    assert without.replicas is not None
    assert without.replicas <= with_h.replicas <= 10


# -- the history from a real state store ----------------------------------------------------------


def test_demand_history_from_the_store(tmp_path):
    """Recorded minutes come back at each lag's phase; minutes not recorded are None; the
    record's age is known, so a lag before it is not taken for quiet."""
    store = StateStore(tmp_path / "state.sqlite")
    key = "ns/chat"
    now = NOW + 30  # mid-minute
    rows = []
    for lag in (H, 2 * H):
        m0 = math.floor((now - lag) / 60)
        for i in range(6):
            pending = 20.0 if i == 3 else 1.0
            rows.append(DemandMinute(key, m0 + i, pending_sum=4 * pending, samples=4))
    store.record_demand(rows)
    h = demand_history(store, key, now=now, lags=(H, 2 * H, 86_400.0), horizon_s=300)
    assert h is not None
    by = dict(h.lags)
    assert by[H][:6] == (1.0, 1.0, 1.0, 20.0, 1.0, 1.0)
    assert by[86_400.0] == (None,) * 6
    assert h.recorded_s == pytest.approx(now - (math.floor((now - 2 * H) / 60)) * 60)
    fc = forecast_rise(h, now=now, lead_s=240, confirm=2)
    assert fc is not None
    assert fc.rise == pytest.approx(19.0)
    assert fc.support == (H, 2 * H)
    assert demand_history(store, "ns/other", now=now, lags=(H,), horizon_s=300) is None
    store.close()


def _minute(
    requests: float, lat_n: float, lat_sum: float, pending: float | None, growth: float = 0.0
) -> DemandMinute:
    samples = 0 if pending is None else 4
    p = pending or 0.0
    return DemandMinute("k", 0, requests, lat_sum, lat_n, 4 * p, p, 4.0, samples, growth)


@pytest.mark.parametrize(
    ("case", "minute", "service_s", "want"),
    [
        # 2 req/s x 2 s, no queue: the gauge, Little's law and the served load agree
        ("steady", _minute(120, 120, 240, 4.0), 2.0, 4.0),
        ("no pending gauge", _minute(120, 120, 240, None), None, 4.0),
        # a backlog: 60 answered at 1 req/s, each waited ~28 s behind the queue (30 s latency),
        # the gauge says 30 in the endpoint; served at once were 1 x 2 s = 2, not 30
        ("backlog", _minute(60, 60, 1800, 30.0), 2.0, 2.0),
        ("backlog, no service time known", _minute(60, 60, 1800, 30.0), None, 30.0),
        # the queue grew by 60 while 60 were answered: 120 arrived, 2/s x 2 s = 4
        ("backlog growing", _minute(60, 60, 1800, 30.0, growth=60.0), 2.0, 4.0),
        # it drains: 120 answered, 60 of them from the queue: 60 arrived
        ("backlog draining", _minute(120, 120, 1800, 30.0, growth=-60.0), 2.0, 2.0),
        # a minute quicker than the endpoint's usual service time keeps its own latency
        ("short requests", _minute(120, 120, 120, 2.0), 2.0, 2.0),
        # a cold start from zero: 30 requests answered 503 (no latency record), nothing pending
        ("503s from zero", _minute(30, 0, 0, 0.0), 2.0, 1.0),
        ("pending gauge only", _minute(0, 0, 0, 3.0), None, 3.0),
        ("idle", _minute(0, 0, 0, 0.0), 2.0, 0.0),
    ],
)
def test_in_flight_is_the_served_load_not_the_backlog(case, minute, service_s, want):
    """What the pre-warm learns from is what was served at once, not what queued."""
    assert minute.in_flight(service_s) == pytest.approx(want), case


def test_service_time_is_a_quiet_minutes_latency():
    rows = [_minute(60, 60, 120, 2.0) for _ in range(5)]
    rows += [_minute(60, 60, 1800, 30.0) for _ in range(2)]  # a burst's backlog minutes
    rows += [_minute(0, 0, 0, 0.0)]  # idle: no latency
    assert service_time(rows) == pytest.approx(2.0)
    assert service_time([_minute(0, 0, 0, 1.0)]) is None


def test_demand_history_reads_a_backlog_as_the_load_served(tmp_path):
    """A burst an hour and two ago that queued (30 in the endpoint, 2 served at once, against 1
    at other minutes) is a rise of 1 served, not of 29 queued."""
    store = StateStore(tmp_path / "state.sqlite")
    key = "ns/code"
    now = NOW + 30
    rows = []
    for lag in (H, 2 * H):
        m0 = math.floor((now - lag) / 60)
        for i in range(6):
            burst = i == 3
            m = _minute(60, 60, 1800, 30.0) if burst else _minute(30, 30, 60, 1.0)
            rows.append(replace(m, key=key, minute=m0 + i))
    store.record_demand(rows)
    h = demand_history(store, key, now=now, lags=(H, 2 * H), horizon_s=300)
    assert h is not None
    assert dict(h.lags)[H][:6] == pytest.approx((1.0, 1.0, 1.0, 2.0, 1.0, 1.0))
    fc = forecast_rise(h, now=now, lead_s=240, confirm=2)
    assert fc is not None
    assert fc.rise == pytest.approx(1.0)
    store.close()


# -- end to end: the daemon pre-warms a recurring burst over loopback --------------------------


async def test_daemon_prewarms_a_recurring_burst(world: World, tmp_path):
    """A 3-minute burst (10 req/s) on every hour. The daemon records its own demand in its state
    file; the second burst (seen once before) is met reactively, the third (seen twice) finds
    replicas started a cold start ahead and ready before it arrives."""
    world.add(
        "batch",
        load=Burst(base=0.3, peak=10.0, start_s=900.0, duration_s=180.0, period_s=H),
        tags=["managed"],
        max_replica=10,
    )
    s = world.settings(
        defaults={
            "ceiling": 10,
            "cold_start_s": 60,
            "capacity_per_replica": 4,
            "policies": {"slo_target": {}},
        }
    )
    store = StateStore(tmp_path / "gov.sqlite")
    m = Metrics()
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m, store=store)
        t = T0
        before: dict[int, tuple[int, int, str]] = {}
        for k in range(3):
            burst_at = T0 + 900 + k * H
            while t < burst_at - 15:
                t += 15 if t >= burst_at - 600 else 30  # quiet: a tick every 30 s
                await world.tick_at(gov, t)
            ep = world.platform.snapshot()["endpoints"][f"{NS}/batch"]
            before[k] = (
                ep["min_replica"],
                ep["ready_replicas"],
                world.entries("batch")[-1].decision.message,
            )
            while t < burst_at + 300:
                t += 15
                await world.tick_at(gov, t)
    store.close()
    # the second burst: seen once, no pre-warm (what the base load needs, 1 or 2 replicas)
    assert before[1][0] <= 2, before[1]
    assert "pre-warm" not in before[1][2]
    # the third: confirmed by the lags 1h and 2h; warm before the first request of the burst
    lo, ready, why = before[2]
    assert lo >= 4, why
    assert lo > before[1][0]
    assert ready >= 4, why
    assert "pre-warm" in why
    assert "1h, 2h" in why


def test_backtest_prewarms_from_the_history_it_records_itself():
    """The backtest's Governor forecasts only from the demand it recorded during the replay (a
    scratch state store): on a trace with a 2-minute job at 00:10, 01:10 and 02:10, the third
    job finds replicas ready (it was seen twice), the first two do not; attainment is higher and
    no replica is started for the third job before anything was recorded of the first two."""
    import asyncio
    import random

    from controller.backtest.simulate import PolicySpec, SimConfig, run_system
    from controller.backtest.traces import RequestTrace

    rng = random.Random(5)
    offsets, t = [], 0.0
    while t < 2 * H + 900:
        busy = (t % H) >= 600 and (t % H) < 720
        t += rng.expovariate(5.0 if busy else 0.2)
        offsets.append(t)
    trace = RequestTrace("hourly-job", tuple(offsets))
    cfg = SimConfig(tick_interval_s=15.0)

    def run(prewarm: bool):
        gov = {"defaults": {"policies": {"slo_target": {"prewarm": prewarm}}}}
        return asyncio.run(run_system(cfg, trace, PolicySpec("g", "governor", governor=gov)))

    on, off = run(True), run(False)
    assert on.slo_attainment > off.slo_attainment

    def ready_before(r, job_at: float) -> float:
        tl = r.timeline
        lead = cfg.lead_in_s
        pairs = zip(tl["t_s"], tl["ready"], strict=True)
        return [rd for ts, rd in pairs if ts < lead + job_at][-1]  # the last sample before it

    second, third = H + 600, 2 * H + 600
    assert ready_before(on, third) >= ready_before(off, third) + 2
    assert ready_before(on, second) == ready_before(off, second)  # seen once: not forecast
