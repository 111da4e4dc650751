"""slo_target: SLO-derived sizing, the capacity and cold-start learners, the scale-to-zero
break-even, and the default driving a real endpoint through the emulator."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.platform.signals import FeedSample
from policies.capacity import (
    capacity_of,
    engine_capacity,
    erlang_c,
    learn,
    learn_cold_start,
    replicas_for_slo,
    wait_probability,
)
from policies.registry import build_policy
from policies.slo_target import idle_timeout
from tests.helpers import endpoint
from tests.policy_support import T0, feed, rich_window, view

# -- queueing model --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (2, 1.0, 1 / 3),  # textbook value
        (3, 3.0, 1.0),  # at or over capacity everyone waits
        (4, 0.0, 0.0),
    ],
)
def test_erlang_c_known_values(servers, load, expected):
    assert erlang_c(servers, load) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("load", "capacity", "budget", "ratio", "expected"),
    [
        (0.0, 8, 0.005, 0.0, 0),
        (1.0, 8, 0.005, 0.0, 1),
        (40.0, 8, 0.005, 0.0, 8),
        (40.0, 8, 0.005, 1 / 5.5, 7),  # waits under the delay count as met
        (150.0, 8, 0.005, 1 / 5.5, 21),  # square-root staffing: 19 busy + 2 spare
        (40.0, 8, 0.5, 0.0, 6),  # a loose SLO runs the replicas hotter
    ],
)
def test_replicas_for_slo_table(load, capacity, budget, ratio, expected):
    assert (
        replicas_for_slo(load, capacity=capacity, miss_budget=budget, delay_over_service=ratio)
        == expected
    )


@given(
    load=st.floats(0.1, 300),
    capacity=st.integers(1, 32),
    budget=st.floats(0.001, 0.5),
    ratio=st.floats(0, 2),
)
def test_replicas_for_slo_meets_its_budget_and_is_monotone(load, capacity, budget, ratio):
    """The count meets the budget (below the ceiling), one fewer does not, and more load or a
    tighter budget never asks for fewer."""
    n = replicas_for_slo(load, capacity=capacity, miss_budget=budget, delay_over_service=ratio)
    assert n * capacity > load
    assert wait_probability(n * capacity, load, ratio) <= budget
    if n > math.ceil(load / capacity):
        assert wait_probability((n - 1) * capacity, load, ratio) > budget
    more = replicas_for_slo(
        load * 1.3, capacity=capacity, miss_budget=budget, delay_over_service=ratio
    )
    tighter = replicas_for_slo(
        load, capacity=capacity, miss_budget=budget / 2, delay_over_service=ratio
    )
    assert more >= n
    assert tighter >= n


# -- capacity from the API -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, None),
        ({"MAX_BATCH_SIZE": "16"}, 16.0),
        ({"MAX_BATCH_REQUESTS": "4"}, 4.0),
        ({"LLAMA_ARG_N_PARALLEL": "2"}, 2.0),
        ({"MAX_CONCURRENT_REQUESTS": "128"}, None),  # admission limit, not batch width
        ({"MAX_BATCH_SIZE": "lots"}, None),
        ({"MAX_BATCH_SIZE": "0"}, None),
    ],
)
def test_engine_capacity_from_env(env, expected):
    ep = endpoint()
    ep = ep.model_copy(update={"model": ep.model.model_copy(update={"env": env})})
    assert engine_capacity(ep) == expected


# -- capacity learner ------------------------------------------------------------------------------


def _replay(true_cap: int, service_s: float, loads: list[float], ready: int = 2) -> dict:
    """Feed the learner what `ready` replicas of `true_cap` slots show under each load (in flight
    per the whole endpoint), 15 s apart: completions by Little's law, latency with the queue."""
    mem: dict = {}
    count, total = 0.0, 0.0
    for i, pending in enumerate(loads):
        in_service = min(pending, ready * true_cap)
        done = in_service / service_s * 15
        wait = (pending - in_service) / (ready * true_cap / service_s) if pending else 0.0
        count += done
        total += done * (service_s + wait)
        mem = learn(
            mem,
            at=T0 + 15 * i,
            pending=pending,
            ready=ready,
            latency_count=count,
            latency_sum=total,
            prior=8,
        )
    return mem


def test_learner_finds_capacity_at_saturation():
    """Light load teaches the service time; a standing queue shows the replicas full."""
    mem = _replay(4, 5.0, [2.0] * 10 + [20.0] * 10)
    assert mem["service_s"] == pytest.approx(5.0)
    cap, src = capacity_of(mem, prior=8)
    assert src == "learnt at saturation"
    assert cap == pytest.approx(4.0, rel=0.05)


