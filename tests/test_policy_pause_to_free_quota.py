"""pause_to_free_quota: idle reclaim, quota arbitration by priority, resuming own pauses only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.base import FleetMember, QuotaView
from policies.pause_to_free_quota import PauseToFreeQuotaParams, PauseToFreeQuotaPolicy
from tests.policy_support import T0, feed, rich_window, view

POLICY = PauseToFreeQuotaPolicy(
    PauseToFreeQuotaParams(
        idle_pause_after_s=3600, arbitration_min_idle_s=300, idle_probe_s=60, resume_calm_s=600
    )
)
QUIET = rich_window([feed(T0 - 50, served=100, pending=0), feed(T0 - 20, served=100, pending=0)])
BUSY = rich_window([feed(T0 - 50, served=100, pending=0), feed(T0 - 20, served=130, pending=1)])
QUEUED = rich_window([feed(T0 - 50, served=100, pending=0), feed(T0 - 20, served=100, pending=3)])
QUOTA = QuotaView("org", "aws", "gpu", used_accelerators=8, limit_accelerators=8)
ROOMY = QuotaView("org", "aws", "gpu", used_accelerators=4, limit_accelerators=8)
ARB = "pause_to_free_quota:quota_arbitration"
IDLE = "pause_to_free_quota:idle_reclaim"


def member(name, priority, *, short=0, held=1, idle=1000.0, state="running", reclaimable=True):
    return FleetMember(
        key=f"org/{name}",
        priority=priority,
        state=state,
        held_accelerators=held,
        short_accelerators=short,
        idle_since=None if idle is None else T0 - idle,
        reclaimable=reclaimable,
    )


@pytest.mark.parametrize(
    ("kw", "reason", "state", "memory"),
    [
        pytest.param(
            {"state": "scaledToZero", "current": 0, "state_since": T0 - 3600},
            "idle_reclaim",
            "paused",
            {"idle_since": T0 - 3600},
            id="scaled-to-zero-long",
        ),
        pytest.param(
            {"state": "scaledToZero", "current": 0, "state_since": T0 - 100},
            "idle",
            None,
            {"idle_since": T0 - 100},
            id="scaled-to-zero-short",
        ),
        pytest.param(
            {"window": QUIET, "memory": {"idle_since": T0 - 4000}, "state_since": T0 - 9000},
            "idle_reclaim",
            "paused",
            {"idle_since": T0 - 4000},
            id="running-idle-long",
        ),
        pytest.param(
            {"window": QUIET},
            "idle",
            None,
            {"idle_since": T0},
            id="first-idle-tick-starts-clock",
        ),
        pytest.param(
            {"window": QUIET, "memory": {"idle_since": T0 - 4000}, "state_since": T0 - 100},
            "idle",
            None,
            {"idle_since": T0 - 100},
            id="fresh-clock-after-wake",
        ),
        pytest.param(
            {"window": BUSY, "memory": {"idle_since": T0 - 4000}},
            "not_idle",
            None,
            {"gaps": [4000.0]},
            id="traffic-resets",
        ),
        pytest.param(
            {"window": QUEUED, "memory": {"idle_since": T0 - 4000}},
            "not_idle",
            None,
            {"gaps": [4000.0]},
            id="pending-is-not-idle",
        ),
        pytest.param(
            {"window": BUSY, "memory": {"gaps": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]}},
            "not_idle",
            None,
            {"gaps": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]},
            id="serving-without-idle-clock-keeps-gaps",
        ),
        pytest.param(
            {
                "window": BUSY,
                "memory": {"idle_since": T0 - 9, "gaps": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]},
            },
            "not_idle",
            None,
            {"gaps": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]},
            id="gaps-keep-the-last-eight",
        ),
        pytest.param(
            {"state": "scaledToZero", "current": 0, "state_since": T0 - 3600, "window": BUSY},
            "not_idle",
            None,
            {},
            id="scaled-to-zero-waking-is-not-idle",
        ),
        pytest.param(
            {
                "state": "scaledToZero",
                "current": 0,
                "state_since": T0 - 3600,
                "memory": {"gaps": [3000.0]},
            },
            "idle",
            None,
            {"idle_since": T0 - 3600, "gaps": [3000.0]},
            id="traffic-came-back-after-longer-gaps",
        ),
        pytest.param(
            {
                "state": "scaledToZero",
                "current": 0,
                "state_since": T0 - 4500,
                "memory": {"gaps": [3000.0]},
            },
            "idle_reclaim",
            "paused",
            {"idle_since": T0 - 4500, "gaps": [3000.0]},
            id="idle-past-the-recurrence-guard",
        ),
        pytest.param(
            {"window": None, "memory": {"idle_since": T0 - 4000, "gaps": [5.0, "x"]}},
            "no_data",
            None,
            {"gaps": [5.0]},
            id="no-data-keeps-gaps-drops-junk",
        ),
        pytest.param(
            {"window": None, "memory": {"idle_since": T0 - 4000}},
            "no_data",
            None,
            {},
            id="no-data-is-not-idle",
        ),
        pytest.param(
            {"window": rich_window([feed(T0 - 20, served=100)])},
            "no_data",
            None,
            {},
            id="one-sample-no-rate",
        ),
        pytest.param({"state": "initializing"}, "not_idle", None, {}, id="initializing"),
        pytest.param(
            {"state": "initializing", "memory": {"idle_since": T0 - 700}},
            "not_idle",
            None,
            {"gaps": [700.0]},
            id="wake-from-zero-ends-an-idle-spell",
        ),
        pytest.param(
            {"state": "paused", "current": 0}, "human_pause", None, {}, id="human-pause-kept"
        ),
        pytest.param(
            {"state": "paused", "current": 0, "paused_by_governor": IDLE},
            "kept_paused",
            None,
            {},
            id="idle-pause-waits-for-schedule",
        ),
        pytest.param(
            {"state": "paused", "current": 0, "paused_by_governor": "schedule:window"},
            "kept_paused",
            None,
            {},
            id="other-policys-pause",
        ),
        pytest.param(
            {"state": "paused", "current": 0, "paused_by_governor": ARB},
            "no_data",
            None,
            {},
            id="arbitration-pause-without-quota-view",
        ),
        pytest.param(
            {"state": "paused", "current": 0, "paused_by_governor": ARB, "quota": QUOTA},
            "kept_paused",
            None,
            {},
            id="no-room-to-resume",
        ),
        pytest.param(
            {
                "state": "paused",
                "current": 0,
                "paused_by_governor": ARB,
                "quota": ROOMY,
                "fleet": (member("a", 10, short=2),),
            },
            "kept_paused",
            None,
            {},
            id="pressure-remains",
        ),
        pytest.param(
            {"state": "paused", "current": 0, "paused_by_governor": ARB, "quota": ROOMY},
            "kept_paused",
            None,
            {"calm_since": T0},
            id="calm-clock-starts",
        ),
        pytest.param(
            {
                "state": "paused",
                "current": 0,
                "paused_by_governor": ARB,
                "quota": ROOMY,
                "memory": {"calm_since": T0 - 600},
            },
            "resume_own_pause",
            "running",
            {},
            id="resumes-own-arbitration-pause",
        ),
    ],
)
def test_idle_and_resume_table(kw, reason, state, memory):
    """Each scenario yields exactly the expected reason, state and successor memory."""
    p = POLICY.propose(view(**kw), T0)
    assert (p.reason, p.state) == (reason, state), p.message
    assert p.kind == ("no_opinion" if state is None else "constraint")
    assert dict(p.memory or {}) == memory


def test_idle_reclaim_can_be_switched_off():
    """With `idle_reclaim: false`, a long idle spell alone never pauses."""
    pol = PauseToFreeQuotaPolicy(PauseToFreeQuotaParams(idle_reclaim=False))
    v = view(state="scaledToZero", current=0, state_since=T0 - 86_400)
    assert pol.propose(v, T0).reason == "idle"


def arbitrate(me: str, fleet: tuple[FleetMember, ...], policy=POLICY):
    own = next(m for m in fleet if m.key == f"org/{me}")
    v = view(
        key_name=me,
        window=QUIET,
        memory={"idle_since": own.idle_since} if own.idle_since else {},
        priority=own.priority,
        quota=QUOTA,
        fleet=fleet,
    )
    return policy.propose(v, T0)


A_SHORT2 = (member("a", 10, short=2, idle=None), member("b", 1), member("c", 5), member("d", 20))


@pytest.mark.parametrize(
    ("fleet", "paused"),
    [
        pytest.param(A_SHORT2, {"b", "c"}, id="two-lowest-cover-two"),
        pytest.param(
            (member("a", 10, short=1, idle=None), member("b", 1), member("c", 5)),
            {"b"},
            id="lowest-first",
        ),
        pytest.param(
            (member("a", 10, short=1, idle=None), member("b", 5, idle=600), member("c", 5)),
            {"c"},
            id="same-priority-longest-idle-first",
        ),
        pytest.param(
            (member("a", 10, short=2, idle=None), member("b", 1, held=2), member("c", 5)),
            {"b"},
            id="one-big-enough",
        ),
        pytest.param(
            (member("a", 10, short=5, idle=None), member("b", 1), member("c", 5)),
            set(),
            id="cannot-cover-pause-nobody",
        ),
        pytest.param(
            (member("a", 3, short=1, idle=None), member("b", 3), member("c", 5)),
            set(),
            id="equal-or-higher-priority-never-yields",
        ),
        pytest.param(
            (
                member("a", 10, short=1, idle=None),
                member("b", 1, reclaimable=False),
                member("c", 5),
            ),
            {"c"},
            id="not-opted-in-skipped",
        ),
        pytest.param(
            (member("a", 10, short=1, idle=None), member("b", 1, idle=100), member("c", 5)),
            {"c"},
            id="not-idle-long-enough-skipped",
        ),
        pytest.param(
            (
                member("a", 10, short=1, idle=None),
                member("b", 1, state="scaledToZero", held=2),
                member("c", 5),
            ),
            {"b"},
            id="scaled-to-zero-holds-max-replicas",
        ),
        pytest.param(
            (
                member("a", 10, short=1, idle=None),
                member("x", 9, short=1, idle=None),
                member("b", 1),
                member("c", 5),
            ),
            {"b", "c"},
            id="two-needy-served-by-priority",
        ),
        pytest.param(
            (member("a", 10, idle=None), member("b", 1), member("c", 5)),
            set(),
            id="nobody-short",
        ),
    ],
)
def test_arbitration_table(fleet, paused):
    """Every endpoint evaluating the same fleet agrees on exactly which ones yield."""
    got = set()
    for m in fleet:
        if m.idle_since is None:
            continue  # a serving member is never idle; its own view says not_idle
        p = arbitrate(m.key.removeprefix("org/"), fleet)
        assert p.reason in ("quota_arbitration", "idle"), p.message
        if p.state == "paused":
            got.add(m.key.removeprefix("org/"))
    assert got == paused


def test_arbitration_can_be_switched_off():
    """With `arbitration: false`, the endpoint never yields for others."""
    pol = PauseToFreeQuotaPolicy(PauseToFreeQuotaParams(arbitration=False))
    assert arbitrate("b", A_SHORT2, pol).state is None


FLEETS = st.lists(
    st.builds(
        FleetMember,
        key=st.sampled_from([f"org/m{i}" for i in range(6)]),
        priority=st.integers(-3, 3),
        state=st.sampled_from(["running", "scaledToZero", "paused", "initializing"]),
        held_accelerators=st.integers(0, 4),
        short_accelerators=st.integers(0, 4),
        idle_since=st.none() | st.floats(T0 - 10_000, T0),
        reclaimable=st.booleans(),
    ),
    max_size=6,
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    fleet=FLEETS,
    memory=st.fixed_dictionaries({}, optional={"calm_since": st.floats(T0 - 5000, T0)}),
    used=st.integers(0, 10),
    limit=st.none() | st.integers(0, 10),
    priority=st.integers(-3, 3),
    min_replica=st.integers(0, 3),
)
def test_never_resumes_a_human_pause(fleet, memory, used, limit, priority, min_replica):
    """Whatever the quota, fleet and memory, a person's pause is never proposed to run."""
    q = QuotaView("org", "aws", "gpu", used_accelerators=used, limit_accelerators=limit)
    v = view(
        state="paused",
        current=0,
        min_replica=min_replica,
        memory=memory,
        priority=priority,
        quota=q,
        fleet=fleet,
    )
    p = POLICY.propose(v, T0)
    assert p.state is None
    assert p.reason == "human_pause"
