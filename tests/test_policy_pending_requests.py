"""pending_requests: stable target tracking plus the Knative-style panic window."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.pending_requests import PendingRequestsParams, PendingRequestsPolicy
from tests.policy_support import T0, feed, rich_window, view

POLICY = PendingRequestsPolicy(
    PendingRequestsParams(target_per_replica=2, window_s=60, panic_window_s=15, panic_threshold=2)
)


@dataclass(frozen=True)
class Case:
    """Pending samples as (offset s, value), replica counts and the panic memory at `T0`."""

    pending: tuple[tuple[float, float], ...]
    current: int = 2
    ready: int | None = None
    memory: dict = field(default_factory=dict)


def run(c: Case, now: float = T0):
    w = rich_window(feed(now + t, pending=v) for t, v in c.pending)
    return POLICY.propose(view(current=c.current, ready=c.ready, window=w, memory=c.memory), now)


@pytest.mark.parametrize(
    ("case", "reason", "replicas"),
    [
        pytest.param(Case(((-10, 4.0),)), "pending_target", 2, id="at-target"),
        pytest.param(Case(((-50, 2.0), (-35, 2.0), (-20, 2.0))), "pending_target", 1, id="down"),
        pytest.param(Case(((-50, 2.0), (-20, 6.0))), "pending_target", 2, id="short-calm"),
        pytest.param(Case(((-50, 0.0), (-5, 8.0))), "panic", 4, id="enter-panic-at-2x"),
        pytest.param(Case(((-50, 0.0), (-5, 6.0))), "pending_target", 2, id="below-threshold"),
        pytest.param(Case(((-5, 30.0),), current=1, ready=0), "panic", 15, id="panic-from-0"),
        pytest.param(
            Case(((-5, 2.0),), current=6, memory={"panic_since": T0 - 30, "panic_last": T0 - 30}),
            "panic",
            6,
            id="no-down-while-panicking",
        ),
        pytest.param(
            Case(
                ((-5, 2.0),),
                current=3,
                memory={"panic_since": T0 - 30, "panic_last": T0 - 30, "panic_max": 8},
            ),
            "panic",
            8,
            id="holds-panic-max",
        ),
        pytest.param(
            Case(((-5, 2.0),), current=6, memory={"panic_since": T0 - 90, "panic_last": T0 - 60}),
            "pending_target",
            1,
            id="leaves-after-calm-window",
        ),
        pytest.param(Case(((-90, 40.0),)), "no_data", None, id="no-sample-in-window"),
        pytest.param(Case(()), "no_data", None, id="empty"),
    ],
)
def test_pending_table(case, reason, replicas):
    """Each scenario yields exactly the expected reason and replica count."""
    p = run(case)
    assert (p.reason, p.replicas) == (reason, replicas), p.message
    assert p.kind == "demand"
    assert p.valid is (reason != "no_data")


def test_panic_memory_sequence():
    """Panic is entered, the calm clock restarts on every burst, and ends one window after."""
    samples = []
    mem: dict = {}
    log = []
    for dt, pending in [(0, 1.0), (15, 12.0), (30, 1.0), (45, 12.0), (60, 1.0), (90, 1.0)]:
        samples.append(feed(T0 + dt, pending=pending))
        w = rich_window(samples)
        p = POLICY.propose(view(current=2, window=w, memory=mem), T0 + dt)
        if p.memory is not None:
            mem = dict(p.memory)
        log.append((dt, p.reason, p.replicas, mem.get("panic_last")))
    assert [r for _, r, _, _ in log] == [
        "pending_target",
        "panic",
        "panic",
        "panic",
        "panic",
        "panic",
    ]
    assert log[3][3] == T0 + 45  # the second burst restarted the calm clock
    w = rich_window([*samples, feed(T0 + 105, pending=1.0)])
    p = POLICY.propose(view(current=6, window=w, memory=mem), T0 + 105)
    assert p.reason == "pending_target"
    assert p.memory == {}


def test_panic_window_longer_than_stable_window_is_rejected():
    """A panic window longer than the stable window is a configuration error naming both."""
    with pytest.raises(ValidationError, match="panic_window_s"):
        PendingRequestsParams(window_s=30, panic_window_s=60)


@settings(max_examples=200, deadline=None)
@given(
    current=st.integers(0, 20),
    ready=st.integers(0, 20),
    pending=st.lists(st.floats(0, 200, allow_nan=False), min_size=1, max_size=8),
    panic_age=st.floats(0, 59),
    panic_max=st.integers(0, 30),
)
def test_panic_never_proposes_below_current(current, ready, pending, panic_age, panic_max):
    """Whatever the samples, while panicking the proposal is never below the current count."""
    mem = {"panic_since": T0 - 100, "panic_last": T0 - panic_age, "panic_max": panic_max}
    w = rich_window(feed(T0 - 4 * i, pending=v) for i, v in enumerate(reversed(pending)))
    p = POLICY.propose(view(current=current, ready=min(ready, current), window=w, memory=mem), T0)
    assert p.reason == "panic"
    assert p.replicas >= max(current, panic_max)
