"""The pure decision core: an endpoint's view, policies and memory in, one explained decision out.

Fixed pipeline (the order is part of the contract; each step can add a clamp note):

1. **Gate**: only a `running` endpoint with a fresh metrics sample is decided on. Anything else is
   a HOLD with a reason (`not_actionable`, `stale_metrics`, `no_data`); no action is ever taken on
   stale or missing data.
2. **Propose**: every policy proposes. Demand proposals combine by max; the policy with the highest
   demand "wins". If any demand policy lacked data, a scale-down is refused (`partial_data`).
3. **Stabilise** (Kubernetes HPA semantics): scaling up follows the *lowest* recommendation of the
   up window, scaling down the *highest* of the down window. After a (re)start, no scale-down
   happens until one full down window has been observed.
4. **Bounds**: clamp to the endpoint's floor and ceiling.
5. **Action**: compare with the current replica count and the endpoint's replica bounds.

Nothing here does I/O or reads a clock; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from controller.models import Endpoint, EndpointState
from controller.settings import EndpointSettings
from policies.base import EndpointView, Policy, Proposal, ProposalKind

__all__ = [
    "Action",
    "Decision",
    "EndpointMemory",
    "Reason",
    "decide",
    "target_bounds",
]


class Action(StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    SCALE_TO_ZERO = "scale_to_zero"
    SET_BOUNDS = "set_bounds"
    PAUSE = "pause"
    RESUME = "resume"
    HOLD = "hold"


class Reason(StrEnum):
    """The fixed vocabulary of decision reasons (metric label values)."""

    DEMAND_INCREASE = "demand_increase"
    DEMAND_DECREASE = "demand_decrease"
    WITHIN_RANGE = "within_range"
    BOUNDS_DRIFT = "bounds_drift"
    SCALE_UP_STABILIZED = "scale_up_stabilized"
    SCALE_DOWN_STABILIZED = "scale_down_stabilized"
    BELOW_FLOOR = "below_floor"
    ABOVE_CEILING = "above_ceiling"
    PARTIAL_DATA = "partial_data"
    STALE_METRICS = "stale_metrics"
    NO_DATA = "no_data"
    NOT_ACTIONABLE = "not_actionable"
    API_ERROR = "api_error"


Actuation = Literal["pin", "floor"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One endpoint's decision for one tick, explained.

    `desired` is None for a HOLD that makes no claim about the count (stale data, wrong state).
    `bounds` is the (minReplica, maxReplica) the actuator should set, when an action is due.
    """

    key: str
    at: float
    action: Action
    reason: Reason
    message: str
    policy: str | None = None
    current: int | None = None
    desired: int | None = None
    bounds: tuple[int, int] | None = None
    clamps: tuple[str, ...] = ()
    proposals: tuple[Proposal, ...] = ()

    @property
    def acts(self) -> bool:
        return self.action is not Action.HOLD

    def signature(self) -> tuple[Any, ...]:
        """What makes two decisions 'the same' for change-only logging."""
        return (self.action, self.reason, self.policy, self.current, self.desired, self.clamps)


@dataclass(frozen=True, slots=True)
class EndpointMemory:
    """Per-endpoint state carried between ticks and persisted across restarts."""

    first_seen: float
    recommendations: tuple[tuple[float, int], ...] = ()
    policy_memory: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    last_action_at: float | None = None
    # When the endpoint was last seen entering `running` (None while it is not running): a
    # freshly woken or resumed endpoint gets a full down window before any scale-down.
    running_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "recommendations": [list(r) for r in self.recommendations],
            "policy_memory": {k: dict(v) for k, v in self.policy_memory.items()},
            "last_action_at": self.last_action_at,
            "running_since": self.running_since,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointMemory:
        return cls(
            first_seen=float(data["first_seen"]),
            recommendations=tuple((float(t), int(n)) for t, n in data.get("recommendations", [])),
            policy_memory={k: dict(v) for k, v in data.get("policy_memory", {}).items()},
            last_action_at=data.get("last_action_at"),
            running_since=data.get("running_since"),
        )


def target_bounds(desired: int, *, ceiling: int, mode: Actuation) -> tuple[int, int]:
    """The (minReplica, maxReplica) that realise `desired` in the chosen actuation mode.

    maxReplica can never be 0 on the platform, so zero is expressed as min 0 plus scale-to-zero.
    """
    if mode == "pin":
        return (desired, max(desired, 1))
    return (desired, max(ceiling, desired, 1))


def _hold(key: str, now: float, reason: Reason, message: str, **kw: Any) -> Decision:
    return Decision(key=key, at=now, action=Action.HOLD, reason=reason, message=message, **kw)