def test_learner_without_queue_only_raises_a_lower_bound():
    mem = _replay(32, 5.0, [2.0] * 5 + [30.0] * 10)
    cap, src = capacity_of(mem, prior=8)
    assert "capacity" not in mem
    assert mem["capacity_lo"] == pytest.approx(15.0)
    assert (cap, src) == (8, "prior")


def test_learner_ignores_missing_and_reset_counters():
    mem = learn({}, at=T0, pending=3, ready=1, latency_count=None, latency_sum=None, prior=8)
    assert mem == {}
    mem = learn({}, at=T0, pending=3, ready=1, latency_count=10, latency_sum=50, prior=8)
    mem = learn(mem, at=T0 + 15, pending=3, ready=1, latency_count=2, latency_sum=9, prior=8)
    assert "service_s" not in mem  # a restart is not a reading
    assert mem["lat"] == [T0 + 15, 2, 9, 1]


def test_cold_start_learner_times_starts_only():
    mem: dict = {}
    for t, cur, ready in [(0, 2, 1), (60, 2, 1), (180, 2, 2), (200, 3, 2), (230, 2, 2)]:
        mem = learn_cold_start(mem, at=T0 + t, current=cur, ready=ready)
    assert mem["cold_start_s"] == pytest.approx(180.0)  # the cancelled scale-up is not a start
    assert mem["start_since"] is None


# -- scale-to-zero break-even ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gaps", "cold", "requests", "expected"),
    [
        ([], 180, 1000, None),  # no history: stay warm
        ([[3600, 1]] * 4, 180, 10_000, 60),  # long gaps, cheap wakes: as soon as allowed
        ([[100, 1]] * 4, 180, 10_000, None),  # gaps shorter than a cold start: stay warm
        ([[3600, 100]] * 4, 180, 10_000, None),  # the wakes would break the SLO
        ([[120, 0]] * 10 + [[7200, 1]], 180, 10_000, 120),  # ride out the short gaps
    ],
)
def test_idle_timeout_table(gaps, cold, requests, expected):
    got = idle_timeout(gaps, cold_start_s=cold, miss_budget=0.005, requests=requests, min_idle_s=60)
    assert got == expected


@given(
    gaps=st.lists(st.tuples(st.floats(1, 20_000), st.floats(0, 50)), max_size=30),
    cold=st.floats(0, 900),
    requests=st.floats(0, 1e6),
)
def test_idle_timeout_never_breaks_the_budget_nor_costs_more(gaps, cold, requests):
    gaps = [list(g) for g in gaps]
    tau = idle_timeout(gaps, cold_start_s=cold, miss_budget=0.005, requests=requests, min_idle_s=60)
    if tau is None:
        return
    assert sum(w for g, w in gaps if g > tau) <= 0.005 * requests
    warm = sum(g for g, _ in gaps)
    assert sum(min(g, tau) + (cold if g > tau else 0) for g, _ in gaps) < warm


# -- the policy ------------------------------------------------------------------------------------


def _pol(**params):
    return build_policy("slo_target", params, where="policies.slo_target")


def _steady(pending: float, n: int = 8, start: float = T0) -> list[FeedSample]:
    return [feed(start + 15 * i, pending=pending, served=10.0 * i) for i in range(n)]


def test_no_sample_is_invalid():
    p = _pol().propose(view(window=rich_window([])), T0)
    assert (p.reason, p.valid) == ("no_data", False)


@pytest.mark.parametrize(
    ("pending", "capacity", "expected"),
    [(0.2, None, 1), (10.0, None, 3), (40.0, None, 8), (40.0, 16.0, 4), (40.0, 4.0, 15)],
)
def test_sizes_from_slo_and_capacity(pending, capacity, expected):
    v = replace(view(current=expected, window=rich_window(_steady(pending))), ceiling=50)
    v = replace(v, capacity_per_replica=capacity)
    p = _pol().propose(v, T0 + 105)
    assert (p.reason, p.replicas) == ("slo_target", expected)
    assert "P(wait > 1s)" in p.message


def test_looser_slo_needs_fewer():
    v = replace(view(current=8, window=rich_window(_steady(40.0))), ceiling=50)
    tight = _pol().propose(v, T0 + 105).replicas
    loose = _pol().propose(replace(v, slo_attainment=0.9), T0 + 105).replicas
    assert loose is not None
    assert tight is not None
    assert loose < tight


