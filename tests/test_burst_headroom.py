"""slo_target's burst headroom: the sizing math (table-driven), its invariants (hypothesis), and
the daemon holding spare replicas ahead of the next short burst through the emulator."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.daemon.exporter import Metrics
from controller.emulator.load import Burst
from policies.prewarm import burst_excess, burst_headroom, fold_peak
from policies.registry import build_policy
from tests.conftest import NS, World
from tests.policy_support import T0, feed, rich_window, view

# -- the math ------------------------------------------------------------------------------------

Q = [30.0] * 9  # 2 req/s over 15 s intervals
S15 = [15.0] * 9


@pytest.mark.parametrize(
    ("case", "arrivals", "spans", "mid", "z", "want"),
    [
        ("steady: nothing beyond Poisson", Q, S15, 4, 6.0, 0.0),
        # 180 arrived where the median expects 30: 150 beyond it, 6 x sqrt(30) of it is noise
        ("a spike", [*Q[:4], 180.0, *Q[5:]], S15, 4, 6.0, (150 - 6 * math.sqrt(30)) / 15),
        ("a spike, z 0: all of it", [*Q[:4], 180.0, *Q[5:]], S15, 4, 0.0, 10.0),
        ("within the noise", [*Q[:4], 60.0, *Q[5:]], S15, 4, 6.0, 0.0),
        # a step at the centre: the median is the new rate, so it is not a burst
        ("a step is sustained", [30.0] * 4 + [180.0] * 5, S15, 4, 6.0, 0.0),
        ("a spike off-centre is read elsewhere", [*Q[:4], 180.0, *Q[5:]], S15, 2, 0.0, 0.0),
        # a burst from idle: the median expects nothing, everything is beyond it
        ("from idle", [0.0] * 4 + [45.0] + [0.0] * 4, S15, 4, 6.0, 3.0),
        # a longer interval (a missed scrape) is read at its own rate
        ("uneven spans", [*Q[:4], 60.0, *Q[5:]], [*S15[:4], 30.0, *S15[5:]], 4, 0.0, 0.0),
        ("nothing given", [], [], 0, 6.0, 0.0),
        ("mid out of range", Q, S15, 9, 6.0, 0.0),
        ("a zero span", [*Q[:4], 180.0, *Q[5:]], [*S15[:4], 0.0, *S15[5:]], 4, 0.0, 0.0),
        ("mismatched lengths", Q, S15[:3], 1, 0.0, 0.0),
    ],
)
def test_burst_excess_table(case, arrivals, spans, mid, z, want):
    assert burst_excess(arrivals, spans, mid, z) == pytest.approx(want), case


@pytest.mark.parametrize(
    ("case", "peaks", "bucket", "value", "oldest", "want"),
    [
        ("first", [], 10, 2.0, 0, [[10, 2.0]]),
        ("a new minute", [[10, 2.0]], 11, 1.0, 0, [[10, 2.0], [11, 1.0]]),
        ("the same minute keeps its largest", [[10, 2.0]], 10, 1.0, 0, [[10, 2.0]]),
        ("the same minute, larger", [[10, 2.0]], 10, 5.0, 0, [[10, 5.0]]),
        ("old minutes dropped", [[3, 9.0], [10, 2.0]], 11, 1.0, 5, [[10, 2.0], [11, 1.0]]),
        ("a minute before the lookback is not kept", [[10, 2.0]], 4, 7.0, 5, [[10, 2.0]]),
        ("never out of order", [[10, 2.0]], 9, 7.0, 0, [[10, 2.0]]),
    ],
)
def test_fold_peak_table(case, peaks, bucket, value, oldest, want):
    assert fold_peak(peaks, bucket=bucket, value=value, oldest=oldest) == want, case


@pytest.mark.parametrize(
    ("case", "peaks", "now", "want"),
    [
        ("none", [], 600.0, (0.0, 0.0)),
        ("just now", [[9, 4.0]], 600.0, (4.0, 4.0)),
        ("one half-life old", [[7, 4.0]], 600.0, (2.0, 4.0)),
        ("two half-lives old", [[5, 4.0]], 600.0, (1.0, 4.0)),
        ("the largest as it counts now", [[5, 4.0], [9, 3.0]], 600.0, (3.0, 4.0)),
    ],
)
def test_burst_headroom_table(case, peaks, now, want):
    """Buckets of 60 s, half-life 120 s; age from the end of the bucket."""
    got = burst_headroom(peaks, now=now, bucket_s=60.0, half_life_s=120.0)
    assert got == pytest.approx(want), case


@given(
    arrivals=st.lists(st.floats(0, 1e4), min_size=1, max_size=30),
    z=st.floats(0, 20),
    data=st.data(),
)
def test_burst_excess_bounded_by_the_interval_rate(arrivals, z, data):
    """An excess is never negative, never more than the interval's own rate, and more z never
    reads more."""
    spans = data.draw(st.lists(st.floats(1, 60), min_size=len(arrivals), max_size=len(arrivals)))
    mid = data.draw(st.integers(0, len(arrivals) - 1))
    e = burst_excess(arrivals, spans, mid, z)
    assert 0.0 <= e <= arrivals[mid] / spans[mid] + 1e-9
    assert burst_excess(arrivals, spans, mid, z + 1) <= e + 1e-9


# -- the policy ------------------------------------------------------------------------------------


def _pol(**params):
    """slo_target with the headroom on (explicitly, though it is the default) unless `params`
    say otherwise."""
    return build_policy(
        "slo_target", {"burst_headroom": True, **params}, where="policies.slo_target"
    )


def _drive(pol, served, pendings, *, ready=2, current=2, ceiling=20):
    """Tick every 15 s: `served[i]` answered in interval i, `pendings[i]` pending at its end;
    memory carried; the proposals."""
    samples, mem, props, total = [], {}, [], 0.0
    for i, (n, pend) in enumerate(zip(served, pendings, strict=True)):
        total += n
        samples.append(feed(T0 + 15 * i, pending=pend, served=total))
        v = replace(
            view(current=current, ready=ready, window=rich_window(samples), memory=mem),
            ceiling=ceiling,
            cold_start_s=180.0,
            capacity_per_replica=4.0,
        )
        props.append(pol.propose(v, T0 + 15 * i))
        mem = dict(props[-1].memory or {})
    return props


# 2 req/s, 4 in flight (Little: 2 s each); a 10 s spike of 150 more at tick 20
STEADY = [30.0] * 100
SPIKE = [*STEADY[:20], 180.0, *STEADY[21:]]
PEND = [4.0] * 100


def test_headroom_after_a_spike_then_it_fades():
    """The spike is read once it is at the centre of the 120 s context (4 ticks later): ~7.8/s
    beyond Poisson x the service time = ~12 more in flight, sized with the load; then it halves
    every 120 s, and the count falls back to what the load needs."""
    on = _drive(_pol(), SPIKE, PEND)
    off = _drive(_pol(), STEADY, PEND)
    calm = off[-1].replicas
    assert calm is not None
    assert all(p.reason != "burst_headroom" for p in on[:24])
    held = on[25]
    assert held.reason == "burst_headroom", held.message
    assert held.replicas is not None
    assert held.replicas >= calm + 3, held.message
    assert "beyond Poisson" in held.message
    # the service time by Little's law: 4 in flight / 2 arriving per second, read down a little
    # by the spike's own arrivals in the window
    svc = float(re.search(r"x service ([0-9.]+)s", held.message).group(1))
    assert 1.5 <= svc <= 2.0, held.message
    faded = [p.replicas for p in on[25:]]
    assert all(a >= b for a, b in itertools.pairwise(faded)), faded
    assert on[-1].replicas == calm, on[-1].message
    assert all(p.reason != "burst_headroom" for p in off)


def test_headroom_switched_off():
    """Off (`burst_headroom: false`): no headroom and nothing of it remembered."""
    props = _drive(_pol(burst_headroom=False), SPIKE, PEND)
    assert all(p.reason != "burst_headroom" for p in props)
    assert "bursts" not in (props[-1].memory or {})


def test_headroom_on_by_default():
    """The shipped default holds the headroom: the same proposals as with it set on, the spike
    remembered and sized for."""
    default = _drive(build_policy("slo_target", {}, where="t"), SPIKE, PEND)
    on = _drive(_pol(), SPIKE, PEND)
    assert [(p.reason, p.replicas) for p in default] == [(p.reason, p.replicas) for p in on]
    assert default[25].reason == "burst_headroom", default[25].message
    assert (default[-1].memory or {}).get("bursts"), default[-1].memory


def test_a_step_is_not_a_burst():
    """A sustained rise is the reactive sizing's: no headroom is held for it."""
    served = [30.0] * 20 + [90.0] * 20
    pend = [4.0] * 20 + [12.0] * 20
    props = _drive(_pol(), served, pend)
    assert all(p.reason != "burst_headroom" for p in props), [p.message for p in props]