def decide(
    endpoint: Endpoint,
    policies: Sequence[Policy],
    memory: EndpointMemory | None,
    *,
    now: float,
    settings: EndpointSettings,
    window: Any,
    feed_error: str | None = None,
    max_age_s: float = 60.0,
    mode: Actuation = "pin",
) -> tuple[Decision, EndpointMemory]:
    """Decide for one endpoint at `now`; returns the decision and the successor memory."""
    key = endpoint.key
    mem = memory or EndpointMemory(first_seen=now)
    status = endpoint.status
    current = status.target_replica
    scaling = endpoint.compute.scaling

    # 1. Gate.
    if endpoint.state is not EndpointState.RUNNING:
        mem = replace(mem, running_since=None)
        return _hold(
            key, now, Reason.NOT_ACTIONABLE, f"endpoint is {endpoint.state.value}", current=current
        ), mem
    if feed_error is not None:
        return _hold(
            key, now, Reason.STALE_METRICS, f"metrics feed unusable: {feed_error}", current=current
        ), mem
    if mem.running_since is None:
        mem = replace(mem, running_since=now)
    latest = window.latest if window is not None else None
    if latest is None:
        return _hold(key, now, Reason.NO_DATA, "no metrics sample yet", current=current), mem
    age = now - latest.at
    if age > max_age_s:
        return _hold(
            key,
            now,
            Reason.STALE_METRICS,
            f"latest sample is {age:.0f}s old (max {max_age_s:g}s)",
            current=current,
        ), mem

    # 2. Propose and combine demand by max.
    view = EndpointView(
        key=key,
        endpoint=endpoint,
        window=window,
        current=current,
        ready=status.ready_replica,
        floor=settings.floor,
        ceiling=settings.ceiling,
    )
    proposals: list[Proposal] = []
    new_policy_memory = dict(mem.policy_memory)
    for pol in policies:
        pv = replace(view, memory=mem.policy_memory.get(pol.name, {}))
        prop = pol.propose(pv, now)
        proposals.append(prop)
        if prop.memory is not None:
            new_policy_memory[pol.name] = dict(prop.memory)
    demand = [
        p for p in proposals if p.kind is ProposalKind.DEMAND and p.valid and p.replicas is not None
    ]
    invalid = [p for p in proposals if p.kind is ProposalKind.DEMAND and not p.valid]
    mem = replace(mem, policy_memory=new_policy_memory)
    props = tuple(proposals)
    if not demand:
        why = "; ".join(f"{p.policy}: {p.message}" for p in invalid) or "no demand policy"
        return _hold(key, now, Reason.NO_DATA, why, current=current, proposals=props), mem
    winner = max(demand, key=lambda p: p.replicas or 0)
    raw = int(winner.replicas or 0)
    clamps: list[str] = []
    reason: Reason | None = None
    notes = [f"{winner.policy}: {winner.message}"]
    if invalid and raw < current:
        notes.append(f"no scale-down on partial data ({', '.join(p.policy for p in invalid)})")
        raw, reason = current, Reason.PARTIAL_DATA
        clamps.append("partial_data")

    # 3. Stabilise over the recommendation history.
    horizon = max(settings.scale_up_stabilization_s, settings.scale_down_stabilization_s)
    recs = (*tuple(r for r in mem.recommendations if r[0] > now - horizon), (now, raw))
    mem = replace(mem, recommendations=recs)
    desired = raw
    if raw > current and settings.scale_up_stabilization_s > 0:
        lo = min(n for t, n in recs if t > now - settings.scale_up_stabilization_s)
        if lo < raw:
            desired = max(current, lo)
            clamps.append("scale_up_stabilized")
            reason = Reason.SCALE_UP_STABILIZED
            notes.append(f"up-window minimum {lo} ({settings.scale_up_stabilization_s:g}s)")
    elif raw < current:
        down = settings.scale_down_stabilization_s
        observed = now - max(mem.first_seen, mem.running_since or mem.first_seen)
        hi = max(n for t, n in recs if t > now - down) if down > 0 else raw
        if down > 0 and observed < down:
            desired = current
            clamps.append("scale_down_stabilized")
            reason = Reason.SCALE_DOWN_STABILIZED
            notes.append(
                f"running and observed for {observed:.0f}s only; no scale-down before {down:g}s"
            )
        elif hi > raw:
            desired = min(current, hi)
            clamps.append("scale_down_stabilized")
            reason = Reason.SCALE_DOWN_STABILIZED
            notes.append(f"down-window maximum {hi} ({down:g}s)")

    # 4. Bounds.
    stabilized = desired
    if desired < settings.floor:
        desired = settings.floor
        clamps.append("floor")
        notes.append(f"floor {settings.floor}")
    elif desired > settings.ceiling:
        desired = settings.ceiling
        clamps.append("ceiling")
        notes.append(f"ceiling {settings.ceiling}")

    # 5. Action.
    bounds = target_bounds(desired, ceiling=settings.ceiling, mode=mode)
    have = (scaling.min_replica, scaling.max_replica)
    if desired > current:
        action = Action.SCALE_UP
        if current < settings.floor and stabilized <= settings.floor:
            reason = Reason.BELOW_FLOOR
        elif "scale_up_stabilized" not in clamps:
            reason = Reason.DEMAND_INCREASE
    elif desired < current:
        action = Action.SCALE_TO_ZERO if desired == 0 else Action.SCALE_DOWN
        if current > settings.ceiling and stabilized >= settings.ceiling:
            reason = Reason.ABOVE_CEILING
        else:
            reason = Reason.DEMAND_DECREASE
    elif bounds != have:
        action, reason = Action.SET_BOUNDS, Reason.BOUNDS_DRIFT
        notes.append(f"replica bounds {have[0]}..{have[1]} -> {bounds[0]}..{bounds[1]}")
    else:
        action = Action.HOLD
        reason = reason or Reason.WITHIN_RANGE
    assert reason is not None
    return Decision(
        key=key,
        at=now,
        action=action,
        reason=reason,
        message="; ".join(notes),
        policy=winner.policy,
        current=current,
        desired=desired,
        bounds=bounds if action is not Action.HOLD else None,
        clamps=tuple(clamps),
        proposals=props,
    ), mem
