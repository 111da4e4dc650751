"""burst_floor: a floor from the recent per-interval peaks of pending requests."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.burst_floor import BurstFloorParams, BurstFloorPolicy
from policies.registry import build_policy, get_policy_class
from tests.policy_support import T0, feed, rich_window, view

B = int(T0 // 60)  # the interval index of T0 (T0 is a whole minute)


def policy(**kw: Any) -> BurstFloorPolicy:
    base = {"lookback_s": 600, "bucket_s": 60, "half_life_s": None, "headroom": 1.0}
    return BurstFloorPolicy(BurstFloorParams(**{**base, **kw}))


@dataclass(frozen=True)
class Case:
    """Pending samples as (offset s from `now`, value), the memory and params, at `now` = T0+30."""

    pending: tuple[tuple[float, float], ...] = ()
    memory: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


NOW = T0 + 30


def run(c: Case):
    w = rich_window(feed(NOW + t, pending=v) for t, v in c.pending) if c.pending else None
    return policy(**c.params).propose(view(window=w, memory=c.memory), NOW)


@pytest.mark.parametrize(
    ("case", "reason", "floor"),
    [
        pytest.param(Case(), "no_history", None, id="nothing-yet"),
        pytest.param(Case(((-5, 20.0),)), "burst_floor", 3, id="20-pending-at-8-each"),
        pytest.param(Case(((-5, 16.0),)), "burst_floor", 2, id="exact-multiple-no-extra"),
        pytest.param(Case(((-5, 0.0),)), "burst_floor", 0, id="idle-floor-0"),
        pytest.param(
            Case(((-5, 20.0),), params={"headroom": 1.5}), "burst_floor", 5, id="headroom-4.5-up"
        ),
        pytest.param(
            Case(((-20, 40.0), (-5, 4.0))), "burst_floor", 5, id="peak-of-the-tick-not-latest"
        ),
        pytest.param(
            Case(((-5, 4.0),), memory={"peaks": [[B - 3, 6]], "seen_at": NOW - 20}),
            "burst_floor",
            6,
            id="remembered-burst-holds",
        ),
        pytest.param(
            Case(((-5, 4.0),), memory={"peaks": [[B - 10, 9]], "seen_at": NOW - 20}),
            "burst_floor",
            1,
            id="burst-past-lookback-forgotten",
        ),
        pytest.param(
            Case(
                ((-5, 8.0),),
                memory={"peaks": [[B - 4, 2], [B - 3, 3], [B - 2, 9]], "seen_at": NOW - 20},
                params={"quantile": 0.5},
            ),
            "burst_floor",
            2,
            id="median-of-1-2-3-9",
        ),
        pytest.param(
            Case(
                ((-5, 0.0),),
                memory={"peaks": [[B - 16, 8]], "seen_at": NOW - 20},
                params={"half_life_s": 900, "lookback_s": 3600},
            ),
            "burst_floor",
            4,
            id="one-half-life-old-counts-half",
        ),
        pytest.param(
            Case(((-5, 40.0),), memory={"peaks": [[B, 2]], "seen_at": NOW - 5}),
            "burst_floor",
            2,
            id="sample-already-counted",
        ),
        pytest.param(
            Case(((-5, 40.0),), memory={"peaks": [[B - 3, 6]], "seen_at": NOW - 5}),
            "burst_floor",
            6,
            id="no-new-sample-keeps-history",
        ),
    ],
)
def test_burst_floor_table(case, reason, floor):
    """Each scenario yields exactly the expected reason and floor."""
    p = run(case)
    assert (p.reason, p.floor) == (reason, floor), p.message
    assert p.kind == ("no_opinion" if reason == "no_history" else "constraint")
    assert p.replicas is None
    assert p.ceiling is None
    assert p.state is None
    assert p.valid


def test_history_sequence_and_memory_is_json():
    """One peak per interval (the largest), oldest first, pruned past the lookback, JSON-safe."""
    pol = policy(lookback_s=180)
    mem: dict = {}
    samples = []
    floors = []
    for i, v in enumerate([8.0, 24.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]):
        at = T0 + 15 * i  # four ticks per minute
        samples.append(feed(at, pending=v))
        p = pol.propose(view(window=rich_window(samples), memory=mem), at + 1)
        mem = json.loads(json.dumps(p.memory))
        floors.append(p.floor)
    assert floors == [1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0]
    assert mem["peaks"] == [[B + 1, 0], [B + 2, 0], [B + 3, 0]]
    assert mem["seen_at"] == T0 + 180


def test_registered_and_validated():
    """It is a built-in, and bad parameters fail at build time."""
    assert get_policy_class("burst_floor") is BurstFloorPolicy
    assert isinstance(build_policy("burst_floor", {}, where="t"), BurstFloorPolicy)
    for bad in (
        {"quantile": 0},
        {"headroom": 0},
        {"bucket_s": 600, "lookback_s": 300},
        {"lookback_s": 86_400, "bucket_s": 1},
        {"surprise": 1},
    ):
        with pytest.raises(ValidationError):
            BurstFloorParams(**bad)


def test_defaults_are_documented_values():
    """The defaults the docs and the simulation grid name."""
    p = BurstFloorParams()
    assert (p.target_per_replica, p.lookback_s, p.bucket_s, p.quantile) == (8, 3600, 60, 1.0)
    assert (p.half_life_s, p.headroom) == (900, 1.5)


PENDING = st.lists(st.floats(0, 500), min_size=1, max_size=12)
PARAMS = st.fixed_dictionaries(
    {
        "quantile": st.floats(0.05, 1.0),
        "headroom": st.floats(0.5, 3.0),
        "half_life_s": st.one_of(st.none(), st.floats(60, 3600)),
        "target_per_replica": st.floats(1, 16),
    }
)


def replay(pol: BurstFloorPolicy, values: list[float]) -> int | None:
    mem: dict = {}
    samples = []
    floor = None
    for i, v in enumerate(values):
        at = T0 + 45 * i
        samples.append(feed(at, pending=v))
        p = pol.propose(view(window=rich_window(samples), memory=mem), at + 1)
        assert p.memory is not None
        mem = dict(p.memory)
        floor = p.floor
    return floor


@settings(max_examples=150, deadline=None)
@given(values=PENDING, params=PARAMS, factor=st.floats(1.0, 4.0))
def test_floor_bounded_and_monotone_in_demand(values, params, factor):
    """0 <= floor <= ceil(headroom x max pending / target), and more pending never lowers it."""
    pol = policy(lookback_s=3600, **params)
    floor = replay(pol, values)
    assert floor is not None
    assert floor >= 0
    top = math.ceil(round(max(values) / params["target_per_replica"], 6))
    assert floor <= math.ceil(round(params["headroom"] * top, 6))
    more = replay(pol, [v * factor for v in values])
    assert more is not None
    assert more >= floor