def test_panic_scales_at_once_and_holds():
    """Without the backlog rule (a queue read as load), a jump panics to its size at once."""
    samples = [*_steady(2.0, 6), feed(T0 + 90, pending=80.0, served=60.0)]
    v = replace(view(current=1, ready=1, window=rich_window(samples)), ceiling=50)
    pol = _pol(backlog=False)
    p = pol.propose(v, T0 + 90)
    assert p.reason == "panic"
    assert p.replicas is not None
    assert p.replicas >= 10
    calm = rich_window(samples + [feed(T0 + 105 + 15 * i, pending=2.0) for i in range(3)])
    later = pol.propose(replace(v, window=calm, current=p.replicas, memory=p.memory), T0 + 135)
    assert later.reason == "panic"
    assert later.replicas == p.replicas


def test_panic_on_a_backlog_holds_what_the_backlog_asks():
    """The same jump with the backlog rule: 72 queued beyond 1 x 8 is sized for what remains a
    cold start ahead, and the panic's hold keeps it."""
    samples = [*_steady(2.0, 6), feed(T0 + 90, pending=80.0, served=60.0)]
    v = replace(view(current=1, ready=1, window=rich_window(samples)), ceiling=50)
    pol = _pol()
    p = pol.propose(v, T0 + 90)
    assert p.reason == "panic"
    assert "backlog: 72 queued beyond 1 x 8 served" in p.message
    assert p.replicas is not None
    assert 2 <= p.replicas < 10
    calm = rich_window(samples + [feed(T0 + 105 + 15 * i, pending=2.0) for i in range(3)])
    later = pol.propose(replace(v, window=calm, current=p.replicas, memory=p.memory), T0 + 135)
    assert (later.reason, later.replicas) == ("panic", p.replicas)


def _idle_day(pol, v, gaps: int):
    """`gaps` busy spells of 25 min (a trickle for the first 3.5, then 50 requests a tick), each
    followed by an hour idle, ticked every 15 s."""
    samples, mem, at, served = [], {}, T0, 0.0
    props = []
    for _ in range(gaps):
        for i in range(100):
            served += 1 if i < 14 else 50
            samples.append(feed(at, pending=3.0, served=served))
            w = rich_window(samples[-40:])
            props.append(pol.propose(replace(v, window=w, memory=mem), at))
            mem, at = dict(props[-1].memory or {}), at + 15
        for _ in range(240):
            samples.append(feed(at, pending=0.0, served=served))
            w = rich_window(samples[-40:])
            props.append(pol.propose(replace(v, window=w, memory=mem), at))
            mem, at = dict(props[-1].memory or {}), at + 15
    return props


def test_scale_to_zero_after_break_even_only_with_floor_zero():
    pol = _pol()
    v = replace(view(current=1, ready=1), cold_start_s=180.0)
    props = _idle_day(pol, replace(v, floor=0), 4)
    zero = [i for i, p in enumerate(props) if p.reason == "idle_to_zero"]
    assert zero, "idle hours with cheap wakes should reach zero"
    assert all(i >= 340 for i in zero)  # never before the first gap was observed
    assert all(p.replicas == 0 for p in props if p.reason == "idle_to_zero")
    with_floor = _idle_day(pol, replace(v, floor=1), 4)
    assert not [p for p in with_floor if p.reason == "idle_to_zero"]


def test_strict_slo_forbids_scale_to_zero():
    pol = _pol()
    v = replace(view(current=1, ready=1, floor=0), cold_start_s=180.0, slo_attainment=0.99999)
    assert not [p for p in _idle_day(pol, v, 4) if p.reason == "idle_to_zero"]


# -- end to end: the default on a real endpoint ----------------------------------------------------


def test_default_meets_slo_on_a_small_load_through_the_emulator():
    """Governor's default config (no policy given) replays a Poisson load through the emulated
    platform over HTTP and meets the SLO at fewer replicas than a pending-per-replica of 2."""
    from controller.backtest.simulate import PolicySpec, SimConfig, simulate
    from controller.backtest.traces import RequestTrace

    rng = random.Random(7)
    t, offsets = 0.0, []
    while t < 1800:  # a 10-minute ramp from 0.3 to 3 requests/s, then 20 minutes steady
        t += rng.expovariate(0.3 + 2.7 * min(1.0, t / 600))
        offsets.append(t)
    trace = RequestTrace("e2e-poisson", tuple(offsets))
    new = PolicySpec("default", "governor", governor={"defaults": {"policies": {"slo_target": {}}}})
    # the former default: pending_requests at 2 per replica
    old = PolicySpec(
        "target-2", "governor", governor={"defaults": {"policies": {"pending_requests": {}}}}
    )
    cfg = SimConfig(policies=[new, old], tick_interval_s=15.0)
    [report] = asyncio.run(simulate([trace], cfg, progress=None))
    by = {r.policy: r for r in report.runs}
    assert by["default"].meets_slo
    assert by["default"].replica_hours < by["target-2"].replica_hours


