"""Each step of the combiner on its own, table-driven; and the README names the same steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.core import Action, EndpointMemory, Reason
from controller.core.decide import STEPS
from controller.core.params import EndpointSettings
from controller.core.steps import (
    Draft,
    Limits,
    Stale,
    actuation,
    bound,
    demand,
    gate,
    hard_stop,
    limits,
    observe,
    people_first,
    propose,
    rate_limit,
    stabilise,
)
from controller.platform.models import UserRef
from policies.base import Proposal, ProposalKind
from tests.helpers import T0, endpoint, window

README = Path(__file__).resolve().parents[1] / "README.md"
D, C = ProposalKind.DEMAND, ProposalKind.CONSTRAINT


def prop(policy="p", kind=D, **kw) -> Proposal:
    return Proposal(policy=policy, kind=kind, reason="r", message=f"{policy} says", **kw)


def es(**kw) -> EndpointSettings:
    return EndpointSettings(**kw)


def test_readme_lists_the_steps_in_code_order():
    """The README's numbered "How a decision is made" list names `STEPS`, one to one, in order."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### How a decision is made") : text.index("## Metrics")]
    named = re.findall(r"^(\d)\. \*\*[^*]+\*\* \(`(\w+)`\)", section, flags=re.M)
    assert [int(n) for n, _ in named] == list(range(len(STEPS)))
    assert [name for _, name in named] == [f.__name__ for f in STEPS]


# -- observe (bookkeeping before the steps) -------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "before", "running_since", "state_since"),
    [
        pytest.param("running", None, T0, T0, id="first-look-running"),
        pytest.param("paused", None, None, T0, id="first-look-paused"),
        pytest.param(
            "running",
            EndpointMemory(first_seen=0, state="running", state_since=5, running_since=5),
            5,
            5,
            id="still-running-keeps-times",
        ),
        pytest.param(
            "scaledToZero",
            EndpointMemory(first_seen=0, state="running", state_since=5, running_since=5),
            None,
            T0,
            id="stopped-running",
        ),
    ],
)
def test_observe(state, before, running_since, state_since):
    """State changes and running-since are tracked; the first updatedAt is remembered."""
    ep = endpoint(state=state)
    mem = observe(before, ep, T0)
    assert (mem.running_since, mem.state_since, mem.state) == (running_since, state_since, state)
    assert mem.last_known_update == ep.status.updated_at.timestamp()


# -- 0. people first ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("known_delta", "who", "identity", "backoff_in", "held", "backoff_set"),
    [
        pytest.param(0.0, None, None, None, False, False, id="unchanged"),
        pytest.param(-10.0, "alice", "gov", None, True, True, id="person-changed-it"),
        pytest.param(-10.0, "gov", "gov", None, False, False, id="own-write"),
        pytest.param(-10.0, "gov", None, None, True, True, id="identity-unknown"),
        pytest.param(0.0, None, None, 60.0, True, False, id="still-backing-off"),
        pytest.param(0.0, None, None, -1.0, False, False, id="backoff-over"),
    ],
)
def test_people_first(known_delta, who, identity, backoff_in, held, backoff_set):
    """A newer updatedAt by anyone but Governor's identity is a person: hands off for a while."""
    ep = endpoint()
    if who:
        ep.status.updated_by = UserRef(id="1", name=who)
    upd = ep.status.updated_at.timestamp()
    mem = EndpointMemory(
        first_seen=0,
        last_known_update=upd + known_delta,
        backoff_until=None if backoff_in is None else T0 + backoff_in,
        paused_by_governor="x:y",
    )
    dec, new = people_first(ep, mem, now=T0, settings=es(human_backoff_s=600), identity=identity)
    assert (dec is not None) == held
    if dec is not None:
        assert (dec.action, dec.reason) == (Action.HOLD, Reason.HUMAN_OVERRIDE)
    assert new.last_known_update == upd
    if backoff_set:
        assert new.backoff_until == T0 + 600
        assert new.paused_by_governor is None