@settings(deadline=None, max_examples=40)
@given(
    served=st.lists(st.floats(0.0, 400.0), min_size=6, max_size=30),
    data=st.data(),
    ready=st.integers(0, 6),
    current=st.integers(1, 12),
    ceiling=st.integers(1, 20),
)
def test_headroom_never_below_the_demand_count_and_bounded(served, data, ready, current, ceiling):
    """Any feed: with the headroom the proposal is never below the same policy's without it,
    and never above the ceiling (or the count it is at, which a panic holds)."""
    pend = data.draw(st.lists(st.floats(0, 200), min_size=len(served), max_size=len(served)))
    current = min(current, ceiling)
    kw = {"ready": ready, "current": current, "ceiling": ceiling}
    on = _drive(_pol(), served, pend, **kw)
    off = _drive(_pol(burst_headroom=False), served, pend, **kw)
    for a, b in zip(on, off, strict=True):
        assert a.replicas is not None
        assert b.replicas is not None
        assert b.replicas <= a.replicas <= max(ceiling, current), (a.message, b.message)


# -- end to end through the emulator ---------------------------------------------------------------


async def test_daemon_holds_spare_replicas_after_short_bursts(world: World):
    """A 10 s burst (20 req/s over a 0.5 req/s base) every 4 minutes, far shorter than the 60 s
    cold start, on two endpoints: one as shipped (headroom on), one with it off. Without it the
    daemon can only chase each burst; with it, the replicas ready when the next burst arrives are
    more."""
    load = Burst(base=0.5, peak=20.0, start_s=300.0, duration_s=10.0, period_s=240.0)
    for name in ("with", "without"):
        world.add(name, load=load, tags=["managed"], max_replica=10)
    s = world.settings(
        defaults={
            "ceiling": 10,
            "cold_start_s": 60,
            "capacity_per_replica": 4,
            "policies": {"slo_target": {"prewarm": False}},  # the headroom as shipped (on)
        },
        endpoints=[
            {
                "match": {"names": ["without"]},
                "policies": {"slo_target": {"prewarm": False, "burst_headroom": False}},
            }
        ],
    )
    m = Metrics()
    ready: dict[str, list[int]] = {"with": [], "without": []}
    async with world.client(s, m) as client:
        gov = world.governor(s, client, metrics=m)
        t = T0
        for k in range(5):
            burst_at = T0 + 300 + k * 240
            while t < burst_at - 15:
                t += 15
                await world.tick_at(gov, t)
            eps = world.platform.snapshot()["endpoints"]
            for name in ready:
                ready[name].append(int(eps[f"{NS}/{name}"]["ready_replicas"]))
    assert any("burst headroom" in e.decision.message for e in world.entries("with"))
    assert not any("burst headroom" in e.decision.message for e in world.entries("without"))
    on, off = ready["with"], ready["without"]
    # the first burst is unseen by both: what the base load needs (2, 3 after a Poisson panic)
    assert max(on[0], off[0]) <= 3, (on, off)
    # every later one finds spare replicas with the headroom; without, some find only the base
    # (the replicas the last burst's panic started are held for the scale-down window, 300 s)
    assert min(on[1:]) >= 6, (on, off)
    assert min(off[1:]) <= 3, (on, off)
