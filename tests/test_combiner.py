"""The combiner: constraints clamp demand, a pause wins, only Governor's own pauses are resumed,
people are not fought, rate limits hold — table-driven plus hypothesis invariants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from controller.core import Action, EndpointMemory, Reason, decide
from controller.core.params import EndpointSettings
from controller.platform.models import UserRef
from policies.base import EndpointView, Proposal, ProposalKind
from policies.pending_requests import PendingRequestsParams, PendingRequestsPolicy
from tests.helpers import T0, endpoint, window

DEMAND = PendingRequestsPolicy(
    PendingRequestsParams(target_per_replica=2.0, window_s=60, panic_threshold=100)
)


@dataclass
class Fixed:
    """A hand-written constraint policy that always proposes the same thing."""

    name: str = "fixed"
    floor: int | None = None
    ceiling: int | None = None
    state: str | None = None
    stz: int | None = None
    Params: ClassVar[type[BaseModel]] = BaseModel

    def propose(self, view: EndpointView, now: float) -> Proposal:
        return Proposal(
            policy=self.name,
            kind=ProposalKind.CONSTRAINT,
            reason="fixed",
            message=f"{self.name} says so",
            floor=self.floor,
            ceiling=self.ceiling,
            state=self.state,
            scale_to_zero_timeout_min=self.stz,
        )


def mem(**kw) -> EndpointMemory:
    base = {
        "first_seen": T0 - 3600,
        "running_since": T0 - 3600,
        "state": "running",
        "last_known_update": datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
    }
    base.update(kw)
    return EndpointMemory(**base)


def run(policies, *, state="running", target=2, pending=4.0, memory=None, es=None, **epkw):
    ep = endpoint(state=state, target=target, **epkw)
    es = es or EndpointSettings(floor=1, ceiling=10)
    w = window([(T0 - 10, pending)]) if pending is not None else window([])
    return decide(
        ep,
        policies,
        memory if memory is not None else mem(state=state),
        now=T0,
        settings=es,
        window=w,
    )


@pytest.mark.parametrize(
    ("policies", "kw", "action", "reason", "policy", "desired"),
    [
        pytest.param(
            [DEMAND, Fixed(floor=5)],
            {},
            Action.SCALE_UP,
            Reason.CONSTRAINT_FLOOR,
            "fixed",
            5,
            id="schedule-floor-raises",
        ),
        pytest.param(
            [DEMAND, Fixed(ceiling=3)],
            {"pending": 20.0},
            Action.SCALE_UP,
            Reason.DEMAND_INCREASE,
            "pending_requests",
            3,
            id="ceiling-clamps-demand",
        ),
        pytest.param(
            [DEMAND, Fixed(ceiling=1)],
            {"target": 3, "pending": 20.0},
            Action.SCALE_DOWN,
            Reason.CONSTRAINT_CEILING,
            "fixed",
            1,
            id="budget-ceiling-forces-down",
        ),
        pytest.param(
            [DEMAND, Fixed(floor=6), Fixed(name="cap", ceiling=4)],
            {},
            Action.SCALE_UP,
            Reason.CONSTRAINT_FLOOR,
            "cap",
            4,
            id="ceiling-beats-floor",
        ),
        pytest.param(
            [DEMAND, Fixed(state="paused"), Fixed(name="f2", floor=9)],
            {},
            Action.PAUSE,
            Reason.POLICY_PAUSE,
            "fixed",
            0,
            id="pause-wins",
        ),
        pytest.param(
            [DEMAND, Fixed(state="paused")],
            {"state": "scaledToZero", "target": 0},
            Action.PAUSE,
            Reason.POLICY_PAUSE,
            "fixed",
            0,
            id="pause-scaled-to-zero",
        ),
        pytest.param(
            [DEMAND, Fixed(state="paused")],
            {"state": "paused", "target": 0},
            Action.HOLD,
            Reason.KEPT_PAUSED,
            "fixed",
            None,
            id="stays-paused",
        ),
        pytest.param(
            [DEMAND, Fixed(state="running")],
            {
                "state": "paused",
                "target": 0,
                "memory": mem(state="paused", paused_by_governor="quota:idle"),
            },
            Action.RESUME,
            Reason.POLICY_RESUME,
            "fixed",
            None,
            id="resume-own-pause",
        ),
        pytest.param(
            [DEMAND, Fixed(state="running")],
            {"state": "paused", "target": 0},
            Action.HOLD,
            Reason.HUMAN_PAUSE,
            None,
            None,
            id="never-resume-human-pause",
        ),
        pytest.param(
            [DEMAND, Fixed(stz=5)],
            {},
            Action.SET_BOUNDS,
            Reason.SCALE_TO_ZERO_TIMEOUT,
            "fixed",
            2,
            id="stz-timeout",
        ),
        pytest.param(
            [Fixed(floor=3)],
            {"pending": None},
            Action.SCALE_UP,
            Reason.CONSTRAINT_FLOOR,
            "fixed",
            3,
            id="floor-enforced-without-metrics",
        ),
        pytest.param(
            [DEMAND, Fixed(floor=1)],
            {"pending": None},
            Action.HOLD,
            Reason.NO_DATA,
            None,
            None,
            id="no-metrics-no-demand-action",
        ),
    ],
)
def test_combiner_table(policies, kw, action, reason, policy, desired):
    """Constraint/demand combinations yield the documented winner and action."""
    d, _ = run(policies, **kw)
    assert (d.action, d.reason, d.policy, d.desired) == (action, reason, policy, desired), d.message


def test_human_change_backs_off():
    """An updatedAt newer than Governor's last look, by someone else, means hands off."""
    m = mem(last_known_update=datetime(2025, 12, 31, tzinfo=UTC).timestamp())
    d, m2 = run([DEMAND], pending=40.0, memory=m)
    assert d.reason is Reason.HUMAN_OVERRIDE
    assert not d.acts
    assert m2.backoff_until == T0 + 1800
    # Still backing off a bit later, even with the same updatedAt.
    ep = endpoint(target=2)
    d, _ = decide(
        ep,
        [DEMAND],
        m2,
        now=T0 + 600,
        settings=EndpointSettings(),
        window=window([(T0 + 590, 40.0)]),
    )
    assert d.reason is Reason.HUMAN_OVERRIDE