@pytest.mark.parametrize(
    ("who", "identity", "own"),
    [
        pytest.param("gov", "gov", True, id="own-pause-response-lost"),
        pytest.param("alice", "gov", False, id="a-person-paused-it"),
    ],
)
def test_people_first_knows_its_own_pause_without_its_response(who, identity, own):
    """A pause whose response was lost (or the leader's, seen by a standby that took over): the
    newer updatedAt is by Governor's identity, so the pause is Governor's and it may resume it."""
    ep = endpoint(state="paused", target=0)
    ep.status.updated_by = UserRef(id="1", name=who)
    upd = ep.status.updated_at.timestamp()
    mem = EndpointMemory(first_seen=0, last_known_update=upd - 30)
    _, new = people_first(ep, mem, now=T0, settings=es(), identity=identity)
    assert (new.paused_by_governor is not None) == own


# -- 1. propose -----------------------------------------------------------------------------------


@dataclass
class Echo:
    """A policy that proposes a fixed count and counts its calls in its own memory."""

    name: str
    replicas: int

    def propose(self, view, now):
        calls = int(view.memory.get("calls", 0)) + 1
        return Proposal(
            policy=self.name,
            kind=D,
            reason="echo",
            message=f"current {view.current} floor {view.floor}",
            replicas=self.replicas,
            memory={"calls": calls},
        )


def test_propose_each_policy_sees_only_its_own_memory():
    """Proposals come back in configuration order; each policy's memory is its own."""
    pols = [Echo("a", 1), Echo("b", 2)]
    mem = EndpointMemory(first_seen=0, policy_memory={"a": {"calls": 4}})
    props, new = propose(
        endpoint(target=3),
        pols,
        mem,
        now=T0,
        settings=es(floor=2),
        window=None,
        quota=None,
        fleet=(),
        spend=None,
    )
    assert [p.policy for p in props] == ["a", "b"]
    assert props[0].message == "current 3 floor 2"
    assert new.policy_memory == {"a": {"calls": 5}, "b": {"calls": 1}}


# -- 2. hard stop ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "proposals", "paused_by", "action", "reason"),
    [
        pytest.param("running", (), None, None, None, id="running-goes-on"),
        pytest.param(
            "running", (prop("q", C, state="paused"),), None, Action.PAUSE, Reason.POLICY_PAUSE,
            id="pause-wins",
        ),
        pytest.param(
            "scaledToZero", (prop("q", C, state="paused"),), None, Action.PAUSE,
            Reason.POLICY_PAUSE, id="pause-scaled-to-zero",
        ),
        pytest.param(
            "paused", (prop("q", C, state="paused"),), "q:r", Action.HOLD, Reason.KEPT_PAUSED,
            id="kept-paused",
        ),
        pytest.param(
            "paused", (prop("s", C, state="running"),), "q:r", Action.RESUME,
            Reason.POLICY_RESUME, id="resume-own-pause",
        ),
        pytest.param(
            "paused", (prop("s", C, state="running"),), None, Action.HOLD, Reason.HUMAN_PAUSE,
            id="never-resume-a-person",
        ),
        pytest.param(
            "paused", (), "q:r", Action.HOLD, Reason.KEPT_PAUSED, id="nothing-asks-to-resume"
        ),
        pytest.param(
            "running", (prop("q", C, state="paused", valid=False),), None, None, None,
            id="invalid-pause-ignored",
        ),
        pytest.param("initializing", (), None, Action.HOLD, Reason.NOT_ACTIONABLE, id="not-ready"),
        pytest.param("updating", (), None, Action.HOLD, Reason.NOT_ACTIONABLE, id="updating"),
    ],
)  # fmt: skip
def test_hard_stop(state, proposals, paused_by, action, reason):
    """Pause beats all; only Governor's own pauses are resumed; only `running` goes further."""
    mem = EndpointMemory(first_seen=0, paused_by_governor=paused_by)
    dec = hard_stop(endpoint(state=state), proposals, mem, now=T0)
    if action is None:
        assert dec is None
    else:
        assert (dec.action, dec.reason) == (action, reason)


def test_hard_stop_names_the_first_pausing_policy_and_records_its_reason():
    """The first pausing constraint in configuration order is named, and its reason recorded."""
    props = (prop("first", C, state="paused"), prop("second", C, state="paused"))
    dec = hard_stop(endpoint(), props, EndpointMemory(first_seen=0), now=T0)
    assert (dec.policy, dec.pause_reason) == ("first", "first:r")


