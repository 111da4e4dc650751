"""The pure decision core: gate, demand, stabilisation, bounds, action."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import Action, EndpointMemory, Reason, decide
from controller.core.params import EndpointSettings
from policies.pending_requests import PendingRequestsParams, PendingRequestsPolicy
from tests.helpers import T0, endpoint, window

POLICY = PendingRequestsPolicy(
    PendingRequestsParams(target_per_replica=2.0, window_s=60, panic_threshold=100)
)


@dataclass(frozen=True)
class Scenario:
    """A frozen input bundle: endpoint state, pending samples (offset s, value), memory, knobs."""

    target: int = 2
    state: str = "running"
    pending: tuple[tuple[float, float | None], ...] = ((-10, 4.0),)
    recs: tuple[tuple[float, int], ...] = ()
    observed_s: float = 3600
    floor: int = 1
    ceiling: int = 10
    up_s: float = 0
    down_s: float = 300
    feed_error: str | None = None
    bounds: tuple[int, int] | None = None
    mode: str = "pin"
    extra: dict = field(default_factory=dict)


def run(sc: Scenario, now: float = T0):
    ep = endpoint(
        state=sc.state,
        target=sc.target,
        min_replica=sc.bounds[0] if sc.bounds else None,
        max_replica=sc.bounds[1] if sc.bounds else None,
    )
    mem = EndpointMemory(
        first_seen=now - sc.observed_s,
        running_since=now - sc.observed_s,
        recommendations=tuple((now + t, n) for t, n in sc.recs),
    )
    es = EndpointSettings(
        floor=sc.floor,
        ceiling=sc.ceiling,
        scale_up_stabilization_s=sc.up_s,
        scale_down_stabilization_s=sc.down_s,
    )
    w = window([(now + t, v) for t, v in sc.pending])
    return decide(
        ep,
        [POLICY],
        mem,
        now=now,
        settings=es,
        window=w,
        feed_error=sc.feed_error,
        max_age_s=60,
        mode=sc.mode,
    )


@pytest.mark.parametrize(
    ("sc", "action", "reason", "desired"),
    [
        pytest.param(
            Scenario(pending=((-10, 4.0),)), Action.HOLD, Reason.WITHIN_RANGE, 2, id="at-target"
        ),
        pytest.param(
            Scenario(pending=((-10, 9.0),)),
            Action.SCALE_UP,
            Reason.DEMAND_INCREASE,
            5,
            id="scale-up-at-once",
        ),
        pytest.param(
            Scenario(pending=((-40, 2.0), (-10, 10.0))),
            Action.SCALE_UP,
            Reason.DEMAND_INCREASE,
            3,
            id="mean-over-window",
        ),
        pytest.param(
            Scenario(pending=((-90, 100.0), (-10, 4.0))),
            Action.HOLD,
            Reason.WITHIN_RANGE,
            2,
            id="old-sample-outside-window",
        ),
        pytest.param(
            Scenario(pending=((-10, 40.0),)),
            Action.SCALE_UP,
            Reason.DEMAND_INCREASE,
            10,
            id="clamped-to-ceiling",
        ),
        pytest.param(
            Scenario(target=4, pending=((-10, 0.0),), recs=((-400, 4),)),
            Action.SCALE_DOWN,
            Reason.DEMAND_DECREASE,
            1,
            id="scale-down-to-floor",
        ),
        pytest.param(
            Scenario(target=4, pending=((-10, 0.0),), recs=((-100, 4),)),
            Action.HOLD,
            Reason.SCALE_DOWN_STABILIZED,
            4,
            id="down-held-by-window",
        ),
        pytest.param(
            Scenario(target=4, pending=((-10, 2.0),), recs=((-200, 3), (-100, 2))),
            Action.SCALE_DOWN,
            Reason.DEMAND_DECREASE,
            3,
            id="down-to-window-max",
        ),
        pytest.param(
            Scenario(target=4, pending=((-10, 0.0),), observed_s=60),
            Action.HOLD,
            Reason.SCALE_DOWN_STABILIZED,
            4,
            id="no-down-right-after-start",
        ),
        pytest.param(
            Scenario(pending=((-10, 9.0),), up_s=120, recs=((-60, 3),)),
            Action.SCALE_UP,
            Reason.SCALE_UP_STABILIZED,
            3,
            id="up-window-min",
        ),
        pytest.param(
            Scenario(target=1, floor=3, pending=((-10, 0.0),)),
            Action.SCALE_UP,
            Reason.BELOW_FLOOR,
            3,
            id="below-floor",
        ),
        pytest.param(
            Scenario(target=6, ceiling=4, pending=((-10, 12.0),)),
            Action.SCALE_DOWN,
            Reason.ABOVE_CEILING,
            4,
            id="above-ceiling",
        ),
        pytest.param(
            Scenario(target=2, floor=0, pending=((-10, 0.0),), recs=((-400, 2),)),
            Action.SCALE_TO_ZERO,
            Reason.DEMAND_DECREASE,
            0,
            id="to-zero",
        ),
        pytest.param(
            Scenario(bounds=(1, 6)),
            Action.SET_BOUNDS,
            Reason.BOUNDS_DRIFT,
            2,
            id="pin-bounds-drift",
        ),
        pytest.param(
            Scenario(bounds=(2, 10), mode="floor"),
            Action.HOLD,
            Reason.WITHIN_RANGE,
            2,
            id="floor-mode-bounds-ok",
        ),
    ],
)
def test_decision_table(sc, action, reason, desired):
    """Each scenario yields exactly the expected action, reason and desired count."""
    d, _ = run(sc)
    assert (d.action, d.reason, d.desired) == (action, reason, desired), d.message
    assert d.policy == "pending_requests"
    if d.acts:
        assert d.bounds is not None


@pytest.mark.parametrize(
    ("sc", "reason"),
    [
        pytest.param(Scenario(state="paused"), Reason.HUMAN_PAUSE, id="paused-by-person"),
        pytest.param(Scenario(state="scaledToZero"), Reason.NOT_ACTIONABLE, id="scaled-to-zero"),
        pytest.param(Scenario(state="initializing"), Reason.NOT_ACTIONABLE, id="initializing"),
        pytest.param(
            Scenario(feed_error="parse_error: junk"), Reason.STALE_METRICS, id="feed-error"
        ),
        pytest.param(Scenario(pending=((-120, 40.0),)), Reason.STALE_METRICS, id="old-sample"),
        pytest.param(Scenario(pending=()), Reason.NO_DATA, id="no-sample"),
        pytest.param(Scenario(pending=((-10, None),)), Reason.NO_DATA, id="no-pending-series"),
    ],
)
def test_hold_without_fresh_data_or_right_state(sc, reason):
    """No action is ever taken on stale/missing data or in a non-running state."""
    d, _ = run(sc)
    assert d.action is Action.HOLD
    assert d.reason is reason
    assert d.bounds is None


def test_memory_records_recommendations_and_prunes():
    """The successor memory carries this tick's recommendation and forgets beyond the horizon."""
    _, mem = run(Scenario(pending=((-10, 9.0),), recs=((-1000, 7), (-100, 3))))
    assert [n for _, n in mem.recommendations] == [3, 5]
    roundtrip = EndpointMemory.from_json(mem.to_json())
    assert roundtrip == mem