def test_own_identity_is_not_a_person():
    """A newer updatedAt written by Governor's own identity is not a human change."""
    m = mem(last_known_update=datetime(2025, 12, 31, tzinfo=UTC).timestamp())
    ep = endpoint(target=2)
    ep.status.updated_by = UserRef(id="u", name="governor-bot")
    d, _ = decide(
        ep,
        [DEMAND],
        m,
        now=T0,
        settings=EndpointSettings(),
        window=window([(T0 - 10, 40.0)]),
        identity="governor-bot",
    )
    assert d.action is Action.SCALE_UP


def test_rate_limits():
    """max_step_up caps a jump; min_action_interval_s holds a second action."""
    es = EndpointSettings(floor=1, ceiling=10, max_step_up=2, min_action_interval_s=120)
    d, _ = run([DEMAND], pending=40.0, es=es)
    assert (d.action, d.desired) == (Action.SCALE_UP, 4)
    d, _ = run([DEMAND], pending=40.0, es=es, memory=mem(last_action_at=T0 - 30))
    assert d.reason is Reason.RATE_LIMITED
    assert not d.acts


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from(["running", "paused", "scaledToZero", "initializing"]),
    ours=st.booleans(),
    floor=st.none() | st.integers(0, 8),
    ceiling=st.none() | st.integers(1, 8),
    pause=st.booleans(),
    resume=st.booleans(),
    pending=st.none() | st.floats(0, 100),
    target=st.integers(0, 10),
)
def test_invariants(state, ours, floor, ceiling, pause, resume, pending, target):
    """A pause always wins; a human pause is never resumed; scaling stays within bounds."""
    pols = [DEMAND, Fixed(floor=floor, ceiling=ceiling)]
    if pause:
        pols.append(Fixed(name="p", state="paused"))
    if resume:
        pols.append(Fixed(name="r", state="running"))
    m = mem(state=state, paused_by_governor="x:y" if ours else None)
    d, _ = run(
        pols, state=state, target=target if state == "running" else 0, pending=pending, memory=m
    )
    if pause:
        assert d.action in (Action.PAUSE, Action.HOLD)
        assert d.action is not Action.RESUME
        if state != "paused":
            assert d.action is Action.PAUSE
    if d.action is Action.RESUME:
        assert ours
    if d.action in (Action.SCALE_UP, Action.SCALE_DOWN, Action.SET_BOUNDS):
        lo = max(1, floor or 0)
        hi = min(10, ceiling) if ceiling is not None else 10
        assert min(lo, hi) <= d.desired <= hi