# -- 6 (first half). limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("floor", "ceiling", "proposals", "want", "crossed"),
    [
        pytest.param(1, 10, (), (1, 10, None, None), False, id="operator-only"),
        pytest.param(1, 10, (prop("s", C, floor=3),), (3, 10, "s", None), False, id="floor"),
        pytest.param(1, 10, (prop("b", C, ceiling=4),), (1, 4, None, "b"), False, id="ceiling"),
        pytest.param(
            1, 10, (prop("s", C, floor=6), prop("b", C, ceiling=4)), (4, 4, "b", "b"), True,
            id="crossed-ceiling-wins",
        ),
        pytest.param(
            1, 10, (prop("s", C, floor=6, valid=False),), (1, 10, None, None), False,
            id="invalid-ignored",
        ),
        pytest.param(
            1, 10, (prop("d", D, floor=6),), (1, 10, None, None), False, id="demand-no-bounds",
        ),
        pytest.param(
            3, 10, (prop("s", C, floor=2),), (3, 10, None, None), False, id="operator-higher",
        ),
    ],
)  # fmt: skip
def test_limits(floor, ceiling, proposals, want, crossed):
    """floor = max of floors, ceiling = min of ceilings; when they cross, the ceiling wins."""
    lim = limits(es(floor=floor, ceiling=ceiling), proposals)
    got = (
        lim.floor,
        lim.ceiling,
        lim.floor_by.policy if lim.floor_by else None,
        lim.ceiling_by.policy if lim.ceiling_by else None,
    )
    assert got == want
    assert (lim.crossed is not None) == crossed


@pytest.mark.parametrize(
    ("lim", "current", "holds"),
    [
        pytest.param(Limits(1, 4), 2, True, id="inside"),
        pytest.param(Limits(3, 4), 2, False, id="below-floor"),
        pytest.param(Limits(1, 1), 2, False, id="above-ceiling"),
        pytest.param(Limits(1, 4, scale_to_zero=prop("s", C)), 2, False, id="timeout-to-set"),
    ],
)
def test_limits_hold(lim, current, holds):
    """Bounds need no change only inside them and with no scale-to-zero timeout to set."""
    assert lim.hold(current) is holds


# -- 3. gate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "feed_error", "proposals", "want"),
    [
        pytest.param([(-10, 3.0)], None, (prop(replicas=2),), None, id="fresh"),
        pytest.param([(-10, 3.0)], "boom", (prop(replicas=2),), Reason.STALE_METRICS, id="error"),
        pytest.param([], None, (prop(replicas=2),), Reason.NO_DATA, id="no-sample"),
        pytest.param([(-61, 3.0)], None, (prop(replicas=2),), Reason.STALE_METRICS, id="old"),
        pytest.param([(-10, 3.0)], None, (), Reason.NO_DATA, id="no-demand-policy"),
        pytest.param(
            [(-10, 3.0)], None, (prop(valid=False),), Reason.NO_DATA, id="demand-lacked-data"
        ),
        pytest.param(
            [(-10, 3.0)], None, (prop(valid=False), prop("b", replicas=1)), None,
            id="one-valid-is-enough",
        ),
    ],
)  # fmt: skip
def test_gate(samples, feed_error, proposals, want):
    """Demand needs a sample newer than max_age_s, no feed error and one valid demand proposal."""
    w = window([(T0 + t, v) for t, v in samples])
    stale = gate(proposals, window=w, feed_error=feed_error, now=T0, max_age_s=60)
    assert (stale.reason if stale else None) == want


def test_gate_explains_which_policy_lacked_data():
    """With no usable demand, the reason names each policy that lacked data."""
    w = window([(T0 - 5, 1.0)])
    stale = gate((prop("util", valid=False),), window=w, feed_error=None, now=T0, max_age_s=60)
    assert stale == Stale(Reason.NO_DATA, "util: util says")


# -- 4. demand ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proposals", "current", "desired", "winner", "reason"),
    [
        pytest.param((prop("a", replicas=3),), 2, 3, "a", None, id="one"),
        pytest.param(
            (prop("a", replicas=3), prop("b", replicas=5)), 2, 5, "b", None, id="max-wins"
        ),
        pytest.param(
            (prop("a", replicas=4), prop("b", replicas=4)), 2, 4, "a", None, id="tie-first"
        ),
        pytest.param(
            (prop("a", replicas=1), prop("b", valid=False)), 3, 3, "a", Reason.PARTIAL_DATA,
            id="no-scale-down-on-partial-data",
        ),
        pytest.param(
            (prop("a", replicas=5), prop("b", valid=False)), 3, 5, "a", None,
            id="scale-up-on-partial-data",
        ),
        pytest.param(
            (prop("a", replicas=9), prop("c", C, replicas=20)), 2, 9, "a", None,
            id="constraints-are-not-demand",
        ),
    ],
)  # fmt: skip
def test_demand(proposals, current, desired, winner, reason):
    """Max over valid demand; with any demand invalid, never below the current count."""
    d = demand(proposals, current=current, stale=None, start=Draft(current, current))
    assert (d.desired, d.policy, d.reason) == (desired, winner, reason)