# -- the backlog: sized for what remains one cold start ahead --------------------------------------


def _drive(pol, pendings, *, ready, current, served_per_tick=30.0, ceiling=20, carry=True):
    """Tick the policy every 15 s over a pending series (the replicas completing
    `served_per_tick` a tick), carrying its memory (`carry`); the proposals."""
    samples, mem, props = [], {}, []
    for i, pend in enumerate(pendings):
        samples.append(feed(T0 + 15 * i, pending=pend, served=served_per_tick * i))
        v = replace(
            view(current=current, ready=ready, window=rich_window(samples), memory=mem),
            ceiling=ceiling,
            cold_start_s=180.0,
        )
        props.append(pol.propose(v, T0 + 15 * i))
        mem = dict(props[-1].memory or {}) if carry else {}
    return props


OFF = {"backlog": False}


@pytest.mark.parametrize(
    ("case", "pendings", "ready", "current", "relation", "carry"),
    [
        # a queue seen without its onset (no growth remembered): 2 replicas answer 2/s, and
        # what is left of 28 queued when new replicas are ready needs a few, not what the queue
        # read as load in flight asks for
        ("queue, no growth seen", [16, 48, 46, 45, 44], 2, 2, "fewer", False),
        # a sharp rise: the queue grows ~3/s and is sized for what it will be a cold start
        # ahead (the arrivals plus what is left then, drained in drain_s); nothing given back
        ("sharp rise", [16, 40, 80, 120, 160], 2, 2, "at least current", True),
        ("sharp rise, at the ceiling", [16, 40, 80, 120, 160], 2, 20, "at least current", True),
        # no queue: the same as without the backlog rule
        ("no queue", [4, 5, 6, 5, 4], 2, 2, "same", True),
        # no replica ready (from zero): nothing measures the drain, the load as read
        ("from zero", [10, 40, 80, 120, 160], 0, 2, "same", True),
    ],
)
def test_backlog_table(case, pendings, ready, current, relation, carry):
    on = _drive(_pol(), pendings, ready=ready, current=current, carry=carry)[-1]
    off = _drive(_pol(**OFF), pendings, ready=ready, current=current, carry=carry)[-1]
    assert on.replicas is not None
    assert off.replicas is not None
    if relation == "fewer":
        assert on.replicas < off.replicas, (case, on.message)
        assert "backlog:" in on.message
    elif relation == "at least current":
        assert on.replicas >= current
        assert "backlog:" in on.message
    else:
        assert (on.replicas, on.reason) == (off.replicas, off.reason), case


def test_backlog_left_after_a_burst_is_drained_by_a_few():
    """The reason's figures (a queue seen without its onset): 28 queued beyond 2 x 8, 2/s
    answered (1/s a replica), so the replicas carry the 2/s arriving plus the 28 left drained
    within 120 s: (2 + 28/120) x 8 = 17.9 in flight, 4 replicas, where the queue read as load
    in flight (45.75 over 60 s) asks for 9."""
    pend = [16, 48, 46, 45, 44]
    last = _drive(_pol(), pend, ready=2, current=2, carry=False)[-1]
    off = _drive(_pol(**OFF), pend, ready=2, current=2, carry=False)[-1]
    assert "backlog: 28 queued beyond 2 x 8 served" in last.message, last.message
    assert "17.87 in flight" in last.message
    assert (last.replicas, off.replicas) == (4, 9)


@given(
    steps=st.lists(st.floats(0.0, 400.0), min_size=2, max_size=12),
    ready=st.integers(0, 8),
    current=st.integers(1, 12),
    ceiling=st.integers(1, 20),
    served=st.floats(0.0, 30.0),
)
def test_backlog_bounded_and_never_gives_back_while_the_queue_grows(
    steps, ready, current, ceiling, served
):
    """Any pending series: the proposal is between 1 and the ceiling (or the count it is at,
    when that is above); on a strictly growing queue beyond the ready replicas it never asks
    for fewer than it has."""
    current = min(current, ceiling)
    for pend in (steps, sorted(set(steps))):
        props = _drive(
            _pol(), pend, ready=ready, current=current, served_per_tick=served, ceiling=ceiling
        )
        for p in props:
            assert p.replicas is not None
            assert 1 <= p.replicas <= max(ceiling, current)
        growing = len(pend) >= 3 and all(b > a for a, b in pairwise(pend))
        if growing and ready >= 1 and pend[-1] > ready * 8 and served > 0:
            assert props[-1].replicas >= current, props[-1].message