@settings(max_examples=200, deadline=None)
@given(
    target=st.integers(0, 20),
    floor=st.integers(0, 5),
    span=st.integers(0, 15),
    pending=st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=6),
    recs=st.lists(st.integers(0, 30), max_size=6),
)
def test_never_outside_floor_and_ceiling(target, floor, span, pending, recs):
    """Whatever the signal and history, an acting decision lands within [floor, ceiling]."""
    ceiling = floor + span + 1
    sc = Scenario(
        target=target,
        floor=floor,
        ceiling=ceiling,
        pending=tuple((-5.0 * (i + 1), v) for i, v in enumerate(pending)),
        recs=tuple((-30.0 * (i + 1), n) for i, n in enumerate(recs)),
    )
    d, _ = run(sc)
    if d.acts:
        assert floor <= d.desired <= ceiling
        lo, hi = d.bounds
        assert lo == d.desired
        assert hi >= max(lo, 1)


@settings(max_examples=100, deadline=None)
@given(noise=st.lists(st.floats(3.01, 4.0), min_size=5, max_size=40))
def test_noise_within_one_replica_band_never_acts(noise):
    """Pending that stays within the band of the current count never causes an action."""
    now = T0
    ep = endpoint(target=2)
    es = EndpointSettings(floor=1, ceiling=10)
    mem = EndpointMemory(first_seen=now - 3600)
    w = window([])
    from tests.helpers import sample

    for i, v in enumerate(noise):
        t = now + 15 * i
        w.add(sample(t, v))
        d, mem = decide(ep, [POLICY], mem, now=t, settings=es, window=w)
        assert d.action is Action.HOLD, d.message


def test_woken_endpoint_gets_a_full_window_before_scale_down():
    """An endpoint that was not running at the previous tick is not scaled down on arrival."""
    now = T0
    es = EndpointSettings(floor=0, ceiling=3)
    mem = EndpointMemory(first_seen=now - 7200, running_since=now - 3600)
    asleep = endpoint(state="scaledToZero", target=0)
    d, mem = decide(asleep, [POLICY], mem, now=now, settings=es, window=window([(now - 5, 0.0)]))
    assert d.reason is Reason.NOT_ACTIONABLE
    assert mem.running_since is None
    awake = endpoint(target=1)
    for dt in (15, 150, 290):
        t = now + dt
        d, mem = decide(awake, [POLICY], mem, now=t, settings=es, window=window([(t - 5, 0.0)]))
        assert d.action is Action.HOLD, d.message
        assert d.reason is Reason.SCALE_DOWN_STABILIZED
    t = now + 15 + 301
    d, mem = decide(awake, [POLICY], mem, now=t, settings=es, window=window([(t - 5, 0.0)]))
    assert d.action is Action.SCALE_TO_ZERO