def test_demand_when_stale_keeps_the_count_and_says_so():
    """On stale data the draft keeps the current count: only the bounds may move it."""
    start = Draft(3, 3, notes=("floor 6 above ceiling 4: the ceiling wins",))
    d = demand((), current=3, stale=Stale(Reason.NO_DATA, "no sample"), start=start)
    assert (d.desired, d.winner) == (3, None)
    assert d.notes == (start.notes[0], "no sample; enforcing constraints only")


# -- 5. stabilise ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "current", "recs", "up", "down", "observed", "desired", "clamp"),
    [
        pytest.param(5, 2, (), 0, 300, 3600, 5, None, id="up-at-once"),
        pytest.param(5, 2, ((-30, 3),), 60, 300, 3600, 3, "scale_up_stabilized", id="up-window"),
        pytest.param(5, 2, ((-90, 3),), 60, 300, 3600, 5, None, id="up-window-expired"),
        pytest.param(
            1, 4, ((-100, 3),), 0, 300, 3600, 3, "scale_down_stabilized", id="down-window-max"
        ),
        pytest.param(1, 4, ((-400, 3),), 0, 300, 3600, 1, None, id="down-window-expired"),
        pytest.param(
            1, 4, (), 0, 300, 100, 4, "scale_down_stabilized", id="not-observed-long-enough"
        ),
        pytest.param(1, 4, ((-100, 3),), 0, 0, 100, 1, None, id="no-down-window"),
        pytest.param(2, 2, ((-100, 9),), 60, 300, 3600, 2, None, id="steady"),
    ],
)  # fmt: skip
def test_stabilise(raw, current, recs, up, down, observed, desired, clamp):
    """Up follows the up window's lowest, down the down window's highest recommendation."""
    mem = EndpointMemory(
        first_seen=T0 - observed,
        running_since=T0 - observed,
        recommendations=tuple((T0 + t, n) for t, n in recs),
    )
    d = Draft(current, raw, winner=prop(replicas=raw))
    got, new = stabilise(
        d, mem, now=T0, settings=es(scale_up_stabilization_s=up, scale_down_stabilization_s=down)
    )
    assert got.desired == desired
    assert got.clamps == ((clamp,) if clamp else ())
    assert new.recommendations[-1] == (T0, raw)


def test_stabilise_skips_constraint_only_drafts():
    """Without real demand nothing is recorded (a held count is not a recommendation)."""
    mem = EndpointMemory(first_seen=0)
    got, new = stabilise(Draft(3, 3), mem, now=T0, settings=es())
    assert (got, new) == (Draft(3, 3), mem)


# -- 6. bound -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "lim", "want", "reason", "policy"),
    [
        pytest.param(3, Limits(1, 10), 3, None, None, id="inside"),
        pytest.param(0, Limits(1, 10), 1, Reason.BELOW_FLOOR, None, id="operator-floor"),
        pytest.param(12, Limits(1, 10), 10, Reason.ABOVE_CEILING, None, id="operator-ceiling"),
        pytest.param(
            1, Limits(4, 10, floor_by=prop("sched", C)), 4, Reason.CONSTRAINT_FLOOR, "sched",
            id="constraint-floor",
        ),
        pytest.param(
            9, Limits(1, 2, ceiling_by=prop("budget", C)), 2, Reason.CONSTRAINT_CEILING,
            "budget", id="constraint-ceiling",
        ),
    ],
)  # fmt: skip
def test_bound(desired, lim, want, reason, policy):
    """The count is clamped into the limits; the bound that moved it is named."""
    d = bound(Draft(2, desired), lim)
    assert (d.desired, d.stabilized, d.bound_reason, d.bound_policy) == (
        want,
        desired,
        reason,
        policy,
    )


