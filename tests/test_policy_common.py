"""Rules every built-in policy keeps: frozen inputs and outputs, purity, people's pauses."""

from __future__ import annotations

import dataclasses
import importlib
from calendar import timegm

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import base
from policies.registry import build_policy
from tests.policy_support import T0, feed, rich_window, view

MODULES = [
    "policies.base",
    "policies.pending_requests",
    "policies.hardware_utilisation",
    "policies.schedule",
    "policies.pause_to_free_quota",
]


@pytest.mark.parametrize("module", MODULES)
def test_all_is_exact(module):
    """Each policy module exports exactly its public names, and they exist."""
    mod = importlib.import_module(module)
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_")
        and getattr(v, "__module__", None) == module
        and (isinstance(v, type) or callable(v))
    }
    assert set(mod.__all__) >= public
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_view_and_proposal_are_frozen():
    """Policies cannot mutate what they are given, nor a proposal after the fact."""
    v = view()
    p = base.Proposal(policy="x", kind=base.ProposalKind.CONSTRAINT, reason="r", message="m")
    for obj, attr in (
        (v, "current"),
        (p, "state"),
        (base.QuotaView("o", "aws", "gpu", 1, 2), "used_accelerators"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, 0)


def test_quota_free_accelerators():
    """Free accelerators never go negative and are unknown without a limit."""
    assert base.QuotaView("o", "aws", "gpu", 10, 8).free_accelerators == 0
    assert base.QuotaView("o", "aws", "gpu", 3, 8).free_accelerators == 5
    assert base.QuotaView("o", "aws", "gpu", 3, None).free_accelerators is None


def test_pause_record_and_may_resume():
    """Governor's pause record is "policy:reason"; only such pauses may be resumed."""
    p = base.Proposal(
        policy="schedule", kind=base.ProposalKind.CONSTRAINT, reason="window", message=""
    )
    assert base.pause_record(p) == "schedule:window"
    assert base.may_resume(view()) is True
    assert base.may_resume(view(state="paused")) is False
    assert base.may_resume(view(state="paused", paused_by_governor="schedule:window")) is True


CONFIGS = [
    ("pending_requests", {}),
    ("hardware_utilisation", {}),
    ("pause_to_free_quota", {"idle_pause_after_s": 60, "resume_calm_s": 0}),
    (
        "schedule",
        {
            "timezone": "Europe/Berlin",
            "windows": [
                {"start": "08:00", "end": "20:00", "state": "running", "floor": 1},
                {"cron": "0 * * * *", "duration_s": 1800, "state": "running"},
            ],
            "default": {"state": "running"},
        },
    ),
]
WEEK = float(timegm((2026, 3, 23, 0, 0, 0)))


@settings(max_examples=150, deadline=None)
@given(
    config=st.sampled_from(CONFIGS),
    now=st.floats(WEEK, WEEK + 14 * 86_400),
    state=st.sampled_from(["paused", "running", "scaledToZero"]),
    pending=st.floats(0, 50),
    memory=st.fixed_dictionaries(
        {}, optional={"calm_since": st.just(T0 - 10_000), "idle_since": st.just(T0 - 10_000)}
    ),
)
def test_no_policy_resumes_a_human_pause(config, now, state, pending, memory):
    """For any built-in, time and signal: a paused endpoint without Governor's record stays so."""
    name, params = config
    pol = build_policy(name, params, where="test")
    w = rich_window([feed(now - 30, pending=pending, served=0), feed(now - 5, served=0)])
    v = view(state=state, current=0 if state != "running" else 2, window=w, memory=memory)
    p = pol.propose(v, now)
    if state == "paused":
        assert p.state != "running", p.message
    twice = pol.propose(v, now)
    assert twice == p  # pure: same input, same output