# -- 7. rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "desired", "lim", "knobs", "last_ago", "want"),
    [
        pytest.param(2, 8, Limits(1, 10), {"max_step_up": 2}, None, 4, id="step-up"),
        pytest.param(8, 1, Limits(1, 10), {"max_step_down": 3}, None, 5, id="step-down"),
        pytest.param(
            2, 5, Limits(1, 10), {"min_action_interval_s": 60}, 30, "hold", id="too-soon"
        ),
        pytest.param(2, 5, Limits(1, 10), {"min_action_interval_s": 60}, 90, 5, id="long-enough"),
        pytest.param(2, 2, Limits(1, 10), {"min_action_interval_s": 60}, 30, 2, id="no-change"),
        pytest.param(
            12, 4, Limits(1, 4), {"max_step_down": 1, "min_action_interval_s": 60}, 5, 4,
            id="forced-into-bounds",
        ),
    ],
)  # fmt: skip
def test_rate_limit(current, desired, lim, knobs, last_ago, want):
    """Step sizes and the interval limit an action, never a bound forcing the count back in."""
    mem = EndpointMemory(first_seen=0, last_action_at=None if last_ago is None else T0 - last_ago)
    got = rate_limit(
        Draft(current, desired), mem, lim, key="org/chat", now=T0, settings=es(**knobs),
        proposals=(),
    )  # fmt: skip
    if want == "hold":
        assert (got.action, got.reason, got.desired) == (Action.HOLD, Reason.RATE_LIMITED, desired)
        assert "min_interval" in got.clamps
    else:
        assert got.desired == want


# -- 8. actuation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "have", "mode", "stz", "action", "reason", "bounds"),
    [
        pytest.param(Draft(2, 4), (2, 2), "pin", None, Action.SCALE_UP, Reason.DEMAND_INCREASE,
                     (4, 4), id="up-pin"),
        pytest.param(Draft(2, 4), (2, 2), "floor", None, Action.SCALE_UP, Reason.DEMAND_INCREASE,
                     (4, 10), id="up-floor-mode"),
        pytest.param(Draft(4, 1), (4, 4), "pin", None, Action.SCALE_DOWN, Reason.DEMAND_DECREASE,
                     (1, 1), id="down"),
        pytest.param(Draft(1, 0), (1, 1), "pin", None, Action.SCALE_TO_ZERO,
                     Reason.DEMAND_DECREASE, (0, 1), id="to-zero"),
        pytest.param(Draft(2, 2), (1, 5), "pin", None, Action.SET_BOUNDS, Reason.BOUNDS_DRIFT,
                     (2, 2), id="bounds-drift"),
        pytest.param(Draft(2, 2), (2, 2), "pin", 30, Action.SET_BOUNDS,
                     Reason.SCALE_TO_ZERO_TIMEOUT, (2, 2), id="idle-timeout"),
        pytest.param(Draft(2, 2), (2, 2), "pin", None, Action.HOLD, Reason.WITHIN_RANGE, None,
                     id="hold"),
        pytest.param(Draft(2, 4, stabilized=1, bound_reason=Reason.CONSTRAINT_FLOOR,
                           bound_policy="sched"),
                     (2, 2), "pin", None, Action.SCALE_UP, Reason.CONSTRAINT_FLOOR, (4, 4),
                     id="floor-named"),
        pytest.param(Draft(4, 3, stabilized=6, bound_reason=Reason.CONSTRAINT_CEILING,
                           bound_policy="budget"),
                     (4, 4), "pin", None, Action.SCALE_DOWN, Reason.CONSTRAINT_CEILING, (3, 3),
                     id="ceiling-named"),
        pytest.param(Draft(2, 3, reason=Reason.SCALE_UP_STABILIZED,
                           clamps=("scale_up_stabilized",)),
                     (2, 2), "pin", None, Action.SCALE_UP, Reason.SCALE_UP_STABILIZED, (3, 3),
                     id="up-stabilized"),
    ],
)  # fmt: skip
def test_actuation(draft, have, mode, stz, action, reason, bounds):
    """The action realises the count; a bound that moved it is the named reason."""
    ep = endpoint(target=draft.current, min_replica=have[0], max_replica=have[1])
    lim = Limits(1, 10, scale_to_zero=prop("s", C, scale_to_zero_timeout_min=stz) if stz else None)
    dec = actuation(draft, ep, lim, now=T0, mode=mode, proposals=())
    assert (dec.action, dec.reason, dec.bounds) == (action, reason, bounds)
    if stz:
        assert dec.scale_to_zero_timeout == stz
        assert dec.policy == "s"
